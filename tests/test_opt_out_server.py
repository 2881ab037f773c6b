"""Opt-out on a call, the server's half: what `ended {reason: opted_out}` does.

In the transaction of that final move: do-not-call with its source and time, the
patient's calls still to ring canceled, an audit row and a `patient.opted_out`
webhook; a later start is refused with 409 do_not_call.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from calls import services
from calls.events import apply_bot_message
from calls.models import CallEvent, CallSession, CallStatus
from organizations.models import ApiKey
from tests import factories
from tests.api_fixtures import auth
from webhooks import services as webhook_services
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint


def msg(seq, event, data):
    return {"seq": seq, "event": event, "at": timezone.now().isoformat(), "data": data}


@pytest.fixture
def on_call(org, workflow, patient):
    """A call in progress, a scheduled follow-up of an earlier one, a held campaign call, and another patient's call."""
    call = factories.make_call(org, workflow, patient, status=CallStatus.IN_PROGRESS)
    later = timezone.now() + dt.timedelta(hours=3)
    follow_up = factories.make_call(org, workflow, patient, status=CallStatus.SCHEDULED, scheduled_for=later, attempt=2)
    campaign_call = factories.make_call(
        org, workflow, patient, status=CallStatus.SCHEDULED, scheduled_for=later, campaign_id=7, held=True
    )
    other = factories.make_call(
        org, workflow, factories.make_patient(org), status=CallStatus.SCHEDULED, scheduled_for=later
    )
    return call, follow_up, campaign_call, other


def test_ending_opted_out_marks_do_not_call_and_cancels_what_was_to_ring(org, patient, on_call, fake_receiver):
    call, follow_up, campaign_call, other = on_call
    endpoint = WebhookEndpoint.objects.create(organization=org, url=fake_receiver.hook_url, events=["patient.opted_out"])
    fake_receiver.secret = endpoint.secret

    apply_bot_message(call.pk, msg(1, "ended", {"reason": "opted_out"}))

    call.refresh_from_db()
    assert (call.status, call.end_reason) == ("completed", "opted_out")
    patient.refresh_from_db()
    assert patient.do_not_call is True
    assert patient.do_not_call_source == f"call:{call.pk}"
    assert patient.do_not_call_at is not None
    for pending in (follow_up, campaign_call):
        pending.refresh_from_db()
        assert (pending.status, pending.end_reason) == ("canceled", "do_not_call")
    other.refresh_from_db()
    assert other.status == "scheduled"  # another patient's call is theirs
    assert AuditEvent.objects.filter(action="opt_out", object_type="patients.patient",
                                     object_id=str(patient.pk), via="call").count() == 1
    assert set(CallEvent.objects.get(call=call, kind="opted_out").data["canceled"]) == {
        str(follow_up.pk), str(campaign_call.pk)
    }

    delivery = WebhookDelivery.objects.get(event_type="patient.opted_out")
    assert webhook_services.send_delivery(delivery.pk) == DeliveryStatus.DELIVERED
    [got] = fake_receiver.verified
    assert got["event"]["type"] == "patient.opted_out"
    data = got["event"]["data"]
    assert data["session_id"] == str(call.pk) and data["external_id"] == patient.external_id
    assert data["source"] == f"call:{call.pk}"
    assert "Ada" not in json.dumps(got) and patient.phone not in json.dumps(got)


def test_an_opt_out_event_then_the_end_is_honoured_once(org, patient, on_call):
    call, follow_up, *_ = on_call
    apply_bot_message(call.pk, msg(1, "opt_out", {"via": "dtmf"}))
    patient.refresh_from_db()
    assert patient.do_not_call  # already, before the call ends: a bot dying now loses nothing
    apply_bot_message(call.pk, msg(2, "ended", {"reason": "opted_out"}))
    assert CallEvent.objects.filter(call=call, kind="opted_out").count() == 1
    assert AuditEvent.objects.filter(action="opt_out").count() == 1


def test_a_later_start_is_refused_do_not_call(client, org, workflow, patient, on_call, settings):
    call, *_ = on_call
    apply_bot_message(call.pk, msg(1, "ended", {"reason": "opted_out"}))
    patient.refresh_from_db()
    with pytest.raises(services.CallRefused) as refused:
        services.place_call(organization=org, workflow=workflow, patient=patient)
    assert refused.value.code == "do_not_call"

    _, raw = ApiKey.generate(org)
    answer = client.post("/api/start-call", data=json.dumps({"patient_id": patient.pk, "workflow": workflow.slug}),
                         content_type="application/json", **auth(raw))
    assert answer.status_code == 409
    assert answer.json()["errors"][0]["field"] == "patient"
    assert CallSession.objects.filter(patient=patient, status__in=["queued", "scheduled"]).count() == 0


def test_the_call_page_says_opted_out(client, org, patient, on_call):
    call, *_ = on_call
    apply_bot_message(call.pk, msg(1, "ended", {"reason": "opted_out"}))
    user = factories.make_user(org=org, role="staff")
    client.force_login(user)
    page = client.get(call.get_absolute_url()).content.decode()
    assert 'data-field="end_reason">Opted out<' in page
