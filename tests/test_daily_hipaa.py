"""Daily's HIPAA mode: Daily names the rooms, and a start stays exactly once (calls.starting, calls.reaper)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from calls import reaper, starting
from calls.models import CallSession
from calls.tasks import start_call
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def hipaa(fake_daily, settings):
    fake_daily.hipaa = True
    settings.DAILY_HIPAA_MODE = True
    settings.DAILY_ORPHAN_ROOM_AFTER_S = 0
    yield fake_daily
    fake_daily.hipaa = False


@pytest.fixture
def call(org, patient):
    wf = factories.make_workflow(org, slug="reminder", direction="dial_out")
    return factories.make_call(org, wf, patient, direction="dial_out", to_number=patient.phone)


class Crash(Exception):
    """The worker dies here."""


def test_the_room_is_asked_for_without_a_name_and_the_name_daily_gives_is_stored(hipaa, fake_runner, call):
    start_call(str(call.pk))
    [request] = hipaa.requests_to("POST /rooms")
    assert "name" not in request["json"]
    assert hipaa.hipaa_named_requests == 0
    call.refresh_from_db()
    [name] = hipaa.rooms
    assert call.daily_room_name == name and not name.startswith("mr-")
    assert call.daily_room_url == hipaa.rooms[name]["url"]
    [started] = fake_runner.started
    assert started["room_url"] == call.daily_room_url
    assert hipaa.verify_token(started["token"])["r"] == name


def test_a_redelivered_start_makes_no_second_room_and_no_second_bot(hipaa, fake_runner, call):
    start_call(str(call.pk))
    start_call(str(call.pk), starting.room_hint(call))
    assert len(hipaa.rooms) == 1 and len(fake_runner.started) == 1


def test_a_crash_after_the_name_was_stored_is_finished_in_the_same_room(hipaa, fake_runner, call, monkeypatch):
    real_claim = starting.claim_start

    def dies(*args, **kwargs):
        raise Crash

    monkeypatch.setattr(starting, "claim_start", dies)
    with pytest.raises(Crash):
        starting.start_call(str(call.pk), hint=starting.room_hint(call))
    call.refresh_from_db()
    [stored] = hipaa.rooms
    assert call.status == "starting" and call.daily_room_name == stored and fake_runner.started == []

    monkeypatch.setattr(starting, "claim_start", real_claim)
    # Redelivered with its hint: the hint's new room is deleted, the stored one is used.
    starting.start_call(str(call.pk), hint=starting.room_hint(call))
    assert list(hipaa.rooms) == [stored]
    [started] = fake_runner.started
    assert hipaa.verify_token(started["token"])["r"] == stored
    assert len(hipaa.requests_to("POST /rooms")) == 2 and hipaa.requests_to(f"GET /rooms/{stored}")


def test_a_crash_before_the_name_was_stored_leaks_no_room_and_rings_once(hipaa, fake_runner, call, monkeypatch):
    real_keep = starting.keep_room

    def dies(*args, **kwargs):
        raise Crash

    monkeypatch.setattr(starting, "keep_room", dies)
    with pytest.raises(Crash):
        starting.start_call(str(call.pk))
    [orphan] = hipaa.rooms
    call.refresh_from_db()
    assert call.daily_room_name == "" and fake_runner.started == []

    monkeypatch.setattr(starting, "keep_room", real_keep)
    starting.start_call(str(call.pk))  # the dispatcher hands it again
    call.refresh_from_db()
    assert len(fake_runner.started) == 1 and call.daily_room_name != orphan

    assert reaper.delete_orphan_rooms(timezone.now() + dt.timedelta(seconds=1)) == 1
    assert list(hipaa.rooms) == [call.daily_room_name]  # the call's room stays, the orphan went
    assert orphan in hipaa.deleted


def test_orphan_rooms_are_left_alone_until_they_are_old_enough(hipaa, fake_runner, call, settings):
    settings.DAILY_ORPHAN_ROOM_AFTER_S = 300
    start_call(str(call.pk))
    CallSession.objects.filter(pk=call.pk).update(status="completed")  # its room is no longer held...
    assert reaper.delete_orphan_rooms() == 0  # ...but young: it may be a start that is about to store it
    assert reaper.delete_orphan_rooms(timezone.now() + dt.timedelta(seconds=301)) == 1
    assert hipaa.rooms == {}


def test_without_hipaa_mode_no_room_is_listed(fake_daily, fake_runner, call):
    start_call(str(call.pk))
    assert reaper.delete_orphan_rooms(timezone.now() + dt.timedelta(days=1)) == 0
    assert fake_daily.requests_to("GET /rooms") == [] and len(fake_daily.rooms) == 1
