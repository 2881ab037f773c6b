"""Staff "Call patient" (button and bulk action), the admin's cancel, and create_api_key.

All placing goes through calls.services.place_call, the service behind
POST /api/start-call: asserted on the fake runner's recorded /start requests.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import CommandError, call_command

from calls.models import CallSession
from organizations.models import ApiKey
from tests import factories
from tests.api_fixtures import *  # noqa: F401,F403
from tests.api_fixtures import auth


def call_url(patient):
    return f"/admin/patients/patient/{patient.pk}/call/"


def messages_of(resp):
    return [str(m) for m in resp.context["messages"]] if resp.context else []


@pytest.fixture
def staff(org):
    return factories.make_user(org=org, role="staff")


# --- the "Call patient" button ----------------------------------------------------------------


def test_button_shows_for_staff_and_admin_not_viewer(client, org, patient, workflow):
    for role, shown in [("staff", True), ("admin", True), ("viewer", False)]:
        client.force_login(factories.make_user(org=org, role=role))
        body = client.get(f"/admin/patients/patient/{patient.pk}/change/").content.decode()
        assert (call_url(patient) in body) is shown, role
        assert client.get(call_url(patient)).status_code == (200 if shown else 403), role


def test_call_page_offers_only_active_dialout_workflows_of_the_patients_org(
    client, org, other_org, patient, workflow, staff
):
    factories.make_workflow(org, slug="inbound", direction="dial_in", name="Inbound desk")
    factories.make_workflow(org, slug="old", is_active=False, name="Old reminder")
    factories.make_workflow(org, slug="both", direction="both", name="Two way")
    factories.make_workflow(other_org, slug="theirs", name="Their reminder")
    client.force_login(staff)
    body = client.get(call_url(patient)).content.decode()
    assert "Reminder" in body and "Two way" in body
    assert "Inbound desk" not in body and "Old reminder" not in body and "Their reminder" not in body


def test_button_places_the_call_through_the_service(
    client, org, patient, workflow, staff, fake_daily, fake_runner, django_capture_on_commit_callbacks
):
    client.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):
        resp = client.post(call_url(patient), {"workflow": workflow.pk})
    call = CallSession.objects.get()
    assert resp.status_code == 302
    assert resp["Location"] == f"/calls/{call.pk}/"  # the call's live page
    assert call.requested_by_user == staff and call.direction == "dial_out" and call.patient == patient
    [start] = fake_runner.requests_to("POST /start")
    assert start["json"]["body"]["session_id"] == str(call.pk)
    assert start["json"]["body"]["dialout_settings"]["phone_number"] == patient.phone
    assert client.get(resp["Location"]).status_code == 200


def test_button_refusal_shows_as_a_message(client, patient, workflow, staff, fake_daily, fake_runner):
    patient.do_not_call = True
    patient.save()
    client.force_login(staff)
    resp = client.post(call_url(patient), {"workflow": workflow.pk}, follow=True)
    assert any("do-not-call" in m for m in messages_of(resp))
    assert CallSession.objects.count() == 0 and fake_runner.requests == []


def test_button_refuses_a_workflow_of_another_org(client, other_org, patient, workflow, staff, fake_daily, fake_runner):
    theirs = factories.make_workflow(other_org, slug="theirs")
    client.force_login(staff)
    resp = client.post(call_url(patient), {"workflow": theirs.pk})
    assert resp.status_code == 200 and resp.context["form"].errors
    assert CallSession.objects.count() == 0


def test_call_page_of_another_orgs_patient_is_not_found(client, other_org, staff):
    theirs = factories.make_patient(other_org)
    client.force_login(staff)
    assert client.get(call_url(theirs)).status_code == 404
    assert client.post(call_url(theirs), {}).status_code == 404


def test_button_refuses_when_deployment_is_not_configured(client, patient, workflow, staff, settings):
    settings.DAILY_API_KEY = ""
    client.force_login(staff)
    resp = client.post(call_url(patient), {"workflow": workflow.pk}, follow=True)
    assert any("DAILY_API_KEY" in m for m in messages_of(resp))
    assert CallSession.objects.count() == 0


# --- the bulk action ------------------------------------------------------------------------------


def bulk(client, patients, **extra):
    data = {"action": "call_with_workflow", ACTION_CHECKBOX_NAME: [p.pk for p in patients], **extra}
    return client.post("/admin/patients/patient/", data)


def test_bulk_action_asks_for_the_workflow_then_calls_each(
    client, org, workflow, staff, fake_daily, fake_runner, django_capture_on_commit_callbacks
):
    patients = [factories.make_patient(org) for _ in range(3)]
    patients[2].consent_to_call = False
    patients[2].save()
    client.force_login(staff)
    page = bulk(client, patients)
    assert page.status_code == 200
    assert "admin/patients/patient/call_selected.html" in [t.name for t in page.templates]
    assert "Reminder" in page.content.decode()
    assert CallSession.objects.count() == 0

    with django_capture_on_commit_callbacks(execute=True):
        resp = bulk(client, patients, apply="yes", workflow=workflow.pk)
    assert CallSession.objects.count() == 2
    # the live list, filtered to the calls just placed
    placed_ids = {str(c.pk) for c in CallSession.objects.all()}
    assert resp.status_code == 302 and resp["Location"].startswith("/calls/live/?ids=")
    assert set(resp["Location"].split("?ids=", 1)[1].split(",")) == placed_ids
    assert {c.patient_id for c in CallSession.objects.all()} == {patients[0].pk, patients[1].pk}
    assert all(c.requested_by_user == staff for c in CallSession.objects.all())
    started = {r["json"]["body"]["session_id"] for r in fake_runner.requests_to("POST /start")}
    assert started == {str(c.pk) for c in CallSession.objects.all()}
    msgs = [str(m) for m in client.get("/admin/calls/callsession/").context["messages"]]
    assert any("Placed 2 calls" in m for m in msgs)
    assert any("consented" in m for m in msgs)


def test_bulk_action_for_one_patient_lands_on_the_call(
    client, org, patient, workflow, staff, fake_daily, fake_runner
):
    client.force_login(staff)
    resp = bulk(client, [patient], apply="yes", workflow=workflow.pk)
    call = CallSession.objects.get()
    assert resp["Location"] == f"/calls/{call.pk}/"  # the call's live page


def test_bulk_action_is_not_offered_to_viewers(client, org, patient, workflow, fake_daily, fake_runner):
    viewer = factories.make_user(org=org, role="viewer")
    client.force_login(viewer)
    body = client.get("/admin/patients/patient/").content.decode()
    assert "call_with_workflow" not in body
    bulk(client, [patient], apply="yes", workflow=workflow.pk)
    assert CallSession.objects.count() == 0 and fake_runner.requests == []


def test_bulk_action_skips_patients_where_the_user_is_only_a_viewer(
    client, org, other_org, patient, workflow, fake_daily, fake_runner
):
    user = factories.make_user(org=org, role="staff")
    from organizations.models import OrganizationMembership

    OrganizationMembership.objects.create(organization=other_org, user=user, role="viewer")
    theirs = factories.make_patient(other_org)
    factories.make_workflow(other_org, slug="theirs", name="Their workflow")
    client.force_login(user)
    page = bulk(client, [patient, theirs]).content.decode()
    assert "Their workflow" not in page  # only workflows where the user may place calls
    bulk(client, [patient, theirs], apply="yes", workflow=workflow.pk)
    assert [c.patient_id for c in CallSession.objects.all()] == [patient.pk]


# --- cancel in the admin ------------------------------------------------------------------------


def test_cancel_action_uses_the_service(client, org, workflow, patient, staff, fake_daily, fake_runner,
                                        django_capture_on_commit_callbacks):
    client.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(call_url(patient), {"workflow": workflow.pk})
    call = CallSession.objects.get()
    done = factories.make_call(org, workflow, patient, status="completed")
    resp = client.post("/admin/calls/callsession/", {
        "action": "cancel_calls", ACTION_CHECKBOX_NAME: [str(call.pk), str(done.pk)],
    }, follow=True)
    call.refresh_from_db()
    assert call.status == "canceled"
    assert call.daily_room_name in fake_daily.deleted
    msgs = messages_of(resp)
    assert any("Canceled 1 call" in m for m in msgs) and any("already ended" in m for m in msgs)


def test_viewer_cannot_cancel(client, org, workflow, patient):
    call = factories.make_call(org, workflow, patient)
    client.force_login(factories.make_user(org=org, role="viewer"))
    assert "cancel_calls" not in client.get("/admin/calls/callsession/").content.decode()
    client.post("/admin/calls/callsession/", {"action": "cancel_calls", ACTION_CHECKBOX_NAME: [str(call.pk)]})
    call.refresh_from_db()
    assert call.status == "queued"


# --- create_api_key --------------------------------------------------------------------------------


def test_create_api_key_prints_a_working_key_once(client, org, workflow):
    out, err = StringIO(), StringIO()
    call_command("create_api_key", org.slug, "--name", "Epic", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    key = ApiKey.objects.get(organization=org)
    assert key.name == "Epic" and raw.startswith(key.prefix)
    assert raw not in key.key_hash and raw not in err.getvalue()
    assert client.get("/api/workflows", **auth(raw)).json()["count"] == 1
    key.revoke()
    assert client.get("/api/workflows", **auth(raw)).status_code == 401


def test_create_api_key_for_unknown_org_fails(db):
    with pytest.raises(CommandError, match="No organisation"):
        call_command("create_api_key", "nope", stdout=StringIO(), stderr=StringIO())


def test_bulk_action_says_once_when_the_deployment_cannot_start_calls(client, org, workflow, staff, settings):
    settings.DAILY_API_KEY = ""
    patients = [factories.make_patient(org) for _ in range(3)]
    client.force_login(staff)
    resp = client.post("/admin/patients/patient/", {
        "action": "call_with_workflow", ACTION_CHECKBOX_NAME: [p.pk for p in patients],
        "apply": "yes", "workflow": workflow.pk,
    }, follow=True)
    msgs = [m for m in messages_of(resp) if "DAILY_API_KEY" in m]
    assert len(msgs) == 1
    assert CallSession.objects.count() == 0
