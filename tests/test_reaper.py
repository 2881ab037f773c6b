"""Nothing stays non-final forever: the reaper fails calls that stopped reporting."""


import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from botrunner.daily import room_name_for
from calls.models import CallEvent, CallSession
from calls.reaper import reap_stale_calls
from calls.state import transition
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def calls(org, patient, settings):
    settings.STALE_START_AFTER_S = 120
    settings.STALE_MARGIN_S = 300
    wf = factories.make_workflow(org, slug="wf", max_duration_s=600)
    made = {}
    with time_machine.travel("2026-01-01 12:00:00+00:00", tick=False):
        made["queued"] = factories.make_call(org, wf, patient)
        for name in ("starting_silent", "starting_reported", "in_progress"):
            made[name] = factories.make_call(org, wf, patient, daily_room_name=f"room-{name}")
            transition(made[name].pk, "starting")
        # the start was sent (claimed) but the bot never reported
        CallSession.objects.filter(pk=made["starting_silent"].pk).update(bot_start_requested_at=timezone.now())
        # a worker died after ordering the room, before claiming the start (no room name stored)
        made["starting_unsent"] = factories.make_call(org, wf, patient)
        transition(made["starting_unsent"].pk, "starting")
        # the start request timed out: maybe started, never confirmed
        made["starting_unconfirmed"] = factories.make_call(org, wf, patient, daily_room_name="room-unconfirmed")
        transition(made["starting_unconfirmed"].pk, "starting")
        CallSession.objects.filter(pk=made["starting_unconfirmed"].pk).update(bot_start_requested_at=timezone.now())
        CallEvent.objects.create(call=made["starting_unconfirmed"], at=timezone.now(), kind="bot_start_unconfirmed", data={})
        # the database went away while the worker was starting it
        made["starting_db_error"] = factories.make_call(org, wf, patient)
        transition(made["starting_db_error"].pk, "starting")
        CallEvent.objects.create(call=made["starting_db_error"], at=timezone.now(), kind="start_db_error", data={})
        CallSession.objects.filter(pk=made["starting_reported"].pk).update(
            bot_started_at=timezone.now(), last_event_at=timezone.now()
        )
        transition(made["in_progress"].pk, "in_progress")
        CallSession.objects.filter(pk=made["in_progress"].pk).update(
            bot_started_at=timezone.now(), last_event_at=timezone.now()
        )
        made["done"] = factories.make_call(org, wf, patient)
        transition(made["done"].pk, "canceled")
    return made


def status(call):
    return CallSession.objects.get(pk=call.pk)


def test_nothing_is_reaped_before_its_deadline(calls, fake_daily):
    with time_machine.travel("2026-01-01 12:01:59+00:00", tick=False):
        assert reap_stale_calls() == 0
    assert {status(c).status for c in calls.values()} == {"queued", "starting", "in_progress", "canceled"}
    assert fake_daily.requests_to("DELETE /rooms/*") == []


def test_silent_starts_and_unpicked_calls_fail_after_the_start_deadline(calls, fake_daily):
    with time_machine.travel("2026-01-01 12:02:01+00:00", tick=False):
        assert reap_stale_calls() == 5
    errors = {name: status(calls[name]).error for name in calls}
    for name in ("starting_silent", "starting_unsent", "starting_unconfirmed", "starting_db_error", "queued"):
        assert status(calls[name]).status == "failed" and status(calls[name]).end_reason == "stale", name
    # each reason names the real cause
    assert "never reported" in errors["starting_silent"] and "No start was sent" not in errors["starting_silent"]
    assert errors["starting_unsent"].startswith("No start was sent: the worker stopped")
    assert errors["starting_unconfirmed"].startswith("The start was sent but not confirmed")
    assert errors["starting_db_error"].startswith("No start was sent: the database was unreachable")
    assert errors["queued"].startswith("No start was sent") and "Celery worker" in errors["queued"]
    assert status(calls["starting_reported"]).status == "starting"
    assert status(calls["in_progress"]).status == "in_progress"
    # every room is deleted at Daily, including rooms whose name was never stored
    deleted = sorted(r["path"] for r in fake_daily.requests_to("DELETE /rooms/*"))
    expected = ["/rooms/room-starting_silent", "/rooms/room-unconfirmed"] + [
        f"/rooms/{room_name_for(str(calls[name].pk))}" for name in ("queued", "starting_unsent", "starting_db_error")
    ]
    assert deleted == sorted(expected)


def test_calls_with_no_event_for_max_duration_plus_margin_fail(calls, fake_daily):
    # 600 s max duration + 300 s margin after the last event
    with time_machine.travel("2026-01-01 12:14:59+00:00", tick=False):
        reap_stale_calls()
        assert status(calls["in_progress"]).status == "in_progress"
    with time_machine.travel("2026-01-01 12:15:01+00:00", tick=False):
        reap_stale_calls()
    call = status(calls["in_progress"])
    assert call.status == "failed" and "stopped reporting" in call.error
    assert status(calls["starting_reported"]).status == "failed"
    assert status(calls["done"]).status == "canceled"  # final calls are left alone


def test_management_command(calls, fake_daily, capsys):
    with time_machine.travel("2026-01-01 13:00:00+00:00", tick=False):
        call_command("reap_stale_calls")
    assert "Ended 7 stale call(s)." in capsys.readouterr().out


def test_beat_schedule_runs_the_reaper():
    from django.conf import settings

    assert settings.CELERY_BEAT_SCHEDULE["reap-stale-calls"]["task"] == "calls.tasks.reap_stale_calls"
    from calls.tasks import reap_stale_calls as task

    assert task.name == "calls.tasks.reap_stale_calls"
