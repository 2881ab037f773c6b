"""The one rule set (calls.rules) and the one dial-out constructor, as every way in uses them."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from calls import rules, services as call_services
from calls.models import CallSession
from campaigns import services as campaign_services
from campaigns.models import Campaign, CampaignStatus
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _configured(settings):
    settings.DAILY_API_KEY = "key-for-tests"


def test_calls_and_campaigns_refuse_with_the_one_exception_and_table(org, workflow):
    inbound = factories.make_workflow(org, slug="inbound", direction="dial_in")
    patient = factories.make_patient(org)
    with pytest.raises(rules.CallRefused) as placed:
        call_services.place_call(organization=org, workflow=inbound, patient=patient)
    with pytest.raises(rules.CallRefused) as campaign:
        campaign_services.create_campaign(organization=org, workflow=inbound, name="X", patients=[patient])
    assert placed.value.code == campaign.value.code == "workflow_not_dialout"
    assert placed.value.status == campaign.value.status == 409
    assert rules.CallRefused("unknown_patients", "").status == 422  # once a campaign-only table's
    assert rules.CallRefused("not_configured", "").status == 503


def test_a_campaign_skips_for_the_same_reasons_a_call_is_refused(org, workflow):
    dnc = factories.make_patient(org, do_not_call=True)
    nocons = factories.make_patient(org, consent_to_call=False)
    for patient, code in ((dnc, "do_not_call"), (nocons, "no_consent")):
        with pytest.raises(rules.CallRefused) as exc:
            call_services.place_call(organization=org, workflow=workflow, patient=patient)
        assert exc.value.code == code
        assert campaign_services.skip_reason_for(org, patient) == code


def test_a_campaign_started_from_the_admin_is_audited_with_each_call(org, workflow):
    staff = factories.make_user(org=org, role="staff")
    patients = [factories.make_patient(org) for _ in range(3)]
    campaign = campaign_services.create_campaign(organization=org, workflow=workflow, name="Flu", patients=patients,
                                                 created_by_user=staff, start=False)
    assert not AuditEvent.objects.exists()
    campaign_services.start_campaign(campaign, by_user=staff)  # the admin's "Start campaign" button
    (started,) = AuditEvent.objects.filter(action="start_campaign")
    assert started.object_id == str(campaign.pk) and started.user_id == staff.pk and started.via == "admin"
    calls = set(CallSession.objects.filter(campaign_id=campaign.pk).values_list("pk", flat=True))
    placed = AuditEvent.objects.filter(action="place_call", object_type="calls.callsession")
    assert {row.object_id for row in placed} == {str(pk) for pk in calls} and len(calls) == 3
    assert {row.user_id for row in placed} == {staff.pk}


def test_a_campaign_does_not_start_on_a_server_that_cannot_start_calls(org, workflow, settings):
    settings.DAILY_API_KEY = ""
    campaign = campaign_services.create_campaign(organization=org, workflow=workflow, name="Flu",
                                                 patients=[factories.make_patient(org)], start=False)
    with pytest.raises(rules.CallRefused) as exc:
        campaign_services.start_campaign(campaign)
    assert exc.value.code == "not_configured" and exc.value.status == 503
    assert "DAILY_API_KEY" in exc.value.message
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.DRAFT
    assert not CallSession.objects.exists()


def test_every_dial_out_is_built_alike(org, workflow):
    """A placed call, a campaign's call and a follow-up carry the same fields from one constructor."""
    from calls import policy, state

    org.dialout_caller_id = "8c3b2f5e-3d2a-4b8e-9a51-2f1c7f0a6d11"  # a Daily phone-number id: 36 characters
    org.save()
    workflow.retry_on = ["no_answer"]
    workflow.retry_delays_min = [5]
    workflow.max_attempts = 2
    workflow.save()
    patient = factories.make_patient(org)
    campaign = campaign_services.create_campaign(organization=org, workflow=workflow, name="C", patients=[patient])
    held = CallSession.objects.get(campaign_id=campaign.pk)
    assert held.from_number == org.dialout_caller_id  # no longer cut to 32 characters
    assert (held.direction, held.status, held.held, held.max_attempts) == ("dial_out", "scheduled", True, 2)
    placed = call_services.place_call(organization=org, workflow=workflow, patient=patient, not_before=None)
    assert placed.from_number == org.dialout_caller_id and placed.status == "queued" and placed.max_attempts == 2
    CallSession.objects.filter(pk=placed.pk).update(status="in_progress")
    state.transition(placed.pk, "no_answer", reason="no_answer")
    follow = CallSession.objects.get(previous_attempt_id=placed.pk)
    assert (follow.status, follow.attempt, follow.from_number, follow.held) == (
        "scheduled", 2, org.dialout_caller_id, False)
    assert policy.follow_up(placed.pk) is None  # one follow-up per call
