"""The call state machine: the one way a CallSession's status changes.

Each move is a compare-and-swap (`UPDATE … WHERE status = <seen>`), so a slow
task cannot overwrite what a bot already reported, and each move writes a
CallEvent of kind "status".
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from . import rollup
from .broadcast import broadcast_call_sync
from .models import FINAL_STATUSES, TRANSITIONS, CallEvent, CallSession, CallStatus
from .policy import follow_up
from .signals import call_ended

log = logging.getLogger(__name__)

# The ends after which the call policy may schedule another attempt (calls.policy.follow_up).
RETRYABLE_ENDS = frozenset({CallStatus.NO_ANSWER, CallStatus.BUSY})


def is_legal(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def transition(
    call_id, to: str, *, reason: str = "", error: str = "", data=None, at=None, broadcast: bool = True,
    expected: str | None = None,
) -> bool:
    """Move the call to `to`. Returns False (and changes nothing) when illegal.

    With `broadcast`, open browser pages hear of the move once it commits
    (the bot consumer passes False and broadcasts its own batch). `expected`:
    the status the caller just read, tried first without reading it again (the
    conditional update still decides; on a miss the status is read as usual).
    """
    to = str(to)
    if to not in TRANSITIONS:
        raise ValueError(f"unknown call status {to!r}")
    at = at or timezone.now()
    for attempt in range(5):
        if attempt == 0 and expected is not None:
            current = str(expected)
        else:
            current = CallSession.objects.filter(pk=call_id).values_list("status", flat=True).first()
        if current is None or not is_legal(current, to):
            if attempt == 0 and expected is not None:
                continue  # the caller's reading does not allow it: read the status itself
            return False
        updates: dict = {"status": to}
        if to == CallStatus.QUEUED:
            updates["queued_at"] = at
        if to == CallStatus.STARTING:
            updates["started_at"] = at
        if to == CallStatus.IN_PROGRESS:
            updates["answered_at"] = at
        if to in FINAL_STATUSES:
            updates["ended_at"] = at
            if reason:
                updates["end_reason"] = reason[:64]
        if error:
            updates["error"] = error
        with transaction.atomic():
            moved = CallSession.objects.filter(pk=call_id, status=current).update(**updates)
            if moved:
                payload = {"from": current, "to": to}
                if reason:
                    payload["reason"] = reason
                if error:
                    payload["error"] = error
                if data:
                    payload.update(data)
                event = CallEvent.objects.create(call_id=call_id, at=at, kind="status", data=payload)
                if to in RETRYABLE_ENDS:
                    _follow_up(call_id, at)
                if to in FINAL_STATUSES:
                    rollup.count_call(call_id)  # the dashboard's daily counts
                    # In this transaction, so an outbox row a receiver writes
                    # commits (or not) together with the move (and sees the follow-up).
                    call_ended.send(sender=CallSession, call_id=call_id, status=to)
                if broadcast:
                    transaction.on_commit(lambda: broadcast_call_sync(call_id, [event]))
                return True
        # Someone else moved it first: look again.
    return False


def _follow_up(call_id, at) -> None:
    """The call policy's next attempt, written with the end itself so it is never lost.

    A policy that cannot be applied (say, a workflow saved with an impossible
    window) must not lose the call's end: it is logged and the end stands.
    """
    try:
        with transaction.atomic():
            nxt = follow_up(call_id, now=at)
    except Exception:  # noqa: BLE001
        log.exception("could not schedule the next attempt of call %s", call_id)
        return
    if nxt is not None:  # a new call: live lists show it
        transaction.on_commit(lambda: broadcast_call_sync(nxt.pk, [], background=True))
