"""POST/GET /api/campaigns and pause/resume/cancel: shapes, scoping, idempotency, 422 on unknown ids."""

from __future__ import annotations

import pytest

from calls.models import CallSession
from campaigns.models import Campaign, CampaignTarget
from tests import factories
from tests.api_fixtures import *  # noqa: F401,F403
from tests.api_fixtures import auth, post_json


@pytest.fixture(autouse=True)
def _deployment_configured(settings):
    """A campaign's start checks the deployment as a call's does (calls.rules); fake servers set their own key."""
    settings.DAILY_API_KEY = settings.DAILY_API_KEY or "key-for-tests"

URL = "/api/campaigns"


@pytest.fixture
def people(org):
    ok = [factories.make_patient(org, external_id=f"E{i}") for i in range(3)]
    dnc = factories.make_patient(org, external_id="E-DNC", do_not_call=True)
    return ok, dnc


def body(**overrides):
    data = {"name": "Flu shots", "workflow": "reminder", "external_ids": ["E0", "E1", "E2", "E-DNC"],
            "pace_per_minute": 20}
    data.update(overrides)
    return data


def test_create_answers_201_with_counts_and_skips(client, api_key, workflow, people):
    response = post_json(client, URL, body(), api_key)
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["name"] == "Flu shots" and data["workflow"] == "reminder"
    assert data["status"] == "running" and data["pace_per_minute"] == 20 and data["start_at"] is None
    assert data["counts"] == {"pending": 3, "active": 0, "reached": 0, "unreachable": 0, "failed": 0,
                              "skipped": 1, "canceled": 0}
    assert data["results"] == {}
    assert data["skipped"] == [{"external_id": "E-DNC", "reason": "do_not_call"}]
    assert CallSession.objects.filter(campaign_id=data["id"], held=True).count() == 3

    got = client.get(f"{URL}/{data['id']}", **auth(api_key))
    assert got.status_code == 200 and got.json()["counts"] == data["counts"]
    listed = client.get(URL, **auth(api_key)).json()
    assert listed["count"] == 1 and listed["items"][0]["id"] == data["id"]


def test_unknown_external_ids_422_and_nothing_created(client, api_key, workflow, people):
    response = post_json(client, URL, body(external_ids=["E0", "NOPE-1", "NOPE-2"]), api_key)
    assert response.status_code == 422
    data = response.json()
    assert [e["message"] for e in data["errors"]] == ["Unknown external id: NOPE-1", "Unknown external id: NOPE-2"]
    assert {e["field"] for e in data["errors"]} == {"external_ids"}
    assert not Campaign.objects.exists() and not CampaignTarget.objects.exists()
    assert not CallSession.objects.exists()


def test_idempotency_key(client, api_key, workflow, people):
    first = post_json(client, URL, body(), api_key, HTTP_IDEMPOTENCY_KEY="k-1")
    again = post_json(client, URL, body(), api_key, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Campaign.objects.count() == 1 and CallSession.objects.count() == 3
    conflict = post_json(client, URL, body(name="Other"), api_key, HTTP_IDEMPOTENCY_KEY="k-1")
    assert conflict.status_code == 409
    assert conflict.json()["errors"][0]["field"] == "Idempotency-Key"


def test_pause_resume_cancel(client, api_key, workflow, people):
    cid = post_json(client, URL, body(), api_key).json()["id"]
    assert post_json(client, f"{URL}/{cid}/resume", {}, api_key).status_code == 409
    paused = post_json(client, f"{URL}/{cid}/pause", {}, api_key)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert post_json(client, f"{URL}/{cid}/resume", {}, api_key).json()["status"] == "running"
    canceled = post_json(client, f"{URL}/{cid}/cancel", {}, api_key).json()
    assert canceled["status"] == "canceled" and canceled["counts"]["canceled"] == 3
    again = post_json(client, f"{URL}/{cid}/cancel", {}, api_key)
    assert again.status_code == 409 and set(again.json()) == {"detail", "errors"}


def test_scoped_to_the_keys_organisation(client, api_key, other_api_key, workflow, people):
    cid = post_json(client, URL, body(), api_key).json()["id"]
    assert client.get(f"{URL}/{cid}", **auth(other_api_key)).status_code == 404
    assert post_json(client, f"{URL}/{cid}/pause", {}, other_api_key).status_code == 404
    assert client.get(URL, **auth(other_api_key)).json() == {"items": [], "count": 0}
    # Another organisation's patients are unknown ids there.
    factories.make_workflow(workflow.organization.__class__.objects.get(slug="clinic-b"), slug="reminder")
    response = post_json(client, URL, body(), other_api_key)
    assert response.status_code == 422


def test_bad_input(client, api_key, workflow, people):
    assert client.get(URL).status_code == 401
    for bad, field in [
        (body(pace_per_minute=0), "pace_per_minute"),
        (body(external_ids=[]), "external_ids"),
        (body(start_at="2026-12-01T09:00:00"), "start_at"),
        (body(workflow="nope"), "workflow"),
    ]:
        response = post_json(client, URL, bad, api_key)
        assert response.status_code in (404, 422), (bad, response.content)
        assert response.json()["errors"][0]["field"] == field
    inbound = factories.make_workflow(workflow.organization, slug="inbound", direction="dial_in")
    refused = post_json(client, URL, body(workflow=inbound.slug), api_key)
    assert refused.status_code == 409 and refused.json()["errors"][0]["field"] == "workflow"
    assert not Campaign.objects.exists()


def test_nul_and_overlong_strings_are_422(client, api_key, workflow, people):
    for bad, field in [(body(name="a\x00b"), "name"), (body(external_ids=["E0\x00"]), "external_ids"),
                       (body(name="x" * 201), "name"), (body(external_ids=["x" * 101]), "external_ids")]:
        response = post_json(client, URL, bad, api_key)
        assert response.status_code == 422, response.content
        assert response.json()["errors"][0]["field"] == field
    assert not Campaign.objects.exists()
