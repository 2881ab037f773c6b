"""The call policy on staff pages: Call patient's "now or a time", the admin's queue
filter, the live list's Scheduled section and waiting counts, the call page's attempts."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from calls.events import apply_bot_message
from calls.models import CallSession
from calls.services import place_call
from tests import factories
from tests.api_fixtures import *  # noqa: F401,F403

UTC = dt.timezone.utc
MONDAY_8PM_NY = dt.datetime(2026, 3, 10, 0, 0, tzinfo=UTC)  # Monday 2026-03-09 20:00 EDT


def utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


@pytest.fixture
def staff(org):
    return factories.make_user(org=org, role="staff")


@pytest.fixture
def office_hours(org, workflow, patient):
    org.timezone = "Europe/London"
    org.save()
    workflow.window_start, workflow.window_end, workflow.window_days = dt.time(9), dt.time(19), [1, 2, 3, 4, 5]
    workflow.max_attempts, workflow.retry_on, workflow.retry_delays_min = 3, ["busy"], [60]
    workflow.save()
    patient.timezone = "America/New_York"
    patient.save()
    return workflow


def test_call_patient_shows_when_a_call_now_would_ring(client, office_hours, patient, staff):
    client.force_login(staff)
    with time_machine.travel(MONDAY_8PM_NY, tick=False):
        body = client.get(f"/admin/patients/patient/{patient.pk}/call/").content.decode()
    assert "America/New_York" in body
    assert "outside calling hours: Tue 10 Mar 2026 09:00 (America/New_York)" in body
    assert "13:00 clinic time (Europe/London)" in body
    with time_machine.travel(utc(2026, 3, 9, 15, 0), tick=False):
        body = client.get(f"/admin/patients/patient/{patient.pk}/call/").content.decode()
    assert '<td class="rings">now</td>' in body


def test_call_patient_at_a_time_in_the_patients_zone(
    client, office_hours, patient, staff, fake_daily, fake_runner, django_capture_on_commit_callbacks,
):
    client.force_login(staff)
    with time_machine.travel(utc(2026, 3, 9, 15, 0), tick=False), django_capture_on_commit_callbacks(execute=True):
        resp = client.post(f"/admin/patients/patient/{patient.pk}/call/",
                           {"workflow": office_hours.pk, "when": "later", "ring_at": "2026-03-09T16:30"}, follow=True)
    call = CallSession.objects.get()
    assert call.status == "scheduled"
    assert call.scheduled_for == utc(2026, 3, 9, 20, 30)  # 16:30 EDT
    messages = [str(m) for m in resp.context["messages"]]
    assert any("Scheduled" in m and "16:30 (America/New_York)" in m for m in messages), messages
    assert fake_runner.requests_to("POST /start") == []


def test_call_patient_later_without_a_time_is_an_error(client, office_hours, patient, staff):
    client.force_login(staff)
    resp = client.post(f"/admin/patients/patient/{patient.pk}/call/", {"workflow": office_hours.pk, "when": "later"})
    assert resp.status_code == 200 and "Give the time to ring" in resp.content.decode()
    assert not CallSession.objects.exists()


def test_admin_queue_filter_and_attempts(client, org, office_hours, patient, staff):
    scheduled = factories.make_call(org, office_hours, patient, status="scheduled", scheduled_for=utc(2026, 3, 10, 13, 0))
    waiting = factories.make_call(org, office_hours, patient, dispatched_at=None, attempt=2, max_attempts=3)
    handed = factories.make_call(org, office_hours, patient)
    client.force_login(staff)
    for value, expected in [("scheduled", scheduled), ("waiting", waiting)]:
        body = client.get(f"/admin/calls/callsession/?queue={value}").content.decode()
        assert str(expected.pk)[:8] in body and str(handed.pk)[:8] not in body, value
    body = client.get("/admin/calls/callsession/").content.decode()
    assert "2 of 3" in body
    detail = client.get(f"/admin/calls/callsession/{waiting.pk}/change/").content.decode()
    assert "Waiting for a free slot" in detail


def test_live_list_has_a_scheduled_section_and_counts_the_waiting(client, org, office_hours, patient, staff):
    factories.make_call(org, office_hours, patient, status="scheduled", scheduled_for=utc(2026, 3, 10, 13, 0))
    factories.make_call(org, office_hours, patient, dispatched_at=None)
    factories.make_call(org, office_hours, patient, dispatched_at=None)
    client.force_login(staff)
    body = client.get("/calls/live/").content.decode()
    scheduled_section = body.split('data-section="scheduled"')[1].split("</tbody>")[0]
    # The clinic's time, the zone said once, and the patient's clock because it differs.
    assert "2026-03-10 13:00 clinic time (patient 09:00 EDT)" in scheduled_section
    assert "UTC" not in scheduled_section
    assert '<span data-count="waiting">2</span>' in body
    assert '<span data-count="scheduled">1</span>' in body


def test_call_page_shows_the_chain_and_the_next_attempt(
    client, org, office_hours, patient, staff, fake_daily, fake_runner, django_capture_on_commit_callbacks,
):
    with time_machine.travel(utc(2026, 3, 9, 15, 0), tick=False), django_capture_on_commit_callbacks(execute=True):
        first = place_call(organization=org, workflow=office_hours, patient=patient)
        apply_bot_message(first.pk, {"seq": 1, "event": "ended", "data": {"reason": "busy"}})
    second = CallSession.objects.get(previous_attempt=first)
    client.force_login(staff)
    body = client.get(f"/calls/{first.pk}/").content.decode()
    assert "Attempt 1 of 3" in body and "Attempt 2 of 3" in body
    # 16:00 UTC is 16:00 in London in March (GMT): the page's zone, not a UTC label.
    assert f"/calls/{second.pk}/" in body and "rings 2026-03-09 16:00" in body and " UTC" not in body
    assert "Cancel the next attempt" in body
    resp = client.post(f"/calls/{second.pk}/cancel/")
    assert resp.status_code == 302
    second.refresh_from_db()
    assert second.status == "canceled"
