import datetime as dt

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


def test_the_demo_login_link_follows_the_port_make_run_serves_on(db, settings):
    import io
    import subprocess

    from django.core.management import call_command

    settings.PUBLIC_BASE_URL = "http://localhost:8123"
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    assert "Log in at http://localhost:8123/admin/" in out.getvalue()

    plan = subprocess.run(["make", "-n", "run", "PORT=8123"], capture_output=True, text=True, check=True).stdout
    assert "runserver 127.0.0.1:8123" in plan
    assert "http://localhost:8123} .venv/bin/python manage.py seed_demo" in plan.replace("$(PY)", ".venv/bin/python")


def test_staff_pages_and_the_browser_find_the_icon(client, db):
    login = client.get("/admin/login/").content.decode()
    assert 'rel="icon" type="image/svg+xml" href="/static/myrobot/favicon.svg"' in login
    assert "MyRobot" in login  # the admin's own base_site still renders under ours

    asked = client.get("/favicon.ico")
    assert asked.status_code == 301 and asked["Location"] == "/static/myrobot/favicon.svg"
    icon = client.get(asked["Location"])
    assert icon.status_code == 200 and b"<svg" in b"".join(icon.streaming_content)


def test_the_demo_worker_reaches_the_sandbox_as_the_demo_server_does():
    import subprocess

    def plan(target):
        return subprocess.run(["make", "-n", target], capture_output=True, text=True, check=True).stdout

    worker, server = plan("demo-worker"), plan("demo")
    assert "-m celery -A myrobot worker" in worker
    for setting in ("DAILY_API_URL=http://127.0.0.1:7871/v1", "LOCAL_SERVER_URL=http://127.0.0.1:7871",
                    "PUBLIC_BASE_URL=http://127.0.0.1:8000"):
        assert setting in worker and setting in server


def test_demo_appointments_are_the_next_working_days_with_their_weekdays(db):
    import io

    import time_machine
    from django.core.management import call_command

    from patients.models import Patient

    # Sunday 6 December 2026, 10:00 in the clinic (Los Angeles).
    with time_machine.travel(dt.datetime(2026, 12, 6, 18, 0, tzinfo=dt.timezone.utc), tick=False):
        call_command("seed_demo", stdout=io.StringIO())
    said = [p.data["appointment"] for p in Patient.objects.order_by("external_id")]
    assert said == ["Mon 7 Dec, 10:30 with Dr. Okafor", "Tue 8 Dec, 14:00 with Dr. Lin",
                    "Wed 9 Dec, 09:15 with Dr. Okafor", "Thu 10 Dec, 11:45 with Dr. Ruiz",
                    "Fri 11 Dec, 16:30 with Dr. Lin"]
