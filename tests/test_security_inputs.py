"""Inputs that answered 500 now answer 422 naming the field."""

from __future__ import annotations

import pytest

from calls.models import CallSession
from campaigns.models import Campaign
from tests import factories
from tests.api_fixtures import *  # noqa: F401,F403
from tests.api_fixtures import post_json

pytestmark = pytest.mark.django_db

EDGES = ["0001-01-01T00:00:00+05:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00",
         "9999-12-31T23:00:00Z", "9999-12-31T23:59:59+14:00"]


@pytest.fixture(autouse=True)
def _configured(settings):
    settings.DAILY_API_KEY = settings.DAILY_API_KEY or "key-for-tests"


@pytest.mark.parametrize("when", EDGES)
def test_start_call_not_before_at_the_calendars_edges(client, org, workflow, patient, api_key, when):
    response = post_json(client, "/api/start-call", {"patient_id": patient.pk, "workflow": workflow.slug,
                                                     "not_before": when}, api_key)
    assert response.status_code == 422, response.content
    assert "not_before" in str(response.json()) and not CallSession.objects.exists()


@pytest.mark.parametrize("when", EDGES)
def test_campaign_start_at_at_the_calendars_edges(client, org, workflow, patient, api_key, when):
    response = post_json(client, "/api/campaigns", {"name": "Flu", "workflow": workflow.slug,
                                                    "external_ids": [patient.external_id], "start_at": when}, api_key)
    assert response.status_code == 422, response.content
    assert "start_at" in str(response.json()) and not Campaign.objects.exists()


@pytest.mark.parametrize("field", ["external_ids", "name"])
def test_a_lone_surrogate_in_a_campaign_is_a_422(client, org, workflow, patient, api_key, field):
    body = {"name": "Flu", "workflow": workflow.slug, "external_ids": [patient.external_id]}
    raw = json_with_surrogate(body, field)
    response = post_json(client, "/api/campaigns", raw, api_key)
    assert response.status_code == 422, response.content
    assert field in str(response.json()) and not Campaign.objects.exists()


def json_with_surrogate(body, field) -> str:
    import json

    text = json.dumps({**body, field: ["SURROGATE"] if field == "external_ids" else "SURROGATE"})
    return text.replace("SURROGATE", "\\ud800")


def test_a_normal_start_at_is_still_taken(client, org, workflow, patient, api_key):
    response = post_json(client, "/api/campaigns", {"name": "Flu", "workflow": workflow.slug,
                                                    "external_ids": [patient.external_id],
                                                    "start_at": "2030-01-07T09:00:00-05:00"}, api_key)
    assert response.status_code == 201, response.content
