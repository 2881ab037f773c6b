"""Nothing stays non-final forever: the reaper fails calls that stopped reporting."""


import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from calls.models import CallSession
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


def test_silent_starts_and_unpicked_calls_fail_after_the_start_deadline(calls, fake_daily):
    with time_machine.travel("2026-01-01 12:02:01+00:00", tick=False):
        assert reap_stale_calls() == 2
    silent = status(calls["starting_silent"])
    assert silent.status == "failed" and silent.end_reason == "stale"
    assert "never reported" in silent.error
    queued = status(calls["queued"])
    assert queued.status == "failed" and "Celery worker" in queued.error
    assert status(calls["starting_reported"]).status == "starting"
    assert status(calls["in_progress"]).status == "in_progress"
    # its room is deleted at Daily
    assert [r["path"] for r in fake_daily.requests_to("DELETE /rooms/*")] == ["/rooms/room-starting_silent"]


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
    assert "Ended 4 stale call(s)." in capsys.readouterr().out


def test_beat_schedule_runs_the_reaper():
    from django.conf import settings

    assert settings.CELERY_BEAT_SCHEDULE["reap-stale-calls"]["task"] == "calls.tasks.reap_stale_calls"
    from calls.tasks import reap_stale_calls as task

    assert task.name == "calls.tasks.reap_stale_calls"
