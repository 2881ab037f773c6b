"""Attempts across time: busy → attempt 2 → no answer → attempt 3 → stop at max_attempts;
due attempts check the rules again; cancel cancels the follow-up. Frozen clock.

Calls end the way a bot ends them (``calls.events.apply_bot_message``, what the
bot's status socket runs); scheduled attempts start through the dispatcher.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from calls import dispatcher
from calls.events import apply_bot_message
from calls.models import CallSession
from calls.services import place_call
from calls.tasks import start_call
from tests import factories
from tests.api_fixtures import *  # noqa: F401,F403

UTC = dt.timezone.utc


def utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


def end(call, reason, seq=1):
    """The bot reports the call's end."""
    apply_bot_message(call.pk, {"seq": seq, "event": "ended", "at": dt.datetime.now(UTC).isoformat(),
                                "data": {"reason": reason}})
    call.refresh_from_db()
    return call


def next_of(call):
    return CallSession.objects.filter(previous_attempt=call).first()


def get_call(client, api_key, call):
    resp = client.get(f"/api/calls/{call.pk}", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert resp.status_code == 200
    return resp.json()


@pytest.fixture
def cadence(org, workflow, patient):
    """Mon–Fri 09:00–19:00 New York time; retry busy and no-answer after 60 then 600 minutes; 3 attempts."""
    workflow.window_start, workflow.window_end, workflow.window_days = dt.time(9), dt.time(19), [1, 2, 3, 4, 5]
    workflow.retry_on = ["busy", "no_answer", "voicemail"]
    workflow.retry_delays_min = [60, 600]
    workflow.max_attempts = 3
    workflow.save()
    patient.timezone = "America/New_York"
    patient.save()
    return workflow


@pytest.fixture
def placed(org, cadence, patient, fake_daily, fake_runner, django_capture_on_commit_callbacks):
    """Attempt 1, placed Monday 2026-03-09 10:00 EDT and started."""
    with time_machine.travel(utc(2026, 3, 9, 14, 0), tick=False), django_capture_on_commit_callbacks(execute=True):
        call = place_call(organization=org, workflow=cadence, patient=patient)
    call.refresh_from_db()
    assert call.status == "starting" and call.attempt == 1 and call.max_attempts == 3
    return call


def tick(at, callbacks):
    with time_machine.travel(at, tick=False), callbacks(execute=True):
        return dispatcher.dispatch(start_call.delay, reap=False)


def test_busy_then_no_answer_then_voicemail_stops_at_max_attempts(
    client, api_key, placed, fake_runner, django_capture_on_commit_callbacks,
):
    first = placed
    with time_machine.travel(utc(2026, 3, 9, 14, 5), tick=False):
        end(first, "busy")
    assert first.status == "busy"
    second = next_of(first)
    # Ended 10:05 EDT + 60 min = 11:05 EDT, inside the window.
    assert second.status == "scheduled" and second.attempt == 2 and second.scheduled_for == utc(2026, 3, 9, 15, 5)
    shown = get_call(client, api_key, first)
    assert shown["next_attempt"] == str(second.pk) and shown["attempt"] == 1 and shown["max_attempts"] == 3
    assert dt.datetime.fromisoformat(shown["next_attempt_at"]) == utc(2026, 3, 9, 15, 5)
    assert get_call(client, api_key, second)["previous_attempt"] == str(first.pk)

    assert tick(utc(2026, 3, 9, 15, 4), django_capture_on_commit_callbacks).promoted == 0  # not yet due
    result = tick(utc(2026, 3, 9, 15, 5, 1), django_capture_on_commit_callbacks)
    assert (result.promoted, result.handed) == (1, 1)
    second.refresh_from_db()
    assert second.status == "starting"
    assert len(fake_runner.requests_to("POST /start")) == 2

    with time_machine.travel(utc(2026, 3, 9, 15, 10), tick=False):
        end(second, "no_answer")
    third = next_of(second)
    # 11:10 EDT + 600 min = 21:10 EDT, after hours: Tuesday 09:00 EDT.
    assert third.attempt == 3 and third.scheduled_for == utc(2026, 3, 10, 13, 0)
    tick(utc(2026, 3, 10, 13, 0, 1), django_capture_on_commit_callbacks)
    third.refresh_from_db()
    assert third.status == "starting"

    with time_machine.travel(utc(2026, 3, 10, 13, 5), tick=False):
        end(third, "voicemail")
    assert third.status == "no_answer" and third.end_reason == "voicemail"
    assert next_of(third) is None  # 3 of 3: no fourth attempt
    shown = get_call(client, api_key, third)
    assert (shown["attempt"], shown["max_attempts"], shown["next_attempt"], shown["next_attempt_at"]) == (3, 3, None, None)
    assert len(fake_runner.requests_to("POST /start")) == 3


def test_ends_not_in_retry_on_are_not_retried(placed, cadence):
    cadence.retry_on = ["busy"]
    cadence.save()
    with time_machine.travel(utc(2026, 3, 9, 14, 5), tick=False):
        end(placed, "no_answer")
    assert next_of(placed) is None


def test_completed_calls_are_not_retried(placed):
    with time_machine.travel(utc(2026, 3, 9, 14, 5), tick=False):
        apply_bot_message(placed.pk, {"seq": 1, "event": "dialout_answered", "data": {}})
        end(placed, "completed", seq=2)
    assert placed.status == "completed" and next_of(placed) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [("do_not_call", "do_not_call"), ("no_consent", "no_consent"), ("workflow_off", "workflow_inactive")],
)
def test_rules_are_checked_again_when_an_attempt_is_due(
    placed, patient, cadence, fake_runner, django_capture_on_commit_callbacks, change, reason,
):
    with time_machine.travel(utc(2026, 3, 9, 14, 5), tick=False):
        end(placed, "busy")
    second = next_of(placed)
    if change == "do_not_call":
        patient.do_not_call = True
        patient.save()
    elif change == "no_consent":
        patient.consent_to_call = False
        patient.save()
    else:
        cadence.is_active = False
        cadence.save()
    result = tick(utc(2026, 3, 9, 15, 6), django_capture_on_commit_callbacks)
    second.refresh_from_db()
    assert result.refused == 1
    assert second.status == "canceled" and second.end_reason == reason and second.error
    assert len(fake_runner.requests_to("POST /start")) == 1  # only attempt 1 ever rang


def test_cancel_cancels_the_scheduled_follow_up(client, api_key, placed, fake_runner):
    with time_machine.travel(utc(2026, 3, 9, 14, 5), tick=False):
        end(placed, "busy")
    second = next_of(placed)
    resp = client.post(f"/api/calls/{placed.pk}/cancel", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert resp.status_code == 200, resp.content
    second.refresh_from_db()
    assert second.status == "canceled"
    placed.refresh_from_db()
    assert placed.status == "busy"  # what happened stays as it was
    # Nothing left to cancel now.
    again = client.post(f"/api/calls/{placed.pk}/cancel", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert again.status_code == 409


def test_cancel_of_a_running_call_leaves_no_follow_up(client, api_key, placed):
    resp = client.post(f"/api/calls/{placed.pk}/cancel", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert resp.status_code == 200
    with time_machine.travel(utc(2026, 3, 9, 14, 5), tick=False):
        end(placed, "busy")  # the bot's late report cannot undo the cancel
    placed.refresh_from_db()
    assert placed.status == "canceled" and next_of(placed) is None


def test_a_due_attempt_outside_its_window_waits_for_the_next_opening(
    placed, fake_runner, django_capture_on_commit_callbacks,
):
    with time_machine.travel(utc(2026, 3, 9, 14, 5), tick=False):
        end(placed, "busy")
    second = next_of(placed)
    # The dispatcher was down until Monday 20:00 EDT: the attempt waits for Tuesday 09:00.
    result = tick(utc(2026, 3, 10, 0, 0), django_capture_on_commit_callbacks)
    second.refresh_from_db()
    assert result.rescheduled == 1 and second.status == "scheduled"
    assert second.scheduled_for == utc(2026, 3, 10, 13, 0)
    assert len(fake_runner.requests_to("POST /start")) == 1
