"""POST /api/start-call: auth, refusals, idempotency, and the bot start it leads to."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from calls.models import CallSession
from organizations.models import ApiKey
from tests import factories
from tests.api_fixtures import *  # noqa: F401,F403
from tests.api_fixtures import auth, post_json

URL = "/api/start-call"


def assert_envelope(resp, status):
    assert resp.status_code == status, resp.content
    data = resp.json()
    assert set(data) == {"detail", "errors"} and data["detail"]
    return data


def start(client, key, body, **headers):
    return post_json(client, URL, body, key, **headers)


def nothing_written(*fakes):
    assert CallSession.objects.count() == 0
    for fake in fakes:
        assert fake.requests == []


# --- placing a call ---------------------------------------------------------------------


def test_start_call_makes_a_dialout_room_and_starts_the_bot(
    client, org, workflow, patient, api_key, fake_daily, fake_runner, django_capture_on_commit_callbacks
):
    org.dialout_caller_id = "6f1c2a4e-8b7d-4c3e-9a21-0d5e7f8a9b10"
    org.save()
    with django_capture_on_commit_callbacks(execute=True):
        resp = start(client, api_key, {"patient_id": patient.pk, "workflow": "reminder"})
    assert resp.status_code == 202, resp.content
    data = resp.json()
    assert set(data) == {"session_id", "status", "scheduled_for", "frequency_cap", "poll_url"}
    assert data["frequency_cap"] is None
    assert data["scheduled_for"] is None  # placed now, inside the window
    assert data["status"] == "queued"  # the start runs after the answer was built
    assert data["poll_url"] == f"http://testserver/api/calls/{data['session_id']}"

    call = CallSession.objects.get(pk=data["session_id"])
    assert call.direction == "dial_out" and call.patient == patient
    assert call.to_number == "+14155550123" and call.from_number == "6f1c2a4e-8b7d-4c3e-9a21-0d5e7f8a9b10"
    assert call.requested_by_api_key == ApiKey.objects.get(organization=org)
    assert call.status == "starting"

    [room] = fake_daily.requests_to("POST /rooms")
    assert room["json"]["properties"]["enable_dialout"] is True
    assert "sip" not in room["json"]["properties"]
    [sent] = fake_runner.started
    assert sent["session_id"] == data["session_id"]
    assert sent["dialout_settings"] == {"phone_number": "+14155550123", "caller_id": "6f1c2a4e-8b7d-4c3e-9a21-0d5e7f8a9b10"}
    assert "dialin_settings" not in sent
    assert sent["patient_id"] == str(patient.pk)
    assert sent["workflow"]["slug"] == "reminder"

    polled = client.get(data["poll_url"], **auth(api_key))
    assert polled.status_code == 200 and polled.json()["status"] == "starting"


PURCHASED_ID = "85a70a9a-e22f-4a8d-8302-bbf1b88dd909"


def test_start_call_by_external_id_with_number_and_caller_id(
    client, org, workflow, patient, api_key, fake_daily, fake_runner, django_capture_on_commit_callbacks
):
    from calls import caller_ids

    caller_ids.clear_cache()
    fake_daily.purchased_numbers = {"+14155550999": "0d0d0d0d-1111-4222-8333-444455556666", "+14155550100": PURCHASED_ID}
    with django_capture_on_commit_callbacks(execute=True):
        resp = start(client, api_key, {
            "external_id": patient.external_id, "workflow": "reminder",
            "phone_number": "(415) 555-0177", "caller_id": "+14155550100",
        })
    assert resp.status_code == 202
    [sent] = fake_runner.started
    # Daily's callerId is the purchased number's id, not the number.
    assert sent["dialout_settings"] == {"phone_number": "+14155550177", "caller_id": PURCHASED_ID}
    assert fake_daily.requests_to("GET /purchased-phone-numbers")


def test_a_caller_id_daily_did_not_sell_is_refused_saying_what_to_enter(
    client, org, workflow, patient, api_key, fake_daily, fake_runner
):
    from calls import caller_ids

    caller_ids.clear_cache()
    fake_daily.purchased_numbers = {"+14155550999": PURCHASED_ID}
    resp = start(client, api_key, {"patient_id": patient.pk, "workflow": "reminder", "caller_id": "+14155550100"})
    assert resp.status_code == 422
    [error] = resp.json()["errors"]
    assert error["field"] == "caller_id"
    assert "not a phone number bought on this Daily domain" in resp.json()["detail"]
    assert "(a UUID)" in resp.json()["detail"]
    assert not CallSession.objects.exists()


def test_without_caller_id_none_is_sent(client, org, workflow, patient, api_key, fake_daily, fake_runner,
                                        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert start(client, api_key, {"patient_id": patient.pk, "workflow": "reminder"}).status_code == 202
    assert fake_runner.started[0]["dialout_settings"] == {"phone_number": "+14155550123"}


# --- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer mr_not-a-key", "Token {key}", "Basic {key}", "{key}"],
    ids=["none", "empty", "unknown", "wrong-scheme", "basic", "bare"],
)
def test_missing_or_wrong_key_is_401_envelope(client, patient, workflow, api_key, fake_daily, fake_runner, header):
    headers = {} if header is None else {"HTTP_AUTHORIZATION": header.format(key=api_key)}
    resp = client.post(URL, data={"patient_id": patient.pk, "workflow": "reminder"},
                       content_type="application/json", **headers)
    data = assert_envelope(resp, 401)
    assert data["errors"] == []
    nothing_written(fake_daily, fake_runner)


def test_revoked_key_is_401(client, org, patient, workflow, fake_daily, fake_runner):
    key, raw = ApiKey.generate(org)
    key.revoke()
    assert_envelope(start(client, raw, {"patient_id": patient.pk, "workflow": "reminder"}), 401)
    nothing_written(fake_daily, fake_runner)


def test_key_of_inactive_organisation_is_401(client, org, patient, workflow, api_key, fake_daily):
    org.is_active = False
    org.save()
    assert_envelope(start(client, api_key, {"patient_id": patient.pk, "workflow": "reminder"}), 401)


# --- refusals -----------------------------------------------------------------------------------


def test_unknown_or_other_orgs_patient_and_workflow_are_404(
    client, org, other_org, workflow, patient, api_key, fake_daily, fake_runner
):
    theirs = factories.make_patient(other_org)
    factories.make_workflow(other_org, slug="theirs")
    cases = [
        ({"patient_id": 999999, "workflow": "reminder"}, "patient_id"),
        ({"patient_id": theirs.pk, "workflow": "reminder"}, "patient_id"),
        ({"external_id": theirs.external_id, "workflow": "reminder"}, "external_id"),
        ({"external_id": "nobody", "workflow": "reminder"}, "external_id"),
        ({"patient_id": patient.pk, "workflow": "theirs"}, "workflow"),
        ({"patient_id": patient.pk, "workflow": "nope"}, "workflow"),
    ]
    for body, field in cases:
        data = assert_envelope(start(client, api_key, body), 404)
        assert data["errors"][0]["field"] == field, body
    nothing_written(fake_daily, fake_runner)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"patient": {"do_not_call": True}}, "do-not-call"),
        ({"patient": {"consent_to_call": False}}, "consent"),
        ({"workflow": {"direction": "dial_in"}}, "dial-in only"),
        ({"workflow": {"is_active": False}}, "inactive"),
    ],
    ids=["do-not-call", "no-consent", "dial-in-workflow", "inactive-workflow"],
)
def test_rule_refusals_are_409_with_the_reason(
    client, workflow, patient, api_key, fake_daily, fake_runner, change, needle
):
    for name, values in change.items():
        obj = {"patient": patient, "workflow": workflow}[name]
        for k, v in values.items():
            setattr(obj, k, v)
        obj.save()
    data = assert_envelope(start(client, api_key, {"patient_id": patient.pk, "workflow": "reminder"}), 409)
    assert needle in data["detail"]
    nothing_written(fake_daily, fake_runner)


def test_invalid_number_is_422_naming_the_field(client, workflow, patient, api_key, fake_daily, fake_runner):
    data = assert_envelope(
        start(client, api_key, {"patient_id": patient.pk, "workflow": "reminder", "phone_number": "12"}), 422
    )
    assert data["errors"] == [{"field": "phone_number", "message": data["detail"]}]
    nothing_written(fake_daily, fake_runner)


def test_validation_errors_name_each_field(client, workflow, patient, api_key, fake_daily, fake_runner):
    data = assert_envelope(start(client, api_key, {"patient_id": "abc", "workflow": ""}), 422)
    assert {"patient_id", "workflow"} <= {e["field"] for e in data["errors"]}
    data = assert_envelope(start(client, api_key, {"workflow": "reminder"}), 422)  # neither patient reference
    assert data["errors"][0]["field"] == "patient_id"
    assert_envelope(
        start(client, api_key, {"patient_id": patient.pk, "external_id": "x", "workflow": "reminder"}), 422
    )
    nothing_written(fake_daily, fake_runner)


def test_unparseable_json_is_400(client, workflow, patient, api_key, fake_daily, fake_runner):
    data = assert_envelope(start(client, api_key, b"{nope"), 400)
    assert "JSON" in data["detail"]
    nothing_written(fake_daily, fake_runner)


def test_deployment_check_refuses_with_503(client, workflow, patient, api_key, fake_daily, fake_runner, settings):
    settings.ENV = "production"
    settings.PIPECAT_API_KEY = ""
    settings.PIPECAT_AGENT_NAME = ""
    data = assert_envelope(start(client, api_key, {"patient_id": patient.pk, "workflow": "reminder"}), 503)
    assert "PIPECAT_API_KEY" in data["detail"] and "PIPECAT_AGENT_NAME" in data["detail"]
    nothing_written(fake_daily, fake_runner)


# --- idempotency ---------------------------------------------------------------------------------


def test_same_idempotency_key_returns_the_same_session(
    client, workflow, patient, api_key, fake_daily, fake_runner, django_capture_on_commit_callbacks
):
    body = {"patient_id": patient.pk, "workflow": "reminder"}
    with django_capture_on_commit_callbacks(execute=True):
        first = start(client, api_key, body, HTTP_IDEMPOTENCY_KEY="order-42")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        second = start(client, api_key, body, HTTP_IDEMPOTENCY_KEY="order-42")
    assert callbacks == []  # nothing enqueued the second time
    assert first.status_code == second.status_code == 202
    assert first.json()["session_id"] == second.json()["session_id"]
    assert second.json()["status"] == "starting"
    assert CallSession.objects.count() == 1
    assert len(fake_runner.started) == 1


def test_same_key_with_a_different_body_is_409(client, workflow, patient, api_key, fake_daily, fake_runner):
    start(client, api_key, {"patient_id": patient.pk, "workflow": "reminder"}, HTTP_IDEMPOTENCY_KEY="k1")
    data = assert_envelope(
        start(client, api_key, {"patient_id": patient.pk, "workflow": "reminder", "phone_number": "+14155550100"},
              HTTP_IDEMPOTENCY_KEY="k1"),
        409,
    )
    assert "Idempotency-Key" in data["detail"]
    assert CallSession.objects.count() == 1


def test_idempotency_keys_are_scoped_to_the_organisation(
    client, org, other_org, workflow, patient, api_key, other_api_key, fake_daily, fake_runner
):
    factories.make_workflow(other_org)
    theirs = factories.make_patient(other_org)
    a = start(client, api_key, {"patient_id": patient.pk, "workflow": "reminder"}, HTTP_IDEMPOTENCY_KEY="same")
    b = start(client, other_api_key, {"patient_id": theirs.pk, "workflow": "reminder"}, HTTP_IDEMPOTENCY_KEY="same")
    assert a.status_code == b.status_code == 202
    assert a.json()["session_id"] != b.json()["session_id"]


def test_idempotency_key_is_kept_24_hours(client, workflow, patient, api_key, fake_daily, fake_runner):
    body = {"patient_id": patient.pk, "workflow": "reminder"}
    first = start(client, api_key, body, HTTP_IDEMPOTENCY_KEY="daily-run").json()["session_id"]
    CallSession.objects.filter(pk=first).update(created_at=timezone.now() - timedelta(hours=23))
    assert start(client, api_key, body, HTTP_IDEMPOTENCY_KEY="daily-run").json()["session_id"] == first
    CallSession.objects.filter(pk=first).update(created_at=timezone.now() - timedelta(hours=25))
    again = start(client, api_key, body, HTTP_IDEMPOTENCY_KEY="daily-run")
    assert again.status_code == 202 and again.json()["session_id"] != first
    assert CallSession.objects.count() == 2


def test_without_a_key_each_request_is_a_new_call(client, workflow, patient, api_key, fake_daily, fake_runner):
    body = {"patient_id": patient.pk, "workflow": "reminder"}
    assert start(client, api_key, body).json()["session_id"] != start(client, api_key, body).json()["session_id"]


def test_refused_request_does_not_use_up_the_key(client, workflow, patient, api_key, fake_daily, fake_runner):
    patient.do_not_call = True
    patient.save()
    body = {"patient_id": patient.pk, "workflow": "reminder"}
    assert start(client, api_key, body, HTTP_IDEMPOTENCY_KEY="k").status_code == 409
    patient.do_not_call = False
    patient.save()
    assert start(client, api_key, body, HTTP_IDEMPOTENCY_KEY="k").status_code == 202


def test_overlong_idempotency_key_is_422(client, workflow, patient, api_key):
    data = assert_envelope(
        start(client, api_key, {"patient_id": patient.pk, "workflow": "reminder"}, HTTP_IDEMPOTENCY_KEY="k" * 201),
        422,
    )
    assert data["errors"][0]["field"] == "Idempotency-Key"


def test_caller_id_may_be_a_36_character_uuid_and_nothing_else(
        client, org, workflow, patient, api_key, fake_daily, fake_runner, django_capture_on_commit_callbacks):
    uuid_id = "0b5a7c1e-3f2d-4e6a-8b9c-1d2e3f4a5b6c"  # Daily's purchased-number id: 36 characters
    with django_capture_on_commit_callbacks(execute=True):
        ok = start(client, api_key, {"patient_id": patient.pk, "workflow": "reminder", "caller_id": uuid_id})
    assert ok.status_code == 202, ok.content
    assert CallSession.objects.get(pk=ok.json()["session_id"]).from_number == uuid_id  # not cut
    bad = start(client, api_key, {"patient_id": patient.pk, "workflow": "reminder", "caller_id": "my-caller"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "caller_id"
