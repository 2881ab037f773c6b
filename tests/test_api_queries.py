"""GET /api/calls and /api/patients answer an EHR's questions; an unknown parameter is a 422."""

from __future__ import annotations

from datetime import datetime, timezone as tz

import pytest

from calls.models import CallStatus
from tests import factories
from tests.api_fixtures import api_key, auth  # noqa: F401

T = lambda day, hour=12: datetime(2026, 5, day, hour, tzinfo=tz.utc)  # noqa: E731


@pytest.fixture
def calls(org, workflow, patient):
    other_wf = factories.make_workflow(org, slug="recall")
    bea = factories.make_patient(org, external_id="EHR-B", first_name="Bea", last_name="Zed", phone="+14155550999")

    def make(when, status, wf=workflow, who=patient, **kw):
        call = factories.make_call(org, wf, who, status=status, **kw)
        type(call).objects.filter(pk=call.pk).update(created_at=when)
        return str(call.pk)

    return {
        "confirmed": make(T(3), CallStatus.COMPLETED, ended_at=T(3, 13), end_reason="completed",
                          outcome={"result": "confirmed"}),
        "declined": make(T(4), CallStatus.COMPLETED, ended_at=T(4, 13), end_reason="completed",
                         outcome={"result": "declined"}),
        "voicemail": make(T(4, 14), CallStatus.NO_ANSWER, wf=other_wf, who=bea, ended_at=T(4, 15),
                          end_reason="voicemail"),
        "live": make(T(5), CallStatus.IN_PROGRESS),
    }


def ids(client, key, query):
    response = client.get(f"/api/calls?{query}", **auth(key))
    assert response.status_code == 200, response.json()
    return [item["session_id"] for item in response.json()["items"]]


def test_call_filters(client, calls, api_key, patient):
    c = calls
    assert ids(client, api_key, "outcome=confirmed") == [c["confirmed"]]
    assert ids(client, api_key, "status=completed") == [c["declined"], c["confirmed"]]
    assert ids(client, api_key, "end_reason=voicemail") == [c["voicemail"]]
    assert ids(client, api_key, "workflow=recall") == [c["voicemail"]]
    assert ids(client, api_key, "external_id=EHR-B") == [c["voicemail"]]
    assert ids(client, api_key, f"patient_id={patient.pk}&status=in_progress") == [c["live"]]
    assert ids(client, api_key, "created_after=2026-05-04T00:00:00Z&created_before=2026-05-05T00:00:00Z") == [
        c["voicemail"], c["declined"]
    ]
    # "which calls ended confirmed yesterday"
    assert ids(client, api_key, "outcome=confirmed&ended_after=2026-05-03T00:00:00Z&ended_before=2026-05-04T00:00:00Z") == [
        c["confirmed"]
    ]
    assert ids(client, api_key, "campaign=1") == []  # no call belongs to a campaign (yet)


def test_call_ordering(client, calls, api_key):
    c = calls
    assert ids(client, api_key, "") == [c["live"], c["voicemail"], c["declined"], c["confirmed"]]
    assert ids(client, api_key, "ordering=created_at") == [c["confirmed"], c["declined"], c["voicemail"], c["live"]]
    assert ids(client, api_key, "ordering=-ended_at") == [c["voicemail"], c["declined"], c["confirmed"], c["live"]]
    bad = client.get("/api/calls?ordering=patient", **auth(api_key))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "ordering"


def test_calls_are_scoped_to_the_keys_organisation(client, calls, other_org, api_key):
    other_wf = factories.make_workflow(other_org)
    factories.make_call(other_org, other_wf, factories.make_patient(other_org), status=CallStatus.COMPLETED,
                        outcome={"result": "confirmed"})
    assert len(ids(client, api_key, "outcome=confirmed")) == 1


@pytest.mark.parametrize("url", [
    "/api/calls?outcom=confirmed",
    "/api/calls?filters=x",  # the handler's own parameter name is not a query parameter
    "/api/calls?status=completed&sort=asc",
    "/api/patients?name=ada",
    "/api/workflows?active=1",
    "/api/webhooks/deliveries?event=call.ended",
])
def test_unknown_query_parameters_are_422(client, org, api_key, url):
    response = client.get(url, **auth(api_key))
    assert response.status_code == 422
    body = response.json()
    unknown = url.split("?")[1].split("&")[-1].split("=")[0]
    assert unknown in body["detail"]
    assert {"field": unknown, "message": "Unknown query parameter."} in body["errors"]


def test_unknown_parameter_without_a_key_is_still_401(client, org):
    assert client.get("/api/calls?outcom=confirmed").status_code == 401


def test_known_parameters_of_detail_routes_and_pages_pass(client, calls, api_key):
    assert client.get("/api/calls?limit=1&offset=1", **auth(api_key)).json()["count"] == 4
    assert client.get(f"/api/calls/{calls['live']}", **auth(api_key)).status_code == 200
    assert client.get(f"/api/calls/{calls['live']}?x=1", **auth(api_key)).status_code == 422


def test_patient_search_by_name_or_phone(client, org, other_org, api_key):
    ada = factories.make_patient(org, first_name="Ada", last_name="Lovelace", phone="+14155550123")
    grace = factories.make_patient(org, first_name="Grace", last_name="Hopper", phone="+12125550199")
    factories.make_patient(other_org, first_name="Ada", last_name="Other", phone="+14155550124")

    def found(q):
        response = client.get("/api/patients", {"q": q}, **auth(api_key))
        assert response.status_code == 200, response.json()
        return [p["id"] for p in response.json()["items"]]

    assert found("ada") == [ada.pk]
    assert found("LOVELACE") == [ada.pk]
    assert found("Grace Hop") == [grace.pk]
    assert found("5550199") == [grace.pk]
    assert found("+1 415 555 0123") == [ada.pk]
    assert found("zzz") == []
    assert client.get("/api/patients?q=a", **auth(api_key)).status_code == 422  # too short to mean anything
