"""The bot → server tool channel: POST /api/bot/<session id>/tools/<name> with the status token.

The tool that matters first is verify_identity: the date of birth is compared on
the server and the rest of the patient's details leave only once it matched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from pydantic import BaseModel

from audit.models import AuditEvent
from botrunner.agent_request import build
from calls import bot_tools
from calls.models import CallEvent, CallSession
from calls.starting import tools_url_for
from tests import factories

TOKEN = "tool-channel-token-0123456789"


@pytest.fixture
def verifying_call(org):
    workflow = factories.make_workflow(org, slug="verify", verification="dob")
    patient = factories.make_patient(
        org, first_name="Grace", last_name="Hopper", date_of_birth=dt.date(1980, 3, 4), postal_code="94110",
        data={"appointment": "Tuesday 10:30 with Dr Who"},
    )
    return factories.make_call(
        org, workflow, patient, status="in_progress",
        status_token_hash=hashlib.sha256(TOKEN.encode()).hexdigest(),
    )


def post(client, call, name, body, token=TOKEN):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(
        f"/api/bot/{call.pk}/tools/{name}", data=json.dumps(body), content_type="application/json", **headers
    )


def test_the_agent_request_names_the_channel_and_holds_back_the_details(verifying_call, settings):
    settings.PUBLIC_BASE_URL = "https://robot.example.org"
    call = CallSession.objects.select_related("organization", "workflow", "patient").get(pk=verifying_call.pk)
    req = build(call, "https://x.daily.co/r", "tok", "wss://robot.example.org/ws/bot/x/", "st",
                tools_url=tools_url_for(call.pk))
    assert req.tools_url == f"https://robot.example.org/api/bot/{call.pk}/tools/"
    assert req.workflow.verification == "dob"
    # Before verification: the first name only (with the clinic and call-back number beside it).
    assert req.patient_data == {"first_name": "Grace", "preferred_language": "en"}
    body = json.dumps(req.model_dump(exclude_none=True))
    for secret in ("Hopper", "1980", "94110", "Dr Who", "Tuesday"):
        assert secret not in body


def test_the_right_date_of_birth_gives_the_rest(client, verifying_call):
    answer = post(client, verifying_call, "verify_identity", {"date_of_birth": "1980-03-04"})
    assert answer.status_code == 200, answer.content
    result = answer.json()
    assert result["verified"] is True
    assert result["patient_data"]["appointment"] == "Tuesday 10:30 with Dr Who"
    assert result["patient_data"]["last_name"] == "Hopper"
    assert "date_of_birth" not in result["patient_data"] and "postal_code" not in result["patient_data"]
    assert CallEvent.objects.filter(call=verifying_call, kind="identity_verified").count() == 1
    verifying_call.refresh_from_db()
    assert verifying_call.identity_verified_at is not None
    # Audited, and on the call's timeline without what was said.
    assert AuditEvent.objects.filter(action="bot_tool", object_id=str(verifying_call.pk), via="bot").count() == 1
    trace = CallEvent.objects.get(call=verifying_call, kind="tool")
    assert trace.data == {"name": "verify_identity", "ok": True}


def test_a_spelled_out_date_is_understood(client, verifying_call):
    answer = post(client, verifying_call, "verify_identity", {"date_of_birth": "March 4th, 1980"})
    assert answer.json()["verified"] is True


def test_two_wrong_answers_end_the_call_and_no_guess_is_taken_after(client, verifying_call):
    first = post(client, verifying_call, "verify_identity", {"date_of_birth": "1980-04-03"}).json()
    assert first == {"verified": False, "attempts_left": 1, "end_call": False}
    second = post(client, verifying_call, "verify_identity", {"date_of_birth": "1979-03-04"}).json()
    assert second == {"verified": False, "attempts_left": 0, "end_call": True}
    # Locked: even the right answer now gets nothing.
    third = post(client, verifying_call, "verify_identity", {"date_of_birth": "1980-03-04"}).json()
    assert third == {"verified": False, "attempts_left": 0, "end_call": True}
    assert CallEvent.objects.filter(call=verifying_call, kind="identity_failed").count() == 2
    assert not CallEvent.objects.filter(call=verifying_call, kind="identity_verified").exists()


def test_dob_and_zip_needs_both(client, org, verifying_call):
    CallSession.objects.filter(pk=verifying_call.pk).update(identity_failures=0)
    verifying_call.workflow.verification = "dob_and_zip"
    verifying_call.workflow.save()
    missing = post(client, verifying_call, "verify_identity", {"date_of_birth": "1980-03-04"})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "postal_code"
    wrong = post(client, verifying_call, "verify_identity", {"date_of_birth": "1980-03-04", "postal_code": "94111"})
    assert wrong.json()["verified"] is False
    right = post(client, verifying_call, "verify_identity", {"date_of_birth": "1980-03-04", "postal_code": "94110-1234"})
    assert right.json()["verified"] is True


def test_bad_arguments_are_a_422_naming_the_field_and_count_for_nothing(client, verifying_call):
    answer = post(client, verifying_call, "verify_identity", {"dob": "1980-03-04"})
    assert answer.status_code == 422
    fields = {e["field"] for e in answer.json()["errors"]}
    assert {"date_of_birth", "dob"} <= fields
    not_a_date = post(client, verifying_call, "verify_identity", {"date_of_birth": "sometime in spring"})
    assert not_a_date.status_code == 422 and not_a_date.json()["errors"][0]["field"] == "date_of_birth"
    verifying_call.refresh_from_db()
    assert verifying_call.identity_failures == 0
    assert CallEvent.objects.get(call=verifying_call, kind="tool", data__ok=False).data["error"] == "invalid"


def test_the_token_is_checked_like_the_status_socket(client, verifying_call):
    for token in (None, "wrong-token"):
        answer = post(client, verifying_call, "verify_identity", {"date_of_birth": "1980-03-04"}, token=token)
        assert answer.status_code == 401
        assert "status token" in answer.json()["detail"]
    # Valid until the call is final.
    CallSession.objects.filter(pk=verifying_call.pk).update(status="completed")
    answer = post(client, verifying_call, "verify_identity", {"date_of_birth": "1980-03-04"})
    assert answer.status_code == 401
    assert not CallEvent.objects.filter(call=verifying_call, kind="tool").exists()


def test_unknown_tool_and_bad_json(client, verifying_call):
    assert post(client, verifying_call, "no_such_tool", {}).status_code == 404
    answer = client.post(
        f"/api/bot/{verifying_call.pk}/tools/verify_identity", data="{not json", content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
    )
    assert answer.status_code == 400


def test_another_app_registers_a_tool(client, verifying_call):
    class ConfirmArgs(BaseModel):
        slot: str

    @bot_tools.register("confirm_test_slot", args=ConfirmArgs)
    def confirm(call, args):
        if args.slot == "full":
            raise bot_tools.ToolError(409, "That slot is taken.", code="slot_taken")
        return {"confirmed": args.slot, "patient": call.patient_id}

    try:
        ok = post(client, verifying_call, "confirm_test_slot", {"slot": "tue-10"})
        assert ok.status_code == 200 and ok.json() == {"confirmed": "tue-10", "patient": verifying_call.patient_id}
        refused = post(client, verifying_call, "confirm_test_slot", {"slot": "full"})
        assert refused.status_code == 409 and refused.json()["detail"] == "That slot is taken."
        assert AuditEvent.objects.filter(action="bot_tool", object_id=str(verifying_call.pk)).count() == 2
    finally:
        bot_tools.TOOLS.pop("confirm_test_slot", None)


def test_a_started_bot_is_given_the_channel_and_only_the_first_name(
    org, fake_daily, fake_runner, django_capture_on_commit_callbacks, settings
):
    """Through the real start path: the body the bot runner receives."""
    from calls.services import place_call

    settings.PUBLIC_BASE_URL = "https://robot.example.org"
    workflow = factories.make_workflow(org, slug="verify-start", verification="dob_and_zip")
    patient = factories.make_patient(org, first_name="Grace", last_name="Hopper", date_of_birth=dt.date(1980, 3, 4),
                                     postal_code="94110", data={"appointment": "Tuesday 10:30"})
    with django_capture_on_commit_callbacks(execute=True):
        call = place_call(organization=org, workflow=workflow, patient=patient)
    [start] = fake_runner.requests_to("POST /start")
    body = start["json"]["body"]
    assert body["tools_url"] == f"https://robot.example.org/api/bot/{call.pk}/tools/"
    assert body["workflow"]["verification"] == "dob_and_zip"
    assert body["workflow"]["opt_out_digit"] == "9"
    assert "automated assistant" in body["workflow"]["disclosure_message"]
    assert body["patient_data"] == {"first_name": "Grace", "preferred_language": "en"}
    for secret in ("Hopper", "1980", "94110", "Tuesday"):
        assert secret not in json.dumps(body)


def test_the_admin_shows_the_new_fields_with_help(client, org, workflow):
    admin = factories.make_user(org=org, role="admin")
    client.force_login(admin)
    page = client.get(f"/admin/organizations/workflow/{workflow.pk}/change/").content.decode()
    for text in ('name="consent_basis"', 'name="disclosure_message"', 'name="opt_out_digit"', 'name="verification"',
                 "no call rings before 08:00 or after 21:00", "two wrong answers end the call"):
        assert text in page, text
    page = client.get(f"/admin/organizations/organization/{org.pk}/change/").content.decode()
    for text in ('name="healthcare_calls_per_day"', 'name="healthcare_calls_per_week"', "The US limit for these calls is 1"):
        assert text in page, text
