"""Bad input is a 4xx in the error envelope, never a 500 or an HTML page (issue 10, items 4 and 7).

Run on SQLite and on PostgreSQL (which refuses NUL characters and NaN, where
SQLite refuses integers outside 64 bits): every case must be the same 4xx on both.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from channels.testing import WebsocketCommunicator

from calls.models import CallSession
from myrobot.asgi import application
from patients.api import PATIENT_DATA_MAX_BYTES
from patients.models import Patient
from tests import factories
from tests.api_fixtures import *  # noqa: F401,F403
from tests.api_fixtures import auth, new_secret, post_json, signed_headers

BIG = 2**63


def envelope(resp, status, field=None):
    assert resp.status_code == status, (resp.status_code, resp.content[:300])
    assert resp["Content-Type"].startswith("application/json"), resp["Content-Type"]
    body = resp.json()
    assert set(body) == {"detail", "errors"} and body["detail"], body
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


def patient_body(**overrides):
    body = {"first_name": "Ada", "last_name": "Lovelace", "phone": "+14155550123", "data": {}}
    body.update(overrides)
    return body


@pytest.fixture
def wf(org):
    return factories.make_workflow(org, slug="remind")


# --- NUL characters and other strings the database cannot store -----------------------------

@pytest.mark.parametrize("field,value", [
    ("first_name", "A\x00da"),
    ("last_name", "\x00"),
    ("external_id", "E\x00"),
    ("timezone", "Europe/\x00"),
    ("preferred_language", "e\x00"),
    ("data", {"note": "a\x00b"}),
    ("data", {"k\x00": 1}),
    ("data", {"nested": [{"deep": "\x00"}]}),
    ("first_name", "\ud800"),  # a lone surrogate: not UTF-8
])
def test_unstorable_strings_in_patient_fields_are_422(client, api_key, field, value):
    resp = post_json(client, "/api/patients", patient_body(**{field: value}), api_key)
    envelope(resp, 422, field)
    assert Patient.objects.count() == 0


def test_nul_in_patch_and_lookup_and_filters_is_422(client, api_key, org):
    p = factories.make_patient(org)
    envelope(post_json(client, f"/api/patients/{p.pk}", {"last_name": "x\x00"}, api_key, method="patch"),
             422, "last_name")
    envelope(post_json(client, "/api/patients/lookup", {"phone": "+1415\x00"}, api_key), 422, "phone")
    envelope(client.get("/api/patients", {"external_id": "a\x00"}, **auth(api_key)), 422, "external_id")
    envelope(client.get("/api/calls", {"workflow": "a\x00"}, **auth(api_key)), 422, "workflow")
    envelope(client.get("/api/calls", {"external_id": "a\x00"}, **auth(api_key)), 422, "external_id")
    envelope(client.put("/api/patients/by-external-id/a%00b", data=json.dumps(patient_body()),
                        content_type="application/json", **auth(api_key)), 422, "external_id")


@pytest.mark.parametrize("field,value", [
    ("workflow", "rem\x00ind"), ("external_id", "E\x00"), ("phone_number", "+1415\x00"), ("caller_id", "\x00"),
])
def test_nul_in_start_call_fields_is_422(client, api_key, wf, patient, field, value):
    body = {"patient_id": patient.pk, "workflow": "remind", field: value}
    if field == "external_id":
        del body["patient_id"]
    envelope(post_json(client, "/api/start-call", body, api_key), 422, field)
    assert CallSession.objects.count() == 0


@pytest.fixture
def dialin(db):
    org = factories.make_org("sunrise", name="Sunrise", dialin_webhook_secret=new_secret())
    factories.make_workflow(org, slug="inbound", direction="dial_in")
    return org


def send_webhook(client, org, body, slug="inbound"):
    raw = json.dumps(body).encode()
    return client.post(f"/api/dialin-webhook/{org.slug}/{slug}", data=raw, content_type="application/json",
                       **signed_headers(org.dialin_webhook_secret, raw))


@pytest.mark.parametrize("field", ["callId", "callDomain", "From", "To"])
def test_nul_in_webhook_fields_is_422(client, dialin, field):
    body = {"callId": str(uuid.uuid4()), "callDomain": "dom", "From": "+14155550123", "To": "+14155559999"}
    body[field] = body[field] + "\x00"
    envelope(send_webhook(client, dialin, body), 422, field)
    assert CallSession.objects.count() == 0


# --- integers outside 64 bits --------------------------------------------------------------

@pytest.mark.parametrize("url", ["/api/patients", "/api/calls", "/api/workflows"])
@pytest.mark.parametrize("offset", [BIG, 10**30])
def test_offset_outside_64_bits_is_422_on_every_list(client, api_key, url, offset):
    envelope(client.get(url, {"offset": offset}, **auth(api_key)), 422, "offset")


def test_largest_offset_is_an_empty_page(client, api_key):
    resp = client.get("/api/patients", {"offset": BIG - 1}, **auth(api_key))
    assert resp.status_code == 200 and resp.json()["items"] == []


def test_ids_outside_64_bits_are_422(client, api_key, wf):
    envelope(client.get("/api/calls", {"patient_id": BIG}, **auth(api_key)), 422, "patient_id")
    envelope(client.get(f"/api/patients/{BIG}", **auth(api_key)), 422, "patient_id")
    envelope(post_json(client, "/api/start-call", {"patient_id": BIG, "workflow": "remind"}, api_key),
             422, "patient_id")


def test_dates_outside_the_databases_range_are_422(client, api_key):
    envelope(client.get("/api/calls", {"created_after": "9999-12-31T23:59:59-14:00"}, **auth(api_key)),
             422, "created_after")
    envelope(client.get("/api/calls", {"created_before": "0001-01-01T00:00:00+14:00"}, **auth(api_key)),
             422, "created_before")


# --- lengths, sizes, values --------------------------------------------------------------------

def test_external_id_longer_than_its_column_in_the_url_is_422(client, api_key):
    resp = client.put("/api/patients/by-external-id/" + "x" * 101, data=json.dumps(patient_body()),
                      content_type="application/json", **auth(api_key))
    envelope(resp, 422, "external_id")
    assert Patient.objects.count() == 0


@pytest.mark.parametrize("raw", [
    b'{"first_name": "Ada", "phone": "+14155550123", "data": {"x": NaN}}',
    b'{"first_name": "Ada", "phone": "+14155550123", "data": {"x": Infinity}}',
    b'{"first_name": "Ada", "phone": "+14155550123", "data": {"x": 1e400}}',
])
def test_nan_inside_data_is_400_not_json(client, api_key, raw):
    resp = client.post("/api/patients", data=raw, content_type="application/json", **auth(api_key))
    envelope(resp, 400)
    assert Patient.objects.count() == 0


@pytest.mark.parametrize("dob", ["2999-01-01", "1899-12-31", (dt.date.today() + dt.timedelta(days=3)).isoformat()])
def test_date_of_birth_in_the_future_or_before_1900_is_422(client, api_key, dob):
    envelope(post_json(client, "/api/patients", patient_body(date_of_birth=dob), api_key), 422, "date_of_birth")


def test_plausible_dates_of_birth_are_fine(client, api_key):
    for dob in ("1900-01-01", dt.date.today().isoformat()):
        resp = post_json(client, "/api/patients", patient_body(date_of_birth=dob, external_id=dob), api_key)
        assert resp.status_code == 201, resp.content


def test_patient_data_over_the_limit_is_422_naming_it(client, api_key, org):
    big = {"notes": "x" * PATIENT_DATA_MAX_BYTES}
    body = envelope(post_json(client, "/api/patients", patient_body(data=big), api_key), 422, "data")
    assert str(PATIENT_DATA_MAX_BYTES) in json.dumps(body)
    p = factories.make_patient(org)
    envelope(post_json(client, f"/api/patients/{p.pk}", {"data": big}, api_key, method="patch"), 422, "data")
    ok = {"notes": "x" * (PATIENT_DATA_MAX_BYTES - 100)}
    assert post_json(client, "/api/patients", patient_body(data=ok), api_key).status_code == 201


def test_five_megabyte_body_is_413_in_the_envelope(client, api_key, dialin):
    raw = json.dumps(patient_body(data={"x": "y" * (5 * 1024 * 1024)})).encode()
    envelope(client.post("/api/patients", data=raw, content_type="application/json", **auth(api_key)), 413)
    envelope(client.post("/api/dialin-webhook/sunrise/inbound", data=raw, content_type="application/json"), 413)
    assert Patient.objects.count() == 0 and CallSession.objects.count() == 0


def test_get_on_the_webhook_is_405_in_the_envelope(client, dialin):
    resp = client.get("/api/dialin-webhook/sunrise/inbound")
    envelope(resp, 405)
    assert "POST" in resp["Allow"]
    envelope(client.delete("/api/start-call"), 405)


# --- sockets ---------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/ws/nowhere/", "/ws/bot/not-a-uuid/", "/ws/calls/123/", "/ws/bot/"])
async def test_unknown_socket_path_is_refused_cleanly(path, caplog):
    comm = WebsocketCommunicator(application, path, headers=[(b"host", b"127.0.0.1")])
    connected, code = await comm.connect(timeout=5)
    assert not connected
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    await comm.disconnect()


# --- dial-in deduplication per organisation --------------------------------------------------

def test_another_organisation_reusing_a_call_id_gets_409(client, dialin, fake_daily, fake_runner,
                                                          django_capture_on_commit_callbacks):
    other = factories.make_org("moonrise", name="Moonrise", dialin_webhook_secret=new_secret())
    factories.make_workflow(other, slug="inbound", direction="dial_in")
    body = {"callId": str(uuid.uuid4()), "callDomain": "dom", "From": "+14155550123", "To": "+14155559999"}
    with django_capture_on_commit_callbacks(execute=True):
        first = send_webhook(client, dialin, body)
    assert first.status_code == 200
    session_id = first.json()["session_id"]

    refused = send_webhook(client, other, body)
    body_out = envelope(refused, 409, "callId")
    assert session_id not in json.dumps(body_out)
    assert CallSession.objects.filter(organization=other).count() == 0
    # the first organisation's redelivery still gets its own call
    again = send_webhook(client, dialin, body)
    assert again.status_code == 200 and again.json()["session_id"] == session_id


# --- the schema documents the errors -----------------------------------------------------

def test_openapi_documents_every_error_each_route_answers(client):
    spec = client.get("/api/openapi.json").json()
    ops = {(m.upper(), path): op for path, item in spec["paths"].items() for m, op in item.items()}
    expected = {
        ("GET", "/api/patients"): {"401", "422"},
        ("POST", "/api/patients"): {"400", "401", "409", "413", "422"},
        ("PUT", "/api/patients/by-external-id/{external_id}"): {"400", "401", "413", "422"},
        ("GET", "/api/patients/{patient_id}"): {"401", "404", "422"},
        ("PATCH", "/api/patients/{patient_id}"): {"400", "401", "404", "409", "413", "422"},
        ("POST", "/api/start-call"): {"400", "401", "404", "409", "413", "422", "503"},
        ("GET", "/api/calls"): {"401", "422"},
        ("GET", "/api/calls/{session_id}"): {"401", "404"},
        ("POST", "/api/calls/{session_id}/cancel"): {"401", "404", "409"},
        ("POST", "/api/dialin-webhook/{org_slug}/{workflow_slug}"): {"400", "401", "404", "409", "413", "422", "503"},
        ("GET", "/api/workflows"): {"401", "422"},
    }
    for key, statuses in expected.items():
        documented = set(ops[key]["responses"])
        assert statuses <= documented, (key, statuses - documented)
        error_schema = ops[key]["responses"][sorted(statuses)[0]]["content"]["application/json"]["schema"]
        assert error_schema["$ref"].endswith("/ErrorOut")


def test_admin_patient_form_refuses_nul_in_data(client, org):
    client.force_login(factories.make_user(org=org, role="staff"))
    resp = client.post("/admin/patients/patient/add/", {
        "organization": org.pk, "first_name": "Ada", "last_name": "L", "phone": "+14155550123",
        "preferred_language": "en", "timezone": "", "data": '{"x": "a\\u0000b"}', "consent_to_call": "on",
    })
    assert resp.status_code == 200 and "NUL" in resp.content.decode()
    assert Patient.objects.count() == 0
