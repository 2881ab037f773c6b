"""Ends calls that stopped reporting (DESIGN.md: nothing stays non-final forever)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .models import CallSession, CallStatus
from .starting import delete_call_room
from .state import transition

log = logging.getLogger(__name__)


def stale_reason(call: CallSession, now) -> str | None:
    start_deadline = timedelta(seconds=settings.STALE_START_AFTER_S)
    if call.status == CallStatus.QUEUED:
        # Only a call handed to a worker: one waiting for a slot (dispatched_at
        # unset) is the dispatcher's, which gives up after CALL_CAPACITY_WAIT_S.
        if call.dispatched_at is None or call.dispatched_at >= now - start_deadline:
            return None
        return (
            f"No worker started this call within {settings.STALE_START_AFTER_S} s: "
            "check that the Celery worker is running and can reach Redis."
        )
    if call.status == CallStatus.STARTING and call.bot_started_at is None:
        since = call.started_at or call.created_at
        if since < now - start_deadline:
            return (
                f"The bot never reported within {settings.STALE_START_AFTER_S} s of its start: check the bot "
                "runner (python bot.py) or Pipecat Cloud logs, and that the bot can reach PUBLIC_BASE_URL."
            )
        return None
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
            delete_call_room(call)
    return reaped
