"""The dispatcher: moves due scheduled calls to the queue and hands queued calls to workers.

One ``dispatch()`` is one tick; Celery beat runs it every ``DISPATCH_INTERVAL_S``
in production (``calls.tasks.dispatch_calls``), and ``manage.py dispatch_calls
--loop`` runs it beside the server in the embedded default. Each tick:

1. ``promote_due`` — a ``scheduled`` call whose time has come is checked again
   (do-not-call, consent, workflow and organisation active): a refusal ends it
   ``canceled`` with that reason; outside its window it waits for the next
   opening; otherwise it is ``queued``, waiting for a slot.
2. ``hand_waiting`` — queued dial-outs waiting for a slot are handed to a
   worker, oldest first, as many per organisation as it has free slots, except
   those whose number is in a live call of the organisation (one call per number
   at a time). The worker takes the slot under the organisation's row lock, after
   asking the rules and the calling window again, so an over-optimistic hand-off
   only sends a call back to wait.
3. ``hand_lost`` — a queued call handed to a worker ``DISPATCH_LOST_START_AFTER_S``
   ago that never began (a worker died, an enqueue failed) is handed again.
   ``hand_stalled`` — likewise a call a worker moved to ``starting`` but never
   sent (the worker was killed mid-start) is handed again after
   ``DISPATCH_STALLED_START_AFTER_S``; the start claim keeps it to one bot.
4. ``give_up_waiting`` — a dial-out queued for longer than ``CALL_CAPACITY_WAIT_S``
   without a slot ends ``failed`` with reason ``capacity``.
5. the stale-call reaper, at most once a minute.

A hand-off is ``start(session_id)`` — ``calls.tasks.start_call.delay``,
given by the task and the command (the tasks module imports this one).

Every hand-off is claimed with a conditional UPDATE, so several dispatchers may
run at once: each call is handed by one of them; a start task that still runs
twice is harmless (``calls.starting`` starts a bot once).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from . import policy, reaper, rules
from .models import HOLDING_STATUSES, CallEvent, CallSession, CallStatus
from .state import transition

log = logging.getLogger(__name__)

BATCH = 200
REAP_EVERY_S = 60


@dataclass
class Tick:
    promoted: int = 0
    refused: int = 0
    rescheduled: int = 0
    handed: int = 0
    rehanded: int = 0
    gave_up: int = 0
    reaped: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"promoted {self.promoted}, refused {self.refused}, rescheduled {self.rescheduled}, "
            f"handed {self.handed}, re-handed {self.rehanded}, gave up {self.gave_up}, reaped {self.reaped}"
        )


def dispatch(start, now=None, *, reap: bool = True) -> Tick:
    """One tick of the dispatcher (see the module's docstring); ``start`` enqueues a start."""
    now = now or timezone.now()
    tick = Tick()
    run_steps(now, tick)
    promote_due(now, tick)
    give_up_waiting(now, tick)
    hand_waiting(start, now, tick)
    hand_lost(start, now, tick)
    hand_stalled(start, now, tick)
    if reap:
        tick.reaped = reaper.reap_stale_calls(now)
    return tick


def run_steps(now, tick: Tick) -> None:
    """The apps' own steps (``settings.CALL_DISPATCH_STEPS``, dotted paths of ``step(now)``),
    first in every tick: e.g. campaigns release their held calls at their pace, so
    the calls released are promoted and handed in this same tick. Named in
    settings so that ``calls`` imports none of those apps; a failing step is
    logged and the tick goes on.
    """
    for path in settings.CALL_DISPATCH_STEPS:
        try:
            import_string(path)(now)
        except Exception as exc:  # noqa: BLE001 - one app's step must not stop the calls' dispatcher
            log.exception("dispatcher step %s failed", path)
            tick.errors.append(f"{path}: {exc}")


def promote_due(now, tick: Tick) -> None:
    due = (
        CallSession.objects.select_related("organization", "workflow", "patient")
        .filter(status=CallStatus.SCHEDULED, scheduled_for__lte=now, held=False)
        .order_by("scheduled_for")[:BATCH]
    )
    for call in due:
        refused = rules.refusal(call.organization, call.workflow, call.patient, call.to_number)
        if refused is not None:
            if transition(call.pk, CallStatus.CANCELED, reason=refused.code, error=refused.message,
                          expected=CallStatus.SCHEDULED):
                tick.refused += 1
                log.info("scheduled call %s canceled when due: %s", call.pk, refused.code)
            continue
        try:
            ring = policy.plan(
                call.workflow, call.patient, call.organization, basis=call.consent_basis or call.workflow.consent_basis,
                number=call.to_number, now=now, exclude=call.pk,
            )
        except rules.NoCallingHours as exc:
            if transition(call.pk, CallStatus.CANCELED, reason="no_calling_hours", error=str(exc),
                          expected=CallStatus.SCHEDULED):
                tick.refused += 1
            continue
        if ring.at > now:
            # Due but the hours have closed (the dispatcher was down, the hours
            # changed) or another call to the patient took the day's or the
            # week's limit meanwhile: ring when it may instead.
            if CallSession.objects.filter(pk=call.pk, status=CallStatus.SCHEDULED).update(scheduled_for=ring.at):
                tick.rescheduled += 1
                if ring.capped_by is not None:
                    CallEvent.objects.create(call_id=call.pk, at=now, kind="rescheduled", data={
                        "reason": "frequency_cap", "limit": ring.capped_by.label, "scheduled_for": ring.at.isoformat(),
                    })
            continue
        # Waiting for a slot from now on (hand_waiting picks it up in this tick).
        CallSession.objects.filter(pk=call.pk, status=CallStatus.SCHEDULED).update(dispatched_at=None)
        if transition(call.pk, CallStatus.QUEUED, reason="due", expected=CallStatus.SCHEDULED, at=now):
            tick.promoted += 1


def _hand(start, call: CallSession) -> None:
    """Enqueue the call's start (a failure leaves it queued: hand_lost tries again)."""
    try:
        start(str(call.pk))
    except Exception as exc:  # noqa: BLE001 - the broker is down: the next tick retries
        log.warning("could not enqueue the start of call %s: %s", call.pk, exc)


def hand_waiting(start, now, tick: Tick) -> None:
    waiting = (
        CallSession.objects.filter(status=CallStatus.QUEUED, direction="dial_out", dispatched_at__isnull=True,
                                   held=False)
        .filter(Q(start_retry_at__isnull=True) | Q(start_retry_at__lte=now))
    )
    org_ids = set(waiting.values_list("organization_id", flat=True).distinct()[:BATCH])
    if not org_ids:
        return
    free = policy.free_slots_by_org(org_ids)
    for org_id, slots in free.items():
        if slots <= 0:
            continue
        # A call whose number is in a live call waits for it, without taking a hand-off.
        busy = CallSession.objects.filter(
            organization_id=org_id, status__in=list(HOLDING_STATUSES), direction="dial_out", to_number=OuterRef("to_number")
        )
        candidates = waiting.filter(organization_id=org_id).exclude(Exists(busy)).select_related("workflow").order_by(
            F("queued_at").asc(nulls_first=True), "created_at"
        )[:slots]
        numbers = set()
        for call in candidates:
            if call.to_number in numbers:
                continue  # one call per number per tick: the others would only go back to wait
            numbers.add(call.to_number)
            claimed = CallSession.objects.filter(
                pk=call.pk, status=CallStatus.QUEUED, dispatched_at__isnull=True
            ).update(dispatched_at=now)
            if claimed:
                tick.handed += 1
                _hand(start, call)


def hand_lost(start, now, tick: Tick) -> None:
    lost_after = timedelta(seconds=settings.DISPATCH_LOST_START_AFTER_S)
    lost = (
        CallSession.objects.filter(status=CallStatus.QUEUED, dispatched_at__lte=now - lost_after, held=False)
        .filter(Q(start_retry_at__isnull=True) | Q(start_retry_at__lte=now - lost_after))
        .select_related("workflow")
        .order_by("dispatched_at")[:BATCH]
    )
    for call in lost:
        claimed = CallSession.objects.filter(
            pk=call.pk, status=CallStatus.QUEUED, dispatched_at=call.dispatched_at, start_retry_at=call.start_retry_at
        ).update(start_retry_at=now)
        if claimed:
            tick.rehanded += 1
            CallEvent.objects.create(call_id=call.pk, at=now, kind="start_redispatched", data={
                "note": "the start was handed to a worker and never began; handed again",
                "handed_at": call.dispatched_at.isoformat(),
            })
            _hand(start, call)


def hand_stalled(start, now, tick: Tick) -> None:
    """Starts a worker took (``starting``, slot held) and never sent: hand them again.

    Longer than a start really takes (room + start request, with a retry or two),
    so a slow start is rarely handed twice; when it is, only one delivery can
    claim the start (``starting.claim_start``), so the patient rings once.
    """
    after = timedelta(seconds=settings.DISPATCH_STALLED_START_AFTER_S)
    stalled = (
        CallSession.objects.filter(
            status=CallStatus.STARTING, bot_start_requested_at__isnull=True, started_at__lte=now - after,
        )
        .filter(Q(start_retry_at__isnull=True) | Q(start_retry_at__lte=now - after))
        .select_related("workflow")
        .order_by("started_at")[:BATCH]
    )
    for call in stalled:
        claimed = CallSession.objects.filter(
            pk=call.pk, status=CallStatus.STARTING, bot_start_requested_at__isnull=True,
            start_retry_at=call.start_retry_at,
        ).update(start_retry_at=now)
        if claimed:
            tick.rehanded += 1
            CallEvent.objects.create(call_id=call.pk, at=now, kind="start_redispatched", data={
                "note": "a worker began this start and never sent it; handed again",
                "started_at": call.started_at.isoformat() if call.started_at else None,
            })
            _hand(start, call)


def give_up_waiting(now, tick: Tick) -> None:
    limit = timedelta(seconds=settings.CALL_CAPACITY_WAIT_S)
    overdue = CallSession.objects.filter(
        status=CallStatus.QUEUED, direction="dial_out", dispatched_at__isnull=True, held=False
    ).filter(Q(queued_at__lte=now - limit) | Q(deferred_since__lte=now - limit)).values_list("pk", flat=True)[:BATCH]
    for pk in overdue:
        if transition(
            pk, CallStatus.FAILED, reason="capacity", at=now, expected=CallStatus.QUEUED,
            error=f"The call waited more than {int(limit.total_seconds())} s for a free slot and was given up: "
            "raise the organisation's max concurrent calls (or the bot runner's capacity) or place fewer calls at once.",
        ):
            tick.gave_up += 1


def run_forever(start, interval_s: float | None = None, *, stop=lambda: False, out=None, every_tick=False) -> None:
    """``dispatch()`` every ``interval_s`` until ``stop()``; a failing tick is logged, never fatal.

    ``out`` gets the ticks that did something, or (``every_tick``) every tick.
    """
    interval_s = settings.DISPATCH_INTERVAL_S if interval_s is None else interval_s
    last_reap = 0.0
    while not stop():
        started = time.monotonic()
        reap = started - last_reap >= REAP_EVERY_S
        try:
            tick = dispatch(start, reap=reap)
            if reap:
                last_reap = started
            if out is not None and (every_tick or tick.promoted or tick.refused or tick.handed or tick.rehanded
                                    or tick.gave_up or tick.reaped or tick.rescheduled):
                out(str(tick))
        except Exception:  # noqa: BLE001 - e.g. the database restarting: try again next tick
            log.exception("dispatcher tick failed")
            close_old_connections()
        time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
