"""Calling windows in the patient's zone (else the organisation's), across DST changes.

The pure arithmetic (calls.policy) and what the API answers when a call is
placed outside its window, with the clock frozen (time-machine).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine

from calls import policy
from calls.models import CallSession
from calls.services import accept_dialin
from tests import factories
from tests.api_fixtures import *  # noqa: F401,F403

UTC = dt.timezone.utc
NY, BERLIN, KOLKATA, SYDNEY = (ZoneInfo(z) for z in ("America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Sydney"))
WEEKDAYS = frozenset({1, 2, 3, 4, 5})
ALL_DAYS = frozenset(range(1, 8))


def window(zone, start=dt.time(9), end=dt.time(19), days=WEEKDAYS):
    return policy.Window(start=start, end=end, days=days, zone=zone)


def utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


# --- pure arithmetic ------------------------------------------------------------------


def test_spring_forward_weekend_opens_at_nine_new_local_time():
    # Friday 2026-03-06 20:00 EST; clocks spring forward Sunday 03-08 at 02:00.
    placed = dt.datetime(2026, 3, 6, 20, 0, tzinfo=NY)
    opening = policy.next_opening(placed, window(NY))
    assert opening == utc(2026, 3, 9, 13, 0)  # Monday 09:00 EDT (it was 14:00 UTC before the change)
    assert opening.astimezone(NY).hour == 9


def test_spring_forward_night_with_every_day_open():
    # Saturday 2026-03-07 20:00 EST → Sunday 09:00 EDT: 12 hours later, not 13.
    placed = dt.datetime(2026, 3, 7, 20, 0, tzinfo=NY)
    assert policy.next_opening(placed, window(NY, days=ALL_DAYS)) == utc(2026, 3, 8, 13, 0)


def test_fall_back_night_opens_at_nine_new_local_time():
    # Berlin: clocks fall back Sunday 2026-10-25 03:00 → 02:00 (CEST → CET).
    placed = dt.datetime(2026, 10, 24, 20, 0, tzinfo=BERLIN)  # Saturday 18:00 UTC
    opening = policy.next_opening(placed, window(BERLIN, days=ALL_DAYS))
    assert opening == utc(2026, 10, 25, 8, 0)  # 09:00 CET; 07:00 UTC the day before
    assert policy.next_opening(dt.datetime(2026, 10, 23, 20, 0, tzinfo=BERLIN), window(BERLIN)) == utc(2026, 10, 26, 8, 0)


def test_southern_hemisphere_and_half_hour_zones():
    # Sydney leaves DST on Sunday 2026-04-05 (AEDT +11 → AEST +10).
    placed = dt.datetime(2026, 4, 3, 20, 0, tzinfo=SYDNEY)  # Friday evening
    assert policy.next_opening(placed, window(SYDNEY)) == utc(2026, 4, 5, 23, 0)  # Monday 09:00 AEST
    # Kolkata (+05:30, no DST): 19:30 local is after hours, 13:30 is inside.
    assert policy.next_opening(utc(2026, 3, 9, 14, 0), window(KOLKATA)) == utc(2026, 3, 10, 3, 30)
    inside = utc(2026, 3, 9, 8, 0)
    assert policy.is_open(inside, window(KOLKATA)) and policy.next_opening(inside, window(KOLKATA)) == inside


def test_window_start_inside_the_gap_or_the_repeated_hour():
    # 02:30 does not exist in New York on 2026-03-08: the window opens when the clocks jump (03:00 EDT).
    gap = window(NY, start=dt.time(2, 30), end=dt.time(5), days=ALL_DAYS)
    assert policy.next_opening(dt.datetime(2026, 3, 8, 0, 0, tzinfo=NY), gap) == utc(2026, 3, 8, 7, 0)
    # 01:30 happens twice on 2026-11-01: the first one (EDT) opens the window.
    repeat = window(NY, start=dt.time(1, 30), end=dt.time(5), days=ALL_DAYS)
    assert policy.next_opening(dt.datetime(2026, 11, 1, 0, 0, tzinfo=NY), repeat) == utc(2026, 11, 1, 5, 30)


def test_end_is_exclusive_and_ring_time_honours_not_before():
    w = window(NY)
    assert not policy.is_open(dt.datetime(2026, 3, 9, 19, 0, tzinfo=NY), w)
    assert policy.is_open(dt.datetime(2026, 3, 9, 18, 59, tzinfo=NY), w)
    now = dt.datetime(2026, 3, 9, 10, 0, tzinfo=NY)
    assert policy.ring_time(now, w) == now
    assert policy.ring_time(now, w, now - dt.timedelta(days=1)) == now  # the past means now
    later = dt.datetime(2026, 3, 9, 15, 0, tzinfo=NY)
    assert policy.ring_time(now, w, later) == later
    assert policy.ring_time(now, w, dt.datetime(2026, 3, 9, 22, 0, tzinfo=NY)) == utc(2026, 3, 10, 13, 0)


def test_zone_falls_back_to_the_organisation(db):
    org = factories.make_org(timezone="America/Los_Angeles")
    wf = factories.make_workflow(org, window_start=dt.time(9), window_end=dt.time(19), window_days=[1, 2, 3, 4, 5])
    no_zone = factories.make_patient(org, timezone="")
    in_berlin = factories.make_patient(org, timezone="Europe/Berlin")
    assert policy.window_for(wf, no_zone, org).zone == ZoneInfo("America/Los_Angeles")
    assert policy.window_for(wf, in_berlin, org).zone == BERLIN


# --- through the API, with the clock frozen -------------------------------------------------


@pytest.fixture
def office_hours(org, workflow):
    workflow.window_start, workflow.window_end, workflow.window_days = dt.time(9), dt.time(19), [1, 2, 3, 4, 5]
    workflow.save()
    return workflow


def _start(client, api_key, patient, **extra):
    return client.post(
        "/api/start-call", {"patient_id": patient.pk, "workflow": "reminder", **extra},
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_key}",
    )


@pytest.mark.parametrize(
    ("zone", "placed", "rings"),
    [
        ("America/New_York", utc(2026, 3, 7, 1, 0), utc(2026, 3, 9, 13, 0)),  # Fri 20:00 EST → Mon 09:00 EDT
        ("Europe/Berlin", utc(2026, 10, 23, 18, 0), utc(2026, 10, 26, 8, 0)),  # Fri 20:00 CEST → Mon 09:00 CET
        ("Asia/Kolkata", utc(2026, 3, 9, 14, 0), utc(2026, 3, 10, 3, 30)),  # Mon 19:30 IST → Tue 09:00 IST
    ],
)
def test_a_call_placed_after_hours_is_scheduled_for_the_next_opening(
    client, api_key, org, office_hours, patient, fake_daily, fake_runner, django_capture_on_commit_callbacks,
    zone, placed, rings,
):
    patient.timezone = zone
    patient.save()
    with time_machine.travel(placed, tick=False), django_capture_on_commit_callbacks(execute=True):
        resp = _start(client, api_key, patient)
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["status"] == "scheduled"
    assert dt.datetime.fromisoformat(body["scheduled_for"]) == rings
    call = CallSession.objects.get(pk=body["session_id"])
    assert call.status == "scheduled" and call.scheduled_for == rings
    assert fake_runner.requests_to("POST /start") == []  # nothing rang
    assert fake_daily.requests_to("POST /rooms") == []


def test_a_call_placed_inside_the_window_rings_now(
    client, api_key, org, office_hours, patient, fake_daily, fake_runner, django_capture_on_commit_callbacks,
):
    patient.timezone = "America/New_York"
    patient.save()
    with time_machine.travel(utc(2026, 3, 9, 14, 0), tick=False), django_capture_on_commit_callbacks(execute=True):
        resp = _start(client, api_key, patient)
    assert resp.status_code == 202
    assert resp.json()["scheduled_for"] is None
    assert CallSession.objects.get(pk=resp.json()["session_id"]).status == "starting"
    assert len(fake_runner.requests_to("POST /start")) == 1


def test_not_before_is_moved_into_the_window_and_needs_an_offset(
    client, api_key, org, office_hours, patient, fake_daily, fake_runner, django_capture_on_commit_callbacks,
):
    patient.timezone = "America/New_York"
    patient.save()
    with time_machine.travel(utc(2026, 3, 9, 14, 0), tick=False), django_capture_on_commit_callbacks(execute=True):
        inside = _start(client, api_key, patient, not_before="2026-03-09T16:30:00-04:00")
        outside = _start(client, api_key, patient, not_before="2026-03-09T22:00:00-04:00")
        naive = _start(client, api_key, patient, not_before="2026-03-09T16:30:00")
    assert inside.status_code == 202 and inside.json()["status"] == "scheduled"
    assert dt.datetime.fromisoformat(inside.json()["scheduled_for"]) == utc(2026, 3, 9, 20, 30)
    assert dt.datetime.fromisoformat(outside.json()["scheduled_for"]) == utc(2026, 3, 10, 13, 0)
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "not_before"
    assert CallSession.objects.count() == 2  # the refused one left nothing behind


def test_dial_in_is_never_held_back(org, fake_daily, fake_runner, django_capture_on_commit_callbacks):
    line = factories.make_workflow(
        org, slug="line", direction="dial_in", window_start=dt.time(9), window_end=dt.time(19), window_days=[1]
    )
    with time_machine.travel(utc(2026, 3, 8, 3, 0), tick=False), django_capture_on_commit_callbacks(execute=True):
        call, _ = accept_dialin(
            organization=org, workflow=line, call_id="c-1", call_domain="d-1", from_number="+14155550199",
            to_number="+14155559999",
        )
    call.refresh_from_db()
    assert call.status == "starting" and call.scheduled_for is None
