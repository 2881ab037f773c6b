"""Retention, erasure and export of a patient's data (calls/retention.py, docs/security.md "Data lifecycle")."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from calls.events import apply_bot_message
from calls.models import CallDay, CallEvent, CallSession, TurnCount
from calls.state import transition
from patients.models import Patient
from tests import factories
from tests.api_fixtures import *  # noqa: F401,F403

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
TEXT = "I take warfarin every evening"
NOTES = "Asked to move to the afternoon"


def finished_call(org, wf, patient, *, at):
    """A call made at ``at``: answered, a transcript line, a turn measured, an outcome, ended."""
    with time_machine.travel(at, tick=False):
        call = factories.make_call(org, wf, patient)
        transition(call.pk, "starting")
        transition(call.pk, "in_progress")
        stamp = timezone.now().isoformat()
        for seq, (event, data) in enumerate([
            ("transcript", {"role": "user", "text": TEXT}),
            ("metrics", {"turn_ms": 420}),
            ("outcome", {"result": "rescheduled", "notes": NOTES, "data": {"slot": "Tue 15:00"}}),
            ("ended", {"reason": "completed"}),
        ], start=1):
            apply_bot_message(call.pk, {"seq": seq, "event": event, "at": stamp, "data": data})
    return CallSession.objects.get(pk=call.pk)


def dashboard_counts(org):
    return (
        sorted(CallDay.objects.filter(organization=org).values_list("day", "status", "result", "calls", "with_outcome")),
        sorted(TurnCount.objects.filter(organization=org).values_list("day", "value", "n")),
    )


def test_retention_purges_old_transcripts_notes_and_payloads_and_keeps_the_counts():
    org = factories.make_org(transcript_retention_days=30)
    keeps_all = factories.make_org()  # no retention set: nothing is purged
    wf, wf2 = factories.make_workflow(org), factories.make_workflow(keeps_all)
    patient = factories.make_patient(org)
    old = finished_call(org, wf, patient, at=NOW - dt.timedelta(days=31))
    recent = finished_call(org, wf, patient, at=NOW - dt.timedelta(days=29))
    other = finished_call(keeps_all, wf2, factories.make_patient(keeps_all), at=NOW - dt.timedelta(days=400))
    before = dashboard_counts(org)

    with time_machine.travel(NOW, tick=False):
        call_command("purge_call_data")

    old.refresh_from_db()
    assert old.transcript == [] and old.outcome == {"result": "rescheduled"} and old.purged_at == NOW
    assert (old.status, old.end_reason, old.patient_id) == ("completed", "completed", patient.pk)
    events = {e.kind: e.data for e in CallEvent.objects.filter(call=old).exclude(kind="status")}
    assert events == {"transcript": {}, "metrics": {"turn_ms": 420}, "outcome": {}, "ended": {}}
    assert all(set(e.data) <= {"from", "to", "reason"} for e in CallEvent.objects.filter(call=old, kind="status"))
    assert dashboard_counts(org) == before  # the dashboard still counts the purged call and its turn
    for kept in (recent, other):
        kept.refresh_from_db()
        assert kept.transcript[0]["text"] == TEXT and kept.outcome["notes"] == NOTES and kept.purged_at is None
    audit = AuditEvent.objects.get(action="purge")
    assert (audit.organization_id, audit.object_id, audit.via) == (org.pk, str(org.pk), "retention")

    with time_machine.travel(NOW + dt.timedelta(hours=1), tick=False):  # nothing left to purge: no new audit row
        call_command("purge_call_data")
    assert AuditEvent.objects.filter(action="purge").count() == 1


def test_retention_runs_from_celery_beat(settings):
    assert settings.CELERY_BEAT_SCHEDULE["purge-call-data"]["task"] == "calls.tasks.purge_call_data"


def test_delete_patient_erases_them_and_their_transcripts_and_keeps_the_calls(client, org, workflow, api_key,
                                                                             other_api_key):
    patient = factories.make_patient(org, first_name="Grace", data={"allergy": "latex"})
    call = finished_call(org, workflow, patient, at=timezone.now() - dt.timedelta(hours=1))
    before = dashboard_counts(org)
    url = f"/api/patients/{patient.pk}"

    assert client.delete(url, HTTP_AUTHORIZATION=f"Bearer {other_api_key}").status_code == 404
    assert Patient.objects.filter(pk=patient.pk).exists()

    assert client.delete(url, HTTP_AUTHORIZATION=f"Bearer {api_key}").status_code == 204
    assert not Patient.objects.filter(pk=patient.pk).exists()
    call.refresh_from_db()
    assert call.patient_id is None and call.to_number == "" and call.transcript == []
    assert call.outcome == {"result": "rescheduled"} and call.status == "completed"
    assert not CallEvent.objects.filter(call=call, kind="transcript").exclude(data={}).exists()
    assert dashboard_counts(org) == before
    assert AuditEvent.objects.filter(action="erase_patient", object_id=str(patient.pk), via="api").count() == 1


def test_admin_delete_action_is_the_erasure(org, workflow):
    admin_user = factories.make_user(org=org, role="admin")
    patient = factories.make_patient(org)
    call = finished_call(org, workflow, patient, at=timezone.now() - dt.timedelta(hours=1))
    browser = Client()
    browser.force_login(admin_user)
    changelist = reverse("admin:patients_patient_changelist")
    assert "Erase selected patients" in browser.get(changelist).content.decode()
    response = browser.post(changelist, {"action": "delete_selected", "_selected_action": [patient.pk], "post": "yes"})
    assert response.status_code == 302
    call.refresh_from_db()
    assert call.transcript == [] and call.to_number == "" and call.outcome == {"result": "rescheduled"}
    assert AuditEvent.objects.filter(action="erase_patient", object_id=str(patient.pk), via="admin").exists()


def test_export_gives_the_whole_record_to_the_own_organisation_only(client, org, workflow, api_key, other_api_key):
    patient = factories.make_patient(org, first_name="Grace", data={"allergy": "latex"})
    call = finished_call(org, workflow, patient, at=timezone.now() - dt.timedelta(hours=1))
    url = f"/api/patients/{patient.pk}/export"

    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {other_api_key}").status_code == 404
    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 200
    record = response.json()["patient"]
    assert record["first_name"] == "Grace" and record["data"] == {"allergy": "latex"}
    [exported] = record["calls"]
    assert exported["session_id"] == str(call.pk) and exported["transcript"][0]["text"] == TEXT
    assert exported["outcome"]["notes"] == NOTES
    assert [e["kind"] for e in exported["events"]].count("transcript") == 1
    assert AuditEvent.objects.filter(action="export_patient", object_id=str(patient.pk), via="api").count() == 1
    assert client.get("/api/patients/999999/export", HTTP_AUTHORIZATION=f"Bearer {api_key}").status_code == 404


def test_admin_export_is_for_those_who_see_the_patient_in_clear(org):
    patient = factories.make_patient(org, first_name="Grace")
    url = reverse("admin:patients_patient_export", args=[patient.pk])
    viewer, staff = Client(), Client()
    viewer.force_login(factories.make_user(org=org, role="viewer"))
    staff.force_login(factories.make_user(org=org, role="staff"))
    outsider = Client()
    outsider.force_login(factories.make_user(org=factories.make_org(), role="admin"))
    assert viewer.get(url).status_code == 403
    assert outsider.get(url).status_code in (302, 404)  # not in their organisations
    response = staff.get(url)
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    assert json.loads(response.content)["patient"]["first_name"] == "Grace"
    assert AuditEvent.objects.filter(action="export_patient", via="admin").count() == 1
