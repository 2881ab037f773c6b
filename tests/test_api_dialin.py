"""POST /api/dialin-webhook/{org}/{workflow}: Daily's pinless dial-in, end to end with the fakes."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from calls import services
from calls.models import CallEvent, CallSession
from tests import factories
from tests.api_fixtures import *  # noqa: F401,F403
from tests.api_fixtures import new_secret, requires_postgres, signed_headers


def url(org="sunrise", wf="inbound"):
    return f"/api/dialin-webhook/{org}/{wf}"


def dialin_body(call_id=None, **overrides):
    body = {
        "From": "+14155550123",
        "To": "+14155559999",
        "callId": call_id or str(uuid.uuid4()),
        "callDomain": "0d6b6c3e-6d8a-4a47-9e0f-1c2b3a4d5e6f",
    }
    body.update(overrides)
    return body


def send(client, body, secret=None, *, org="sunrise", wf="inbound", timestamp=None, headers=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = signed_headers(secret, raw, timestamp=timestamp) if secret else {}
    h.update(headers or {})
    return client.post(url(org, wf), data=raw, content_type="application/json", **h)


def assert_envelope(resp, status):
    assert resp.status_code == status, resp.content
    data = resp.json()
    assert set(data) == {"detail", "errors"} and data["detail"]
    return data


def nothing_written(*fakes):
    assert CallSession.objects.count() == 0
    assert CallEvent.objects.count() == 0
    for fake in fakes:
        assert fake.requests == []


@pytest.fixture
def caller(dialin_org):
    return factories.make_patient(dialin_org, phone="+14155550123", first_name="Grace", last_name="Hopper")


# --- the happy path -------------------------------------------------------------------


def test_signed_webhook_makes_a_room_and_starts_the_bot(
    client, dialin_org, inbound, caller, fake_daily, fake_runner, django_capture_on_commit_callbacks
):
    body = dialin_body()
    with django_capture_on_commit_callbacks(execute=True):
        resp = send(client, body, dialin_org.dialin_webhook_secret)
    assert resp.status_code == 200, resp.content
    session_id = resp.json()["session_id"]
    assert resp.json() == {"session_id": session_id}

    call = CallSession.objects.get(pk=session_id)
    assert call.direction == "dial_in"
    assert call.patient == caller
    assert (call.from_number, call.to_number) == ("+14155550123", "+14155559999")
    assert (call.daily_call_id, call.daily_call_domain) == (body["callId"], body["callDomain"])
    assert call.status == "starting"

    [room_req] = fake_daily.requests_to("POST /rooms")
    assert room_req["json"]["name"] == call.daily_room_name
    assert room_req["json"]["properties"]["sip"]["sip_mode"] == "dial-in"
    # every room can dial out (a dial-in's transfer/escalation dials from it)
    assert room_req["json"]["properties"]["enable_dialout"] is True
    assert room_req["json"]["properties"]["sip"]["display_name"] == "Caller"

    [start] = fake_runner.requests_to("POST /start")
    assert start["json"]["createDailyRoom"] is False
    sent = start["json"]["body"]
    assert sent["session_id"] == session_id
    assert sent["room_url"] == call.daily_room_url
    assert sent["dialin_settings"] == {
        "call_id": body["callId"],
        "call_domain": body["callDomain"],
        "from_phone": "+14155550123",
        "to_phone": "+14155559999",
    }
    assert "dialout_settings" not in sent
    assert sent["patient_id"] == str(caller.pk)
    assert sent["patient_data"]["first_name"] == "Grace"
    assert sent["organization_slug"] == "sunrise" and sent["client_name"] == "Sunrise Clinic"
    assert sent["workflow"]["slug"] == "inbound"
    assert fake_daily.verify_token(sent["token"])["r"] == call.daily_room_name
    assert fake_runner.started == [sent]


def test_production_start_goes_to_pipecat_cloud(
    client, dialin_org, inbound, fake_daily, fake_runner, fake_pipecat, settings, django_capture_on_commit_callbacks
):
    settings.ENV = "production"
    with django_capture_on_commit_callbacks(execute=True):
        resp = send(client, dialin_body(), dialin_org.dialin_webhook_secret)
    assert resp.status_code == 200
    [start] = fake_pipecat.requests
    assert start["headers"]["Authorization"] == f"Bearer {fake_pipecat.api_key}"
    assert start["json"]["body"]["session_id"] == resp.json()["session_id"]
    assert fake_runner.requests == []


def test_unknown_caller_is_fine(client, dialin_org, inbound, fake_daily, fake_runner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        resp = send(client, dialin_body(From="+14155550999"), dialin_org.dialin_webhook_secret)
    assert resp.status_code == 200
    call = CallSession.objects.get()
    assert call.patient is None
    [sent] = fake_runner.started
    assert sent["patient_id"] == "" and sent["patient_data"] == {}


def test_caller_number_is_normalised_before_matching(
    client, dialin_org, inbound, caller, fake_daily, fake_runner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        resp = send(client, dialin_body(From="(415) 555-0123"), dialin_org.dialin_webhook_secret)
    assert resp.status_code == 200
    call = CallSession.objects.get()
    assert call.from_number == "+14155550123" and call.patient == caller


def test_shared_number_is_not_guessed(client, dialin_org, inbound, caller, fake_daily, fake_runner):
    factories.make_patient(dialin_org, phone="+14155550123", first_name="Other")
    resp = send(client, dialin_body(), dialin_org.dialin_webhook_secret)
    assert resp.status_code == 200
    assert CallSession.objects.get().patient is None


def test_patients_of_other_organisations_are_not_matched(client, dialin_org, inbound, other_org, fake_daily, fake_runner):
    factories.make_patient(other_org, phone="+14155550123")
    assert send(client, dialin_body(), dialin_org.dialin_webhook_secret).status_code == 200
    assert CallSession.objects.get().patient is None


def test_timestamp_in_milliseconds_is_accepted(client, dialin_org, inbound, fake_daily, fake_runner):
    resp = send(client, dialin_body(), dialin_org.dialin_webhook_secret, timestamp=str(int(time.time() * 1000)))
    assert resp.status_code == 200


def test_workflow_taking_both_directions_takes_dialin(client, dialin_org, fake_daily, fake_runner):
    factories.make_workflow(dialin_org, slug="both", direction="both")
    assert send(client, dialin_body(), dialin_org.dialin_webhook_secret, wf="both").status_code == 200


# --- verification request -----------------------------------------------------------


@pytest.mark.parametrize("key", ["Test", "test"])
def test_verification_request_answers_200_and_does_nothing(client, dialin_org, inbound, fake_daily, fake_runner, key):
    resp = send(client, {key: "test"})  # unsigned: Daily's save-time check
    assert resp.status_code == 200
    assert resp.json() == {"test": True}
    nothing_written(fake_daily, fake_runner)


def test_verification_request_still_needs_the_route(client, dialin_org, inbound, fake_daily):
    assert_envelope(send(client, {"Test": "test"}, wf="nope"), 404)


# --- refusals: each answers its status and writes nothing ------------------------------------


@pytest.mark.parametrize(
    "org, wf",
    [("nope", "inbound"), ("sunrise", "nope"), ("sunrise", "outbound"), ("dormant", "inbound")],
    ids=["unknown-org", "unknown-workflow", "dial-out-only-workflow", "inactive-org"],
)
def test_unknown_route_is_404(client, dialin_org, inbound, fake_daily, fake_runner, org, wf):
    factories.make_workflow(dialin_org, slug="outbound", direction="dial_out")
    dormant = factories.make_org("dormant", is_active=False, dialin_webhook_secret=dialin_org.dialin_webhook_secret)
    factories.make_workflow(dormant, slug="inbound", direction="dial_in")
    assert_envelope(send(client, dialin_body(), dialin_org.dialin_webhook_secret, org=org, wf=wf), 404)
    nothing_written(fake_daily, fake_runner)


def test_bad_signature_is_401(client, dialin_org, inbound, fake_daily, fake_runner):
    raw = json.dumps(dialin_body()).encode()
    headers = signed_headers(dialin_org.dialin_webhook_secret, raw)
    headers["HTTP_X_PINLESS_SIGNATURE"] = headers["HTTP_X_PINLESS_SIGNATURE"][:-4] + "AAA="
    resp = client.post(url(), data=raw, content_type="application/json", **headers)
    assert_envelope(resp, 401)
    nothing_written(fake_daily, fake_runner)


def test_body_changed_after_signing_is_401(client, dialin_org, inbound, fake_daily, fake_runner):
    raw = json.dumps(dialin_body()).encode()
    headers = signed_headers(dialin_org.dialin_webhook_secret, raw)
    tampered = raw.replace(b"+14155559999", b"+14155558888")
    assert_envelope(client.post(url(), data=tampered, content_type="application/json", **headers), 401)
    nothing_written(fake_daily, fake_runner)


def test_missing_signature_is_401(client, dialin_org, inbound, fake_daily, fake_runner):
    assert_envelope(send(client, dialin_body()), 401)
    raw = json.dumps(dialin_body()).encode()
    only_ts = {"HTTP_X_PINLESS_TIMESTAMP": str(int(time.time()))}
    assert_envelope(client.post(url(), data=raw, content_type="application/json", **only_ts), 401)
    nothing_written(fake_daily, fake_runner)


# Just outside the 300 s window: 302, because whole-second timestamps lose up to 1 s.
@pytest.mark.parametrize("age_s", [302, -302, 3600])
def test_replayed_or_future_timestamp_is_401(client, dialin_org, inbound, fake_daily, fake_runner, age_s):
    ts = str(int(time.time()) - age_s)
    assert_envelope(send(client, dialin_body(), dialin_org.dialin_webhook_secret, timestamp=ts), 401)
    ts_ms = str(int((time.time() - age_s) * 1000))
    assert_envelope(send(client, dialin_body(), dialin_org.dialin_webhook_secret, timestamp=ts_ms), 401)
    nothing_written(fake_daily, fake_runner)


def test_replay_window_comes_from_settings(client, dialin_org, inbound, fake_daily, fake_runner, settings):
    settings.DIALIN_WEBHOOK_MAX_SKEW_S = 10
    ts = str(int(time.time()) - 60)
    assert_envelope(send(client, dialin_body(), dialin_org.dialin_webhook_secret, timestamp=ts), 401)
    settings.DIALIN_WEBHOOK_MAX_SKEW_S = 120
    assert send(client, dialin_body(), dialin_org.dialin_webhook_secret, timestamp=ts).status_code == 200


def test_other_organisations_secret_is_401(client, dialin_org, inbound, fake_daily, fake_runner):
    other = factories.make_org("elsewhere", dialin_webhook_secret=new_secret())
    assert_envelope(send(client, dialin_body(), other.dialin_webhook_secret), 401)
    nothing_written(fake_daily, fake_runner)


def test_non_numeric_timestamp_is_401(client, dialin_org, inbound, fake_daily, fake_runner):
    assert_envelope(send(client, dialin_body(), dialin_org.dialin_webhook_secret, timestamp="yesterday"), 401)
    nothing_written(fake_daily, fake_runner)


def test_org_without_secret_accepts_unsigned_only_with_debug(client, inbound, dialin_org, fake_daily, fake_runner, settings):
    dialin_org.dialin_webhook_secret = ""
    dialin_org.save()
    settings.DEBUG = False
    assert_envelope(send(client, dialin_body()), 401)
    nothing_written(fake_daily, fake_runner)
    settings.DEBUG = True
    assert send(client, dialin_body()).status_code == 200
    assert CallSession.objects.count() == 1


def test_unparseable_body_is_400(client, dialin_org, inbound, fake_daily, fake_runner):
    data = assert_envelope(send(client, b"{not json", dialin_org.dialin_webhook_secret), 400)
    assert "JSON" in data["detail"]
    assert_envelope(send(client, b"", dialin_org.dialin_webhook_secret), 400)
    nothing_written(fake_daily, fake_runner)


def test_body_that_is_not_an_object_is_422(client, dialin_org, inbound, fake_daily, fake_runner):
    data = assert_envelope(send(client, b"[1, 2]", dialin_org.dialin_webhook_secret), 422)
    assert data["errors"][0]["field"] == "body"
    nothing_written(fake_daily, fake_runner)


def test_missing_fields_are_422_naming_each(client, dialin_org, inbound, fake_daily, fake_runner):
    body = dialin_body()
    del body["callId"]
    body["callDomain"] = ""
    data = assert_envelope(send(client, body, dialin_org.dialin_webhook_secret), 422)
    assert {e["field"] for e in data["errors"]} == {"callId", "callDomain"}
    nothing_written(fake_daily, fake_runner)


def test_wrong_field_types_are_422(client, dialin_org, inbound, fake_daily, fake_runner):
    data = assert_envelope(send(client, dialin_body(callId=123, sipHeaders="x"), dialin_org.dialin_webhook_secret), 422)
    assert {e["field"] for e in data["errors"]} == {"callId", "sipHeaders"}
    nothing_written(fake_daily, fake_runner)


def test_signature_is_checked_before_fields(client, dialin_org, inbound, fake_daily):
    # An unsigned malformed body must not learn which fields are wrong.
    assert_envelope(send(client, b"{not json"), 401)
    assert_envelope(send(client, {"callId": ""}), 401)


def test_inactive_workflow_is_409(client, dialin_org, inbound, fake_daily, fake_runner):
    inbound.is_active = False
    inbound.save()
    assert_envelope(send(client, dialin_body(), dialin_org.dialin_webhook_secret), 409)
    nothing_written(fake_daily, fake_runner)


def test_deployment_without_daily_key_is_503(client, dialin_org, inbound, fake_runner, settings):
    settings.DAILY_API_KEY = ""
    data = assert_envelope(send(client, dialin_body(), dialin_org.dialin_webhook_secret), 503)
    assert "DAILY_API_KEY" in data["detail"]
    nothing_written(fake_runner)


# --- the same callId again --------------------------------------------------------------


def test_duplicate_call_id_in_sequence_gives_one_call(
    client, dialin_org, inbound, fake_daily, fake_runner, django_capture_on_commit_callbacks
):
    body = dialin_body()
    ids = []
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            resp = send(client, body, dialin_org.dialin_webhook_secret)
        assert resp.status_code == 200
        ids.append(resp.json()["session_id"])
    assert len(set(ids)) == 1
    assert CallSession.objects.count() == 1
    assert len(fake_daily.requests_to("POST /rooms")) == 1
    assert len(fake_runner.started) == 1


def test_same_call_id_in_another_call_domain_is_another_call(client, dialin_org, inbound, fake_daily, fake_runner):
    call_id = str(uuid.uuid4())
    a = send(client, dialin_body(call_id), dialin_org.dialin_webhook_secret).json()["session_id"]
    b = send(client, dialin_body(call_id, callDomain="another-domain"), dialin_org.dialin_webhook_secret).json()[
        "session_id"
    ]
    assert a != b


def test_webhook_logs_no_phone_numbers(client, dialin_org, inbound, caller, fake_daily, fake_runner, caplog,
                                       django_capture_on_commit_callbacks):
    caplog.set_level("DEBUG")
    with django_capture_on_commit_callbacks(execute=True):
        assert send(client, dialin_body(), dialin_org.dialin_webhook_secret).status_code == 200
    assert send(client, dialin_body(), "").status_code == 401
    text = caplog.text
    assert "4155550123" not in text and "4155559999" not in text and "Grace" not in text


# --- concurrency: the database decides ---------------------------------------------------


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_accept_dialin_creates_one_call(dialin_org, inbound, fake_daily, fake_runner):
    """Eight threads, each with its own connection, insert the same callId at once."""
    n = 8
    barrier = threading.Barrier(n)
    call_id = str(uuid.uuid4())

    def accept(_):
        try:
            barrier.wait(10)
            call, created = services.accept_dialin(
                organization=dialin_org, workflow=inbound, call_id=call_id, call_domain="dom",
                from_number="+14155550100", to_number="+14155559999",
            )
            return str(call.pk), created
        finally:
            connection.close()

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(accept, range(n)))
    assert len({sid for sid, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert CallSession.objects.filter(daily_call_id=call_id).count() == 1
    assert len(fake_runner.started) == 1


@requires_postgres
def test_concurrent_webhooks_against_a_live_server_give_one_call(
    fake_daily, fake_runner, dialin_org, inbound, asgi_live_server
):
    n = 8
    raw = json.dumps(dialin_body()).encode()
    headers = {
        "Content-Type": "application/json",
        **{k[5:].replace("_", "-"): v for k, v in signed_headers(dialin_org.dialin_webhook_secret, raw).items()},
    }
    barrier = threading.Barrier(n)

    def post(_):
        barrier.wait(10)
        req = urllib.request.Request(asgi_live_server.url + url(), data=raw, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(post, range(n)))
    assert {status for status, _ in results} == {200}
    assert len({body["session_id"] for _, body in results}) == 1
    assert CallSession.objects.count() == 1
    assert len(fake_daily.requests_to("POST /rooms")) == 1
    assert len(fake_runner.started) == 1
