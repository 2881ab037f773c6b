"""The FHIR pages of the admin: organisation admins only, scoped to their
organisation; the private key is never shown; the outbox is visible and can be
sent again."""

from __future__ import annotations

import datetime as dt

import pytest

from fhir.models import FhirAppointment, FhirWrite
from tests import factories
from tests.fhir_fixtures import make_connection

pytestmark = pytest.mark.django_db


@pytest.fixture
def connected(org, fake_fhir, fhir_keys):
    connection = make_connection(org, fake_fhir, fhir_keys)
    patient = factories.make_patient(org)
    call = factories.make_call(org, connection.workflow, patient, status="completed")
    link = FhirAppointment.objects.create(organization=org, connection=connection, fhir_id="a1", patient=patient,
                                          patient_fhir_id="p1", start=dt.datetime(2030, 5, 5, tzinfo=dt.timezone.utc),
                                          call=call)
    write = FhirWrite.objects.create(organization=org, connection=connection, appointment=link, call=call,
                                     kind="communication", status="failed", last_error="The EHR answered 503.")
    return connection, write


def test_an_admin_sees_the_connection_but_never_its_private_key(client, org, connected, fhir_keys):
    connection, _ = connected
    client.force_login(factories.make_user(org=org, role="admin"))

    page = client.get(f"/admin/fhir/fhirconnection/{connection.pk}/change/")

    assert page.status_code == 200
    body = page.content.decode()
    assert connection.client_id in body
    assert "PRIVATE KEY" not in body and fhir_keys["RS384"][0].splitlines()[1] not in body


def test_the_outbox_is_listed_and_a_failed_write_can_be_sent_again(client, org, connected, fake_fhir,
                                                                   django_capture_on_commit_callbacks):
    _, write = connected
    client.force_login(factories.make_user(org=org, role="admin"))

    listing = client.get("/admin/fhir/fhirwrite/")
    assert listing.status_code == 200 and "failed" in listing.content.decode()
    with django_capture_on_commit_callbacks(execute=False) as scheduled:
        client.post("/admin/fhir/fhirwrite/", {"action": "send_again", "_selected_action": [write.pk]})

    write.refresh_from_db()
    assert write.status == "pending" and write.next_attempt_at is not None and scheduled


@pytest.mark.parametrize("role", ["staff", "viewer"])
def test_staff_and_viewers_do_not_see_the_fhir_pages(client, org, connected, role):
    client.force_login(factories.make_user(org=org, role=role))
    for url in ("/admin/fhir/fhirconnection/", "/admin/fhir/fhirwrite/", "/admin/fhir/toolcall/"):
        assert client.get(url).status_code == 403


def test_another_organisations_admin_sees_none_of_it(client, other_org, connected):
    connection, write = connected
    client.force_login(factories.make_user(org=other_org, role="admin"))

    assert client.get(f"/admin/fhir/fhirconnection/{connection.pk}/change/").status_code in (302, 404)
    assert "a1" not in client.get("/admin/fhir/fhirappointment/").content.decode()


def test_adding_a_connection_checks_the_key_and_shows_the_tool_webhook_secret_once(client, org, fhir_keys):
    from fhir.models import FhirConnection

    workflow = factories.make_workflow(org, slug="fhir-admin")
    client.force_login(factories.make_user(org=org, role="admin"))
    form = {"organization": org.pk, "base_url": "https://ehr.example.org/fhir/R4", "client_id": "c1",
            "algorithm": "RS384", "key_id": "", "private_key": "not a key", "scopes": "system/Appointment.read",
            "workflow": workflow.pk, "identifier_system": "", "remind_hours_before": 24, "sync_days_ahead": 3,
            "schedule_reference": "", "tool_webhook_url": "https://clinic.example.org/tools", "is_active": "on"}

    refused = client.post("/admin/fhir/fhirconnection/add/", form)
    assert refused.status_code == 200 and "Not a PEM private key" in refused.content.decode()
    assert not FhirConnection.objects.exists()

    saved = client.post("/admin/fhir/fhirconnection/add/", {**form, "private_key": fhir_keys["RS384"][0]}, follow=True)
    secret = FhirConnection.objects.get(organization=org).tool_webhook_secret
    assert secret.startswith("whsec_") and secret in saved.content.decode()
    connection = FhirConnection.objects.get(organization=org)
    assert secret not in client.get(f"/admin/fhir/fhirconnection/{connection.pk}/change/").content.decode()
