"""Capacity: an organisation's slots, the queue, Pipecat Cloud's 429, lost starts.

Tasks run inline here (the embedded default); tests/test_policy_concurrency.py
runs the same against PostgreSQL with a real worker and two dispatchers.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from calls import dispatcher
from calls.events import apply_bot_message
from calls.models import CallEvent, CallSession
from calls.services import accept_dialin, place_call
from calls.tasks import start_call
from tests import factories


@pytest.fixture
def patients(org):
    return [factories.make_patient(org) for _ in range(6)]


def place(org, workflow, patients, n, callbacks):
    calls = []
    for patient in patients[:n]:
        with callbacks(execute=True):
            calls.append(place_call(organization=org, workflow=workflow, patient=patient))
    return calls


def statuses(calls):
    return sorted(CallSession.objects.get(pk=c.pk).status for c in calls)


def finish(call):
    apply_bot_message(call.pk, {"seq": 1, "event": "dialout_answered", "data": {}})
    apply_bot_message(call.pk, {"seq": 2, "event": "ended", "data": {"reason": "completed"}})


def test_dial_outs_wait_for_a_slot_and_start_when_one_frees(
    org, workflow, patients, fake_daily, fake_runner, django_capture_on_commit_callbacks,
):
    org.max_concurrent_calls = 2
    org.save()
    calls = place(org, workflow, patients, 5, django_capture_on_commit_callbacks)
    assert statuses(calls) == ["queued"] * 3 + ["starting"] * 2
    assert len(fake_runner.requests_to("POST /start")) == 2
    waiting = CallSession.objects.filter(status="queued")
    assert all(c.dispatched_at is None for c in waiting)  # waiting for a slot, not lost
    # Rooms made for calls that went back to wait are deleted again.
    assert len(fake_daily.requests_to("DELETE /rooms/*")) == 3

    with django_capture_on_commit_callbacks(execute=True):
        assert dispatcher.dispatch(start_call.delay, reap=False).handed == 0  # no slot free
    finish(CallSession.objects.filter(status="starting").first())
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatcher.dispatch(start_call.delay, reap=False).handed == 1
    assert statuses(calls) == ["completed"] + ["queued"] * 2 + ["starting"] * 2
    assert len(fake_runner.requests_to("POST /start")) == 3
    # The oldest waiting call went first.
    assert CallSession.objects.get(pk=calls[2].pk).status == "starting"


def test_dial_in_counts_but_never_waits(
    org, workflow, patients, fake_daily, fake_runner, django_capture_on_commit_callbacks,
):
    org.max_concurrent_calls = 1
    org.save()
    line = factories.make_workflow(org, slug="line", direction="dial_in")
    place(org, workflow, patients, 1, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        dialin, _ = accept_dialin(organization=org, workflow=line, call_id="c1", call_domain="d1",
                                  from_number="+14155550111", to_number="+14155559999")
    dialin.refresh_from_db()
    assert dialin.status == "starting"  # over the cap: a person is on the line
    later = place(org, workflow, patients[1:], 1, django_capture_on_commit_callbacks)
    assert statuses(later) == ["queued"]


def test_pipecat_cloud_at_capacity_defers_then_every_call_starts_once(
    org, workflow, patients, fake_daily, fake_pipecat, settings, django_capture_on_commit_callbacks,
):
    """429 for a while (2 s here; the backoff is scaled down with it), then 200."""
    settings.CALL_CAPACITY_BACKOFF_S = 0.2
    settings.CALL_CAPACITY_BACKOFF_MAX_S = 0.5
    fake_pipecat.at_capacity_for(2.0)
    calls = place(org, workflow, patients, 4, django_capture_on_commit_callbacks)
    assert statuses(calls) == ["queued"] * 4
    assert CallEvent.objects.filter(kind="start_deferred").count() == 4

    deadline = time.monotonic() + 30
    while statuses(calls) != ["starting"] * 4:
        assert time.monotonic() < deadline, statuses(calls)
        with django_capture_on_commit_callbacks(execute=True):
            dispatcher.dispatch(start_call.delay, reap=False)
    started = [s["body"]["session_id"] for s in fake_pipecat.sessions]
    assert sorted(started) == sorted(str(c.pk) for c in calls)  # each exactly once
    assert fake_pipecat.refused_at_capacity >= 4
    assert not CallSession.objects.filter(status="failed").exists()
    deferred = CallEvent.objects.filter(call_id=calls[0].pk, kind="start_deferred").first()
    assert deferred.data["retry_in_s"] > 0 and "capacity" in deferred.data["error"]


def test_capacity_failure_only_after_capacity_wait(
    org, workflow, patients, fake_daily, fake_pipecat, settings, django_capture_on_commit_callbacks,
):
    settings.CALL_CAPACITY_WAIT_S = 60
    fake_pipecat.at_capacity_for(600)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        (call,) = place(org, workflow, patients, 1, django_capture_on_commit_callbacks)
    for offset in (30, 59):
        with time_machine.travel(start + dt.timedelta(seconds=offset), tick=False), \
                django_capture_on_commit_callbacks(execute=True):
            dispatcher.dispatch(start_call.delay, reap=False)
        call.refresh_from_db()
        assert call.status == "queued"
    with time_machine.travel(start + dt.timedelta(seconds=61), tick=False), \
            django_capture_on_commit_callbacks(execute=True):
        dispatcher.dispatch(start_call.delay, reap=False)
    call.refresh_from_db()
    assert call.status == "failed" and call.end_reason == "capacity"
    assert "capacity" in call.error


def test_a_call_waiting_for_a_slot_gives_up_after_capacity_wait(
    org, workflow, patients, fake_daily, fake_runner, settings, django_capture_on_commit_callbacks,
):
    settings.CALL_CAPACITY_WAIT_S = 600
    org.max_concurrent_calls = 1
    org.save()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        _first, second = place(org, workflow, patients, 2, django_capture_on_commit_callbacks)
    with time_machine.travel(start + dt.timedelta(seconds=599), tick=False):
        dispatcher.dispatch(start_call.delay)  # the reaper too: it leaves a waiting call alone
    second.refresh_from_db()
    assert second.status == "queued"
    with time_machine.travel(start + dt.timedelta(seconds=601), tick=False):
        assert dispatcher.dispatch(start_call.delay, reap=False).gave_up == 1
    second.refresh_from_db()
    assert second.status == "failed" and second.end_reason == "capacity"


def test_a_lost_start_is_handed_again(
    org, workflow, patients, fake_daily, fake_runner, settings, django_capture_on_commit_callbacks,
):
    settings.DISPATCH_LOST_START_AFTER_S = 15
    start = timezone.now()
    with time_machine.travel(start, tick=False), django_capture_on_commit_callbacks(execute=False):
        # The transaction commits but its on-commit enqueue never happens (a failed enqueue, a dead worker).
        call = place_call(organization=org, workflow=workflow, patient=patients[0])
    with time_machine.travel(start + dt.timedelta(seconds=10), tick=False):
        assert dispatcher.dispatch(start_call.delay, reap=False).rehanded == 0
    with time_machine.travel(start + dt.timedelta(seconds=16), tick=False), \
            django_capture_on_commit_callbacks(execute=True):
        assert dispatcher.dispatch(start_call.delay, reap=False).rehanded == 1
    call.refresh_from_db()
    assert call.status == "starting"
    assert CallEvent.objects.filter(call=call, kind="start_redispatched").count() == 1
    assert len(fake_runner.requests_to("POST /start")) == 1


def test_command_and_beat_run_the_dispatcher(db, capsys, settings):
    call_command("dispatch_calls")
    assert "handed 0" in capsys.readouterr().out
    entry = settings.CELERY_BEAT_SCHEDULE["dispatch-calls"]
    assert entry["task"] == "calls.tasks.dispatch_calls" and entry["schedule"] <= 5
