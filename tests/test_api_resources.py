"""EHR resources: patients, calls, workflows — each scoped to the API key's organisation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from calls.models import CallEvent, CallSession
from patients.models import Patient
from tests import factories
from tests.api_fixtures import *  # noqa: F401,F403
from tests.api_fixtures import auth, post_json


def assert_envelope(resp, status):
    assert resp.status_code == status, resp.content
    data = resp.json()
    assert set(data) == {"detail", "errors"} and data["detail"]
    return data


def get(client, url, key, **params):
    return client.get(url, params, **auth(key))


# --- OpenAPI ---------------------------------------------------------------------------------


def test_openapi_schema_and_docs_render(client):
    resp = client.get("/api/openapi.json")
    assert resp.status_code == 200
    schema = resp.json()
    for path in [
        "/api/dialin-webhook/{org_slug}/{workflow_slug}", "/api/start-call", "/api/patients",
        "/api/patients/{patient_id}", "/api/patients/by-external-id/{external_id}", "/api/patients/lookup",
        "/api/calls", "/api/calls/{session_id}", "/api/calls/{session_id}/cancel", "/api/workflows",
    ]:
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"
    assert "security" not in schema["paths"]["/api/dialin-webhook/{org_slug}/{workflow_slug}"]["post"]
    assert client.get("/api/docs").status_code == 200


# --- patients -----------------------------------------------------------------------------------


PATIENT = {
    "external_id": "EHR-900",
    "first_name": "Katherine",
    "last_name": "Johnson",
    "date_of_birth": "1918-08-26",
    "phone": "(415) 555-0142",
    "timezone": "America/New_York",
    "data": {"appointment": "Friday 9:00"},
}


def test_patient_crud(client, org, api_key):
    created = post_json(client, "/api/patients", PATIENT, api_key)
    assert created.status_code == 201, created.content
    p = created.json()
    assert p["phone"] == "+14155550142" and p["consent_to_call"] is True and p["do_not_call"] is False
    pid = p["id"]
    assert Patient.objects.get(pk=pid).organization == org

    assert get(client, f"/api/patients/{pid}", api_key).json()["first_name"] == "Katherine"

    patched = post_json(client, f"/api/patients/{pid}", {"do_not_call": True}, api_key, method="patch")
    assert patched.status_code == 200 and patched.json()["do_not_call"] is True
    assert patched.json()["first_name"] == "Katherine"

    replaced = post_json(client, f"/api/patients/{pid}", {**PATIENT, "first_name": "Kate", "data": {}}, api_key,
                         method="put")
    assert replaced.status_code == 200 and replaced.json()["first_name"] == "Kate"
    # PUT replaces: omitted fields take their defaults, except do-not-call, which only an explicit value lowers
    assert replaced.json()["do_not_call"] is True

    listed = get(client, "/api/patients", api_key)
    assert listed.json()["count"] == 1 and listed.json()["items"][0]["id"] == pid

    deleted = client.delete(f"/api/patients/{pid}", **auth(api_key))
    assert deleted.status_code == 204
    assert_envelope(get(client, f"/api/patients/{pid}", api_key), 404)


def test_patient_validation_names_each_field(client, org, api_key):
    data = assert_envelope(
        post_json(client, "/api/patients", {"first_name": "", "phone": "12", "timezone": "Mars/Base"}, api_key), 422
    )
    assert {e["field"] for e in data["errors"]} == {"first_name", "phone", "timezone"}
    phone_error = next(e for e in data["errors"] if e["field"] == "phone")
    assert "E.164" in phone_error["message"]
    data = assert_envelope(
        post_json(client, f"/api/patients/{factories.make_patient(org).pk}", {"first_name": None}, api_key,
                  method="patch"),
        422,
    )
    assert data["errors"][0]["field"] == "first_name"
    assert_envelope(post_json(client, "/api/patients", b"{oops", api_key), 400)
    assert Patient.objects.filter(first_name="").count() == 0


def test_duplicate_external_id_is_409(client, org, api_key):
    factories.make_patient(org, external_id="EHR-900")
    data = assert_envelope(post_json(client, "/api/patients", PATIENT, api_key), 409)
    assert data["errors"][0]["field"] == "external_id"


def test_upsert_by_external_id(client, org, api_key):
    body = {k: v for k, v in PATIENT.items() if k != "external_id"}
    created = post_json(client, "/api/patients/by-external-id/EHR-77", body, api_key, method="put")
    assert created.status_code == 201, created.content
    assert created.json()["external_id"] == "EHR-77"
    updated = post_json(client, "/api/patients/by-external-id/EHR-77", {**body, "first_name": "Kay"}, api_key,
                        method="put")
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"] and updated.json()["first_name"] == "Kay"
    assert Patient.objects.filter(organization=org, external_id="EHR-77").count() == 1
    mismatch = post_json(client, "/api/patients/by-external-id/EHR-77", {**body, "external_id": "X"}, api_key,
                         method="put")
    assert assert_envelope(mismatch, 422)["errors"][0]["field"] == "external_id"


def test_a_put_without_do_not_call_keeps_the_flag_staff_set(client, org, api_key):
    """An EHR's upsert that leaves out do_not_call never lets an opted-out patient be rung again."""
    body = {k: v for k, v in PATIENT.items() if k not in ("external_id", "do_not_call")}
    created = post_json(client, "/api/patients/by-external-id/EHR-78", body, api_key, method="put")
    assert created.status_code == 201 and created.json()["do_not_call"] is False
    Patient.objects.filter(organization=org, external_id="EHR-78").update(do_not_call=True)
    again = post_json(client, "/api/patients/by-external-id/EHR-78", {**body, "first_name": "Kay"}, api_key, method="put")
    assert again.status_code == 200 and again.json()["do_not_call"] is True
    replaced = post_json(client, f"/api/patients/{created.json()['id']}", body, api_key, method="put")
    assert replaced.status_code == 200 and replaced.json()["do_not_call"] is True
    lowered = post_json(client, "/api/patients/by-external-id/EHR-78", {**body, "do_not_call": False}, api_key,
                        method="put")
    assert lowered.json()["do_not_call"] is False  # only when sent explicitly


def test_list_filters_by_external_id_and_paginates(client, org, api_key):
    for i in range(5):
        factories.make_patient(org, external_id=f"P-{i}")
    page = get(client, "/api/patients", api_key, limit=2, offset=2).json()
    assert page["count"] == 5 and [p["external_id"] for p in page["items"]] == ["P-2", "P-3"]
    only = get(client, "/api/patients", api_key, external_id="P-4").json()
    assert only["count"] == 1 and only["items"][0]["external_id"] == "P-4"
    assert_envelope(get(client, "/api/patients", api_key, limit=0), 422)
    assert_envelope(get(client, "/api/patients", api_key, limit=1000), 422)


def test_lookup_by_phone_in_the_body(client, org, other_org, api_key):
    mine = factories.make_patient(org, phone="+14155550155")
    factories.make_patient(other_org, phone="+14155550155")
    found = post_json(client, "/api/patients/lookup", {"phone": "415-555-0155"}, api_key)
    assert found.status_code == 200
    assert [p["id"] for p in found.json()["items"]] == [mine.pk] and found.json()["count"] == 1
    assert post_json(client, "/api/patients/lookup", {"phone": "+14155550000"}, api_key).json()["count"] == 0
    assert assert_envelope(post_json(client, "/api/patients/lookup", {"phone": "x"}, api_key), 422)["errors"][0][
        "field"] == "phone"


def test_patients_are_scoped_to_the_keys_organisation(client, org, other_org, api_key, other_api_key):
    theirs = factories.make_patient(other_org, external_id="THEIRS")
    mine = factories.make_patient(org, external_id="MINE")
    listed = get(client, "/api/patients", api_key).json()
    assert [p["id"] for p in listed["items"]] == [mine.pk]
    assert get(client, "/api/patients", api_key, external_id="THEIRS").json()["count"] == 0
    for method, body in [("get", None), ("put", PATIENT), ("patch", {"first_name": "X"}), ("delete", None)]:
        url = f"/api/patients/{theirs.pk}"
        resp = post_json(client, url, body, api_key, method=method) if body else getattr(client, method)(url, **auth(api_key))
        assert_envelope(resp, 404)
    # An upsert with another organisation's external id creates this organisation's own patient.
    body = {k: v for k, v in PATIENT.items() if k != "external_id"}
    resp = post_json(client, "/api/patients/by-external-id/THEIRS", body, api_key, method="put")
    assert resp.status_code == 201
    theirs.refresh_from_db()
    assert theirs.first_name != "Katherine" and theirs.organization == other_org
    assert get(client, f"/api/patients/{mine.pk}", other_api_key).status_code == 404


def test_patients_need_a_key(client, org):
    for method, url in [("get", "/api/patients"), ("post", "/api/patients"), ("get", "/api/patients/1"),
                        ("put", "/api/patients/by-external-id/x"), ("post", "/api/patients/lookup")]:
        assert_envelope(getattr(client, method)(url), 401)


# --- calls ------------------------------------------------------------------------------------------


@pytest.fixture
def calls(org, other_org, workflow, patient):
    inbound = factories.make_workflow(org, slug="inbound", direction="dial_in")
    out = factories.make_call(org, workflow, patient)
    inc = factories.make_call(org, inbound, None, direction="dial_in", status="completed",
                              end_reason="completed", outcome={"result": "confirmed"},
                              transcript=[{"role": "assistant", "text": "Hello"}])
    CallSession.objects.filter(pk=inc.pk).update(created_at=timezone.now() - timedelta(days=2))
    CallEvent.objects.create(call=inc, at=timezone.now(), kind="joined", seq=1, data={})
    theirs = factories.make_call(other_org, factories.make_workflow(other_org), factories.make_patient(other_org))
    return dict(out=out, inc=inc, theirs=theirs)


def test_calls_list_filters_and_paginates(client, api_key, calls, patient):
    items = get(client, "/api/calls", api_key).json()
    assert items["count"] == 2
    assert [c["session_id"] for c in items["items"]] == [str(calls["out"].pk), str(calls["inc"].pk)]
    first = items["items"][0]
    assert first["workflow"] == "reminder" and first["patient_id"] == patient.pk
    assert first["patient_external_id"] == patient.external_id
    assert "transcript" not in first

    def ids(**params):
        return [c["session_id"] for c in get(client, "/api/calls", api_key, **params).json()["items"]]

    assert ids(status="completed") == [str(calls["inc"].pk)]
    assert ids(direction="dial_out") == [str(calls["out"].pk)]
    assert ids(patient_id=patient.pk) == [str(calls["out"].pk)]
    assert ids(external_id=patient.external_id) == [str(calls["out"].pk)]
    assert ids(workflow="inbound") == [str(calls["inc"].pk)]
    day_ago = (timezone.now() - timedelta(days=1)).isoformat()
    assert ids(created_after=day_ago) == [str(calls["out"].pk)]
    assert ids(created_before=day_ago) == [str(calls["inc"].pk)]
    assert ids(limit=1, offset=1) == [str(calls["inc"].pk)]
    data = assert_envelope(get(client, "/api/calls", api_key, status="nonsense", direction="sideways"), 422)
    assert {e["field"] for e in data["errors"]} == {"status", "direction"}


def test_calls_list_has_no_n_plus_one(client, org, api_key, workflow, django_assert_max_num_queries):
    for _ in range(10):
        factories.make_call(org, workflow, factories.make_patient(org))
    # auth (1) + last-used update (≤1) + the list's audit row (1) + count (1) + page (1)
    with django_assert_max_num_queries(5):
        assert get(client, "/api/calls", api_key).json()["count"] == 10
    with django_assert_max_num_queries(5):
        assert get(client, "/api/patients", api_key).json()["count"] == 10


def test_call_detail(client, api_key, calls):
    data = get(client, f"/api/calls/{calls['inc'].pk}", api_key).json()
    assert data["status"] == "completed" and data["direction"] == "dial_in"
    assert data["end_reason"] == "completed" and data["outcome"] == {"result": "confirmed"}
    assert data["transcript"] == [{"role": "assistant", "text": "Hello"}]
    assert [e["kind"] for e in data["events"]] == ["joined"] and data["events"][0]["seq"] == 1
    for key in ("created_at", "started_at", "answered_at", "ended_at"):
        assert key in data


def test_calls_are_scoped_to_the_keys_organisation(client, api_key, other_api_key, calls):
    theirs = calls["theirs"].pk
    assert str(theirs) not in str(get(client, "/api/calls", api_key).json())
    assert_envelope(get(client, f"/api/calls/{theirs}", api_key), 404)
    assert_envelope(post_json(client, f"/api/calls/{theirs}/cancel", {}, api_key), 404)
    assert CallSession.objects.get(pk=theirs).status == "queued"
    assert_envelope(get(client, "/api/calls/not-a-uuid", api_key), 404)
    assert get(client, f"/api/calls/{calls['out'].pk}", other_api_key).status_code == 404
    assert get(client, "/api/calls", other_api_key).json()["count"] == 1


def test_cancel_marks_canceled_and_deletes_the_room(
    client, org, workflow, patient, api_key, fake_daily, fake_runner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        sid = post_json(client, "/api/start-call", {"patient_id": patient.pk, "workflow": "reminder"},
                        api_key).json()["session_id"]
    room = CallSession.objects.get(pk=sid).daily_room_name
    assert room in fake_daily.rooms
    resp = post_json(client, f"/api/calls/{sid}/cancel", {}, api_key)
    assert resp.status_code == 200, resp.content
    assert resp.json()["status"] == "canceled" and resp.json()["end_reason"] == "canceled"
    assert fake_daily.requests_to(f"DELETE /rooms/{room}") and room in fake_daily.deleted
    event = CallEvent.objects.filter(call_id=sid, kind="status").last()
    assert event.data["to"] == "canceled" and event.data["by_api_key"]
    # Canceling an ended call is refused.
    data = assert_envelope(post_json(client, f"/api/calls/{sid}/cancel", {}, api_key), 409)
    assert "already ended" in data["detail"]


def test_cancel_of_a_queued_call_without_room_needs_no_daily(client, org, workflow, patient, api_key, settings):
    settings.DAILY_API_KEY = ""  # Daily cannot be reached; nothing is asked of it
    call = factories.make_call(org, workflow, patient)
    resp = post_json(client, f"/api/calls/{call.pk}/cancel", {}, api_key)
    assert resp.status_code == 200 and resp.json()["status"] == "canceled"


def test_cancel_survives_a_daily_failure(client, org, workflow, patient, api_key, fake_daily):
    call = factories.make_call(org, workflow, patient, status="starting", daily_room_name="mr-gone")
    fake_daily.fail_next("DELETE /rooms/*", 500, times=10)
    resp = post_json(client, f"/api/calls/{call.pk}/cancel", {}, api_key)
    assert resp.status_code == 200 and resp.json()["status"] == "canceled"


# --- workflows --------------------------------------------------------------------------------------


def test_workflows_list_is_scoped_and_shows_the_webhook_url(client, org, other_org, workflow, api_key):
    factories.make_workflow(org, slug="inbound", direction="dial_in", name="Inbound")
    factories.make_workflow(other_org, slug="secret-theirs")
    data = get(client, "/api/workflows", api_key).json()
    assert data["count"] == 2
    by_slug = {w["slug"]: w for w in data["items"]}
    assert set(by_slug) == {"reminder", "inbound"}
    assert by_slug["reminder"]["dials_out"] and not by_slug["reminder"]["takes_dialin"]
    assert by_slug["reminder"]["dialin_webhook_url"] is None
    assert by_slug["inbound"]["dialin_webhook_url"] == "http://testserver/api/dialin-webhook/clinic-a/inbound"
    assert_envelope(client.get("/api/workflows"), 401)
