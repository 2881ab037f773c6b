"""Calling law in the call policy, for each way a call is placed (admin, API, campaign, follow-up).

Frozen clock. The limits a day and a week per patient (healthcare exemption: 1 and
3), the candidate zones of a number without a patient zone (ring only when open in
all), and the 08:00–21:00 floor no workflow window widens. A call over a limit is
scheduled for when it is allowed, never rung.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from django.core.exceptions import ValidationError

from calls import dispatcher
from calls.events import apply_bot_message
from calls.models import CallSession
from campaigns import services as campaigns
from tests import factories
from tests.api_fixtures import *  # noqa: F401,F403
from tests.api_fixtures import auth

pytestmark = pytest.mark.calling_hours_floor

UTC = dt.timezone.utc
MONDAY_11AM_NY = dt.datetime(2026, 3, 9, 15, 0, tzinfo=UTC)  # Monday 2026-03-09 11:00 EDT
WAYS = ["api", "admin", "campaign", "follow_up"]


def utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


@pytest.fixture
def clinic(db, fake_daily, fake_runner):
    org = factories.make_org("law-clinic", timezone="America/New_York",
                             healthcare_calls_per_day=1, healthcare_calls_per_week=3)
    workflow = factories.make_workflow(
        org, slug="reminder", window_start=dt.time(9), window_end=dt.time(19), window_days=[1, 2, 3, 4, 5],
        max_attempts=3, retry_on=["busy"], retry_delays_min=[0],
    )
    return org, workflow


@pytest.fixture
def place(client, clinic):
    """``place(way, patient)`` → the call that way makes for the patient now."""
    org, workflow = clinic
    _key, raw = factories_api_key(org)
    staff = factories.make_user(org=org, role="staff")

    def _place(way, patient, **api_body):
        if way == "api":
            answer = client.post("/api/start-call", data=json.dumps(
                {"patient_id": patient.pk, "workflow": workflow.slug, **api_body}),
                content_type="application/json", **auth(raw))
            assert answer.status_code == 202, answer.content
            return CallSession.objects.get(pk=answer.json()["session_id"]), answer.json()
        if way == "admin":
            client.force_login(staff)
            answer = client.post(f"/admin/patients/patient/{patient.pk}/call/",
                                 {"workflow": workflow.pk, "when": "now"})
            assert answer.status_code == 302, answer.content.decode()[:2000]
            return CallSession.objects.get(patient=patient, requested_by_user=staff), None
        if way == "campaign":
            campaign = campaigns.create_campaign(organization=org, workflow=workflow, name="Law", patients=[patient])
            return CallSession.objects.get(campaign_id=campaign.pk), None
        if way == "follow_up":
            # An attempt that rang now and ended busy: its follow-up (no delay) is what the policy places.
            first = factories.make_call(org, workflow, patient, status="in_progress", started_at=dt.datetime.now(UTC),
                                        consent_basis="healthcare_exempt", max_attempts=3)
            apply_bot_message(first.pk, {"seq": 1, "event": "ended", "at": dt.datetime.now(UTC).isoformat(),
                                         "data": {"reason": "busy"}})
            return CallSession.objects.get(previous_attempt=first), None
        raise AssertionError(way)

    return _place


def factories_api_key(org):
    from organizations.models import ApiKey

    return ApiKey.generate(org, name="EHR")


def without_limits(org):
    """The hours alone (a follow-up's first attempt would count against the limit a day)."""
    org.healthcare_calls_per_day = org.healthcare_calls_per_week = None
    org.save()


def rang_at(org, workflow, patient, at):
    """A call to the patient that rang at ``at`` (it counts against the limits)."""
    return factories.make_call(org, workflow, patient, status="completed", started_at=at, ended_at=at,
                               consent_basis="healthcare_exempt")


def ring_time(call):
    return call.scheduled_for if call.status == "scheduled" else call.queued_at


# --- limits a day and a week --------------------------------------------------------------


@pytest.mark.parametrize("way", WAYS)
def test_a_second_call_the_same_day_is_scheduled_a_day_after_the_first(clinic, place, way):
    org, workflow = clinic
    patient = factories.make_patient(org, phone="+12125550101", timezone="America/New_York")
    with time_machine.travel(MONDAY_11AM_NY, tick=False):
        if way != "follow_up":  # the follow-up's own first attempt is the earlier call
            rang_at(org, workflow, patient, MONDAY_11AM_NY - dt.timedelta(hours=1))
        call, answer = place(way, patient)
    assert call.status == "scheduled"
    assert call.consent_basis == "healthcare_exempt"
    first = MONDAY_11AM_NY - dt.timedelta(hours=0 if way == "follow_up" else 1)
    assert call.scheduled_for == first + dt.timedelta(days=1)  # Tuesday, inside 09:00–19:00 New York
    if answer is not None:
        assert answer["frequency_cap"] == "1 a day"


@pytest.mark.parametrize("way", WAYS)
def test_the_fourth_call_in_a_week_waits_for_the_first_to_be_a_week_old(clinic, place, way):
    org, workflow = clinic
    patient = factories.make_patient(org, phone="+12125550102", timezone="America/New_York")
    thursday = MONDAY_11AM_NY + dt.timedelta(days=3)
    with time_machine.travel(thursday, tick=False):
        for day in range(3 if way != "follow_up" else 2):
            rang_at(org, workflow, patient, MONDAY_11AM_NY + dt.timedelta(days=day, hours=-1))
        call, _ = place(way, patient)
    assert call.status == "scheduled"
    # A week after Monday's call (the third of the week was Wednesday's or today's).
    assert call.scheduled_for == MONDAY_11AM_NY + dt.timedelta(days=7, hours=-1)


def test_the_api_may_ask_to_refuse_instead_and_emergencies_have_no_limit(client, clinic, place):
    org, workflow = clinic
    _key, raw = factories_api_key(org)
    patient = factories.make_patient(org, phone="+12125550103", timezone="America/New_York")
    with time_machine.travel(MONDAY_11AM_NY, tick=False):
        rang_at(org, workflow, patient, MONDAY_11AM_NY - dt.timedelta(hours=1))
        refused = client.post("/api/start-call", data=json.dumps(
            {"patient_id": patient.pk, "workflow": workflow.slug, "if_capped": "refuse"}),
            content_type="application/json", **auth(raw))
        assert refused.status_code == 409
        assert "1 healthcare call a day" in refused.json()["detail"]
        assert refused.json()["errors"][0]["field"] == "patient"
        call, answer = place("api", patient, consent_basis="emergency")
    assert call.status != "scheduled" and call.consent_basis == "emergency"
    assert answer["frequency_cap"] is None


def test_a_due_call_waits_when_another_took_the_day_meanwhile(clinic):
    org, workflow = clinic
    patient = factories.make_patient(org, phone="+12125550104", timezone="America/New_York")
    due = factories.make_call(org, workflow, patient, status="scheduled", scheduled_for=MONDAY_11AM_NY,
                              consent_basis="healthcare_exempt")
    rang_at(org, workflow, patient, MONDAY_11AM_NY - dt.timedelta(hours=2))
    with time_machine.travel(MONDAY_11AM_NY, tick=False):
        dispatcher.dispatch(lambda session_id: None, reap=False)
    due.refresh_from_db()
    assert due.status == "scheduled"
    assert due.scheduled_for == MONDAY_11AM_NY + dt.timedelta(hours=22)
    assert due.events.filter(kind="rescheduled", data__reason="frequency_cap").exists()


def test_call_patient_page_says_why_the_call_would_wait(client, clinic):
    org, workflow = clinic
    patient = factories.make_patient(org, phone="+12125550105", timezone="America/New_York")
    client.force_login(factories.make_user(org=org, role="staff"))
    with time_machine.travel(MONDAY_11AM_NY, tick=False):
        rang_at(org, workflow, patient, MONDAY_11AM_NY - dt.timedelta(hours=1))
        page = client.get(f"/admin/patients/patient/{patient.pk}/call/").content.decode()
    assert "the organisation allows at most 1 healthcare call a day to one patient" in page
    assert "America/New_York: the patient&#x27;s time zone." in page


# --- a number in several zones ------------------------------------------------------------

# +1 605 (South Dakota): America/Denver and America/North_Dakota/Center, an hour apart.
SOUTH_DAKOTA = "+16055550123"


@pytest.mark.parametrize("way", WAYS)
def test_a_number_in_two_zones_rings_only_when_both_are_open(clinic, place, way):
    org, workflow = clinic
    without_limits(org)
    workflow.window_end = dt.time(17)
    workflow.save()
    patient = factories.make_patient(org, phone=SOUTH_DAKOTA, timezone="")
    # 14:30 UTC: 09:30 in Central time (open), 08:30 in Mountain time (not yet).
    with time_machine.travel(utc(2026, 3, 9, 14, 30), tick=False):
        call, _ = place(way, patient)
    assert call.status == "scheduled"
    assert call.scheduled_for == utc(2026, 3, 9, 15, 0)  # 09:00 in Denver, 10:00 in Central time
    # 22:30 UTC: 16:30 in Denver (open), 17:30 in Central time (closed): the next morning.
    evening = factories.make_patient(org, phone="+16055550124", timezone="")
    with time_machine.travel(utc(2026, 3, 9, 22, 30), tick=False):
        call, _ = place(way, evening)
    assert call.status == "scheduled"
    assert call.scheduled_for == utc(2026, 3, 10, 15, 0)


def test_the_call_patient_page_names_the_zones_and_why(client, clinic):
    org, workflow = clinic
    patient = factories.make_patient(org, phone=SOUTH_DAKOTA, timezone="")
    client.force_login(factories.make_user(org=org, role="staff"))
    with time_machine.travel(utc(2026, 3, 9, 22, 30), tick=False):  # 17:30 Central, 16:30 Mountain
        page = client.get(f"/admin/patients/patient/{patient.pk}/call/").content.decode()
    assert "America/Denver, America/North_Dakota/Center" in page
    assert "calls ring only when the calling hours are open in every one of them" in page


def test_a_patient_zone_wins_over_the_number(clinic, place):
    org, workflow = clinic
    patient = factories.make_patient(org, phone=SOUTH_DAKOTA, timezone="America/North_Dakota/Center")
    with time_machine.travel(utc(2026, 3, 9, 14, 30), tick=False):
        call, _ = place("api", patient)
    assert call.status == "queued"


# --- the 08:00–21:00 floor ----------------------------------------------------------------


@pytest.mark.parametrize("way", WAYS)
def test_no_window_rings_after_nine_in_the_evening(clinic, place, way):
    org, workflow = clinic
    without_limits(org)
    for name, value in factories.ALWAYS_OPEN.items():  # a workflow open day and night, every day
        setattr(workflow, name, value)
    workflow.save()
    patient = factories.make_patient(org, phone="+12125550106", timezone="America/New_York")
    with time_machine.travel(utc(2026, 3, 10, 1, 30), tick=False):  # Monday 21:30 EDT
        call, _ = place(way, patient)
    assert call.status == "scheduled"
    assert call.scheduled_for == utc(2026, 3, 10, 12, 0)  # Tuesday 08:00 EDT


@pytest.mark.parametrize("way", ["api", "campaign"])
def test_the_floor_opens_at_eight(clinic, place, way):
    org, workflow = clinic
    for name, value in factories.ALWAYS_OPEN.items():
        setattr(workflow, name, value)
    workflow.save()
    patient = factories.make_patient(org, phone="+12125550107", timezone="America/New_York")
    with time_machine.travel(utc(2026, 3, 9, 11, 59), tick=False):  # 07:59 EDT
        early, _ = place(way, patient)
    assert early.scheduled_for == utc(2026, 3, 9, 12, 0)
    with time_machine.travel(utc(2026, 3, 10, 0, 59), tick=False):  # 20:59 EDT: still inside
        late = factories.make_patient(org, phone="+12125550108", timezone="America/New_York")
        call, _ = place(way, late)
    assert ring_time(call) == utc(2026, 3, 10, 0, 59)


def test_a_workflow_window_outside_the_floor_is_refused(clinic):
    org, workflow = clinic
    workflow.window_start, workflow.window_end = dt.time(6), dt.time(7, 30)
    with pytest.raises(ValidationError) as refused:
        workflow.full_clean()
    assert "between 08:00 and 21:00" in str(refused.value)
