from django.contrib.auth import get_user_model
from django.core.management import call_command

from organizations.models import Organization, Workflow
from patients.models import Patient


def test_seed_demo_is_idempotent(db):
    call_command("seed_demo")
    counts = (Organization.objects.count(), Workflow.objects.count(), Patient.objects.count(), get_user_model().objects.count())
    call_command("seed_demo")
    assert counts == (
        Organization.objects.count(),
        Workflow.objects.count(),
        Patient.objects.count(),
        get_user_model().objects.count(),
    )
    assert counts == (1, 2, 5, 2)
    wfs = {w.slug: w for w in Workflow.objects.all()}
    assert wfs["appointment-reminder"].dials_out and wfs["triage-line"].takes_dialin


def test_seeded_staff_user_can_log_in_and_sees_patients(client, db):
    call_command("seed_demo")
    # through the login form (django-axes checks every login against its lockouts)
    resp = client.post("/admin/login/?next=/admin/", {"username": "staff", "password": "myrobot-demo"})
    assert resp.status_code == 302
    resp = client.get("/admin/patients/patient/")
    assert resp.status_code == 200
    assert b"Lovelace" in resp.content


def test_healthz_checks_the_database(client, db):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json()["checks"]["database"] == "ok"
