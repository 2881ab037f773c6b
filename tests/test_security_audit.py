"""The audit trail's former gaps, what call.ended carries without the transcript, and the
API fixes found by the attack (campaign filter, one birth-date rule, phone in the body)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import AuditEvent
from calls.models import CallSession, CallStatus
from calls.state import transition
from campaigns import services as campaigns
from patients.models import Patient
from tests import factories
from tests.api_fixtures import *  # noqa: F401,F403
from tests.api_fixtures import auth, post_json
from webhooks import services as webhooks
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _configured(settings):
    settings.DAILY_API_KEY = settings.DAILY_API_KEY or "key-for-tests"


def rows(action):
    return list(AuditEvent.objects.filter(action=action).values_list("object_type", "object_id", "via", "actor"))


def test_api_lists_and_searches_are_audited(client, org, api_key):
    factories.make_patient(org, first_name="Ada")
    assert client.get("/api/patients", **auth(api_key)).status_code == 200
    assert client.get("/api/patients", {"q": "ada"}, **auth(api_key)).status_code == 200
    assert client.get("/api/calls", **auth(api_key)).status_code == 200
    assert [r[:3] for r in rows("list_patients")] == [("patients.patient", "", "api")]
    assert [r[:3] for r in rows("search_patients")] == [("patients.patient", "", "api")]
    assert [r[:3] for r in rows("list_calls")] == [("calls.callsession", "", "api")]
    assert {r[3] for r in rows("list_calls")} == {AuditEvent.objects.first().actor} and rows("list_calls")[0][3]


def test_patients_created_by_a_csv_import_are_audited(client, org, workflow):
    staff = factories.make_user(org=org, role="staff")
    campaign = campaigns.create_campaign(organization=org, workflow=workflow, name="Flu", patients=[], start=False)
    client.force_login(staff)
    csv = "external_id,first_name,last_name,phone,date_of_birth\nNEW-1,Alan,Turing,+14155550101,1912-06-23\n"
    response = client.post(f"/admin/campaigns/campaign/{campaign.pk}/upload/",
                           {"file": SimpleUploadedFile("list.csv", csv.encode(), content_type="text/csv")})
    assert response.status_code == 302
    alan = Patient.objects.get(external_id="NEW-1")
    assert rows("change_patient") == [("patients.patient", str(alan.pk), "import", staff.username)]


def test_a_csv_import_refuses_the_birth_dates_the_api_refuses(client, org, workflow, api_key):
    staff = factories.make_user(org=org, role="staff")
    campaign = campaigns.create_campaign(organization=org, workflow=workflow, name="Flu", patients=[], start=False)
    client.force_login(staff)
    csv = "external_id,first_name,last_name,phone,date_of_birth\nNEW-1,Alan,Turing,+14155550101,0001-01-01\n"
    response = client.post(f"/admin/campaigns/campaign/{campaign.pk}/upload/",
                           {"file": SimpleUploadedFile("list.csv", csv.encode(), content_type="text/csv")})
    assert response.status_code == 400
    assert "date_of_birth: must be on or after 1900-01-01" in response.content.decode()
    assert not Patient.objects.filter(external_id="NEW-1").exists()
    api = post_json(client, "/api/patients", {"first_name": "Alan", "phone": "+14155550101",
                                               "date_of_birth": "0001-01-01"}, api_key)
    assert api.status_code == 422 and "1900-01-01" in str(api.json())


def test_campaign_pages_are_audited(client, org, workflow):
    staff = factories.make_user(org=org, role="staff")
    campaign = campaigns.create_campaign(organization=org, workflow=workflow, name="Flu", patients=[], start=False)
    client.force_login(staff)
    assert client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").status_code == 200
    assert rows("view_campaign") == [("campaigns.campaign", str(campaign.pk), "admin", staff.username)]


def test_redeliveries_are_audited(client, org, workflow, patient):
    admin = factories.make_user(org=org, role="admin")
    WebhookEndpoint.objects.create(organization=org, url="https://ehr.example.org/hook", events=["call.ended"])
    call = factories.make_call(org, workflow, patient, status=CallStatus.IN_PROGRESS)
    transition(call.pk, CallStatus.COMPLETED, reason="completed")
    delivery = WebhookDelivery.objects.get()
    client.force_login(admin)
    client.post("/admin/webhooks/webhookdelivery/", {"action": "redeliver", "_selected_action": [delivery.pk]})
    assert rows("redeliver_webhook") == [("webhooks.webhookdelivery", str(delivery.pk), "admin", admin.username)]


def test_call_ended_carries_no_notes_or_data_without_the_transcript(org, workflow, patient):
    plain = WebhookEndpoint.objects.create(organization=org, url="https://a.example.org/hook", events=["call.ended"])
    full = WebhookEndpoint.objects.create(organization=org, url="https://b.example.org/hook", events=["call.ended"],
                                          include_transcript=True)
    call = factories.make_call(org, workflow, patient, status=CallStatus.IN_PROGRESS,
                               outcome={"result": "rescheduled", "notes": "Her husband is ill", "data": {"day": "Fri"}},
                               transcript=[{"role": "user", "text": "My husband is ill"}])
    transition(call.pk, CallStatus.COMPLETED, reason="completed")
    from webhooks.sending import build_body
    import json

    bodies = {d.endpoint_id: json.loads(build_body(d)) for d in WebhookDelivery.objects.select_related("endpoint")}
    assert bodies[plain.pk]["data"]["outcome"] == {"result": "rescheduled"}
    assert "ill" not in json.dumps(bodies[plain.pk]) and "transcript" not in bodies[plain.pk]["data"]
    assert "ill" not in json.dumps(list(WebhookDelivery.objects.values_list("payload", flat=True)))  # nor stored
    assert bodies[full.pk]["data"]["outcome"]["notes"] == "Her husband is ill"
    assert bodies[full.pk]["data"]["transcript"][0]["text"] == "My husband is ill"


def test_calls_filter_by_campaign(client, org, workflow, api_key):
    patients = [factories.make_patient(org) for _ in range(2)]
    campaign = campaigns.create_campaign(organization=org, workflow=workflow, name="Flu", patients=patients)
    factories.make_call(org, workflow, factories.make_patient(org))  # not the campaign's
    found = client.get("/api/calls", {"campaign": campaign.pk}, **auth(api_key)).json()
    assert found["count"] == 2
    assert {c["id"] if "id" in c else c["session_id"] for c in found["items"]} == {
        str(pk) for pk in CallSession.objects.filter(campaign_id=campaign.pk).values_list("pk", flat=True)}
    assert client.get("/api/calls", {"campaign": "x"}, **auth(api_key)).status_code == 422


def test_patients_are_found_by_part_of_a_number_sent_in_the_body(client, org, api_key):
    ada = factories.make_patient(org, phone="+14155550123")
    factories.make_patient(org, phone="+12125550199")
    found = post_json(client, "/api/patients/lookup", {"phone": "5550123"}, api_key)
    assert found.status_code == 200 and [p["id"] for p in found.json()["items"]] == [ada.pk]
    assert post_json(client, "/api/patients/lookup", {"phone": "12"}, api_key).status_code == 422
