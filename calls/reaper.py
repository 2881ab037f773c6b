"""Ends calls that stopped reporting, so nothing stays non-final forever."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

import background
from botrunner import daily
from botrunner.daily import room_name_for
from botrunner.errors import BotRunnerError

from .models import FINAL_STATUSES, CallSession, CallStatus
from .starting import _with_session, delete_call_room, delete_room
from .state import transition

log = logging.getLogger(__name__)

# Events the start path leaves that tell why a call never got going.
START_TRACE_KINDS = ("start_db_error", "bot_start_unconfirmed")


def stale_reason(call: CallSession, now) -> str | None:
    """Why the call is stale, naming the real cause a person can act on; None if it is not."""
    start_deadline = timedelta(seconds=settings.STALE_START_AFTER_S)
    if call.status == CallStatus.QUEUED:
        # Only a call handed to a worker: one waiting for a slot (dispatched_at
        # unset) is the dispatcher's, which gives up after CALL_CAPACITY_WAIT_S.
        if call.dispatched_at is None or call.dispatched_at >= now - start_deadline:
            return None
        return (
            f"No start was sent: no worker started this call within {settings.STALE_START_AFTER_S} s. "
            "Check that the Celery worker (and the dispatcher) are running and can reach Redis."
        )
    if call.status == CallStatus.STARTING and call.bot_started_at is None:
        since = call.started_at or call.created_at
        if since >= now - start_deadline:
            return None
        kinds = set(call.events.filter(kind__in=START_TRACE_KINDS).values_list("kind", flat=True))
        if call.bot_start_requested_at is None:
            if "start_db_error" in kinds:
                return (
                    "No start was sent: the database was unreachable while the worker was starting this call. "
                    "Check the database, then place the call again."
                )
            return (
                "No start was sent: the worker stopped before sending it (it may have been killed). "
                "Check the Celery worker, then place the call again."
            )
        if "bot_start_unconfirmed" in kinds:
            return (
                f"The start was sent but not confirmed (the runner or Pipecat Cloud timed out or answered 502/504), "
                f"and the bot never reported within {settings.STALE_START_AFTER_S} s: check the bot runner or "
                "Pipecat Cloud logs."
            )
        return (
            f"The bot never reported within {settings.STALE_START_AFTER_S} s of its start: check the bot "
            "runner (python bot.py) or Pipecat Cloud logs, and that the bot can reach PUBLIC_BASE_URL."
        )
    last = call.last_event_at or call.started_at or call.created_at
    limit = timedelta(seconds=call.workflow.max_duration_s + settings.STALE_MARGIN_S)
    if last < now - limit:
        return (
            f"The bot stopped reporting (no event for {int(limit.total_seconds())} s, beyond the workflow's "
            "maximum duration): the call was ended."
        )
    return None


def reap_stale_calls(now=None) -> int:
    """Fail every stale call with a reason and delete its room; returns how many."""
    now = now or timezone.now()
    candidates = CallSession.objects.select_related("workflow").filter(
        status__in=[CallStatus.QUEUED, CallStatus.STARTING, CallStatus.RINGING, CallStatus.WAITING, CallStatus.IN_PROGRESS]
    ).filter(Q(created_at__lt=now - timedelta(seconds=min(settings.STALE_START_AFTER_S, 30))))
    reaped = 0
    for call in candidates.iterator():
        reason = stale_reason(call, now)
        if reason and transition(call.pk, CallStatus.FAILED, reason="stale", error=reason, at=now):
            reaped += 1
            log.info("reaped stale call %s (%s)", call.pk, call.status)
            if not call.daily_room_name and not daily.hipaa_mode():
                # A worker that died after ordering the room never stored its
                # name; the name is derived from the call, and a missing room is fine.
                # (In HIPAA mode Daily named it: delete_orphan_rooms finds it.)
                call.daily_room_name = room_name_for(str(call.pk))
            delete_call_room(call)
    delete_orphan_rooms(now)
    return reaped


MAX_ROOM_PAGES = 50  # 5,000 rooms: far more than calls at once


def delete_orphan_rooms(now=None) -> int:
    """In Daily's HIPAA mode, delete the rooms no unfinished call holds, made more
    than ``DAILY_ORPHAN_ROOM_AFTER_S`` ago; returns how many.

    Daily names those rooms, so a worker that died between Daily's answer and
    storing the name (``calls.starting.keep_room``) left a room nobody can name:
    this finds it. No bot was started in it (a start needs the stored name), so
    nobody is rung; it would only linger until its expiry. The domain must be
    MyRobot's alone (any room of another application would be deleted too).
    """
    if not daily.hipaa_mode():
        return 0
    now = now or timezone.now()
    try:
        rooms = _all_rooms()
    except BotRunnerError as exc:
        log.warning("could not list Daily rooms to find orphans: %s", exc)
        return 0
    held = set(
        CallSession.objects.exclude(status__in=list(FINAL_STATUSES)).exclude(daily_room_name="")
        .values_list("daily_room_name", flat=True)
    )
    cutoff = now - timedelta(seconds=settings.DAILY_ORPHAN_ROOM_AFTER_S)
    deleted = 0
    for room in rooms:
        made = parse_datetime(room.created_at or "")
        if room.name in held or made is None or made >= cutoff:
            continue
        delete_room(room.name)
        deleted += 1
    if deleted:
        log.info("deleted %d Daily room(s) no call holds", deleted)
    return deleted


def _all_rooms() -> list:
    rooms: list = []
    before = None
    for _page in range(MAX_ROOM_PAGES):
        page = background.run(_with_session(daily.list_rooms, ending_before=before))
        rooms.extend(page)
        if len(page) < 100 or not page[-1].id:
            break
        before = page[-1].id
    return rooms
