"""The call policy: when a dial-out may ring, whether it is tried again, and capacity.

The one place these rules live; the admin, the API, retries and the dispatcher
go through it.

Windows (pure arithmetic on zone-aware datetimes, no database): a window is a
span of local wall-clock time (``start`` <= t < ``end``) on some ISO weekdays,
read in one IANA zone; everything is computed on that zone's wall clock and
converted back through ``zoneinfo``, so 09:00 stays 09:00 across daylight-saving
changes. ``Window``, ``is_open``, ``next_opening``, ``ring_time``, ``local_instant``;
``window_for(workflow, patient, organization)`` reads the workflow's window in
the patient's zone (else the organisation's), ``ring_time_for(...)`` says when a
dial-out placed now (or for ``not_before``) may ring.

Who may be called by which workflow is not here but in ``calls.rules``.

Attempts (pure): ``retry_reason``, ``retry_delay``, ``next_attempt_at``; and
``follow_up(call_id)``, which creates the next attempt of a dial-out that ended
no-answer / busy / voicemail / declined, inside the transaction of that end.

One live call per number: a dial-out whose number is already in a live call of
its organisation waits (``number_in_call``, asked under the slot lock), and the
dispatcher does not hand it until the number is free.

Capacity: slots are counted in the database under a lock on the organisation's
row (``SELECT … FOR UPDATE``), so every server, worker and dispatcher process
sees the same count; nothing is kept in process memory (on SQLite, the embedded
default, the lock is the database's own write lock). ``slot_lock``,
``slots_held``, ``free_slots_by_org``, ``deferral_delay`` (backoff after the bot
runner's 429), ``capacity_wait_over``.
"""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from masking import mask_phone
from organizations.models import Organization

from . import rules
from .dialout import new_dial_out
from .rules import NoCallingHours, ZoneChoice, callee_zones  # noqa: F401 - re-exported for callers
from .models import HOLDING_STATUSES, CallEvent, CallSession

log = logging.getLogger(__name__)


# --- windows ---------------------------------------------------------------------


UTC = dt.timezone.utc
# A window that opens on none of the next two weeks' days never opens.
_SEARCH_DAYS = 15


@dataclass(frozen=True)
class Window:
    start: dt.time
    end: dt.time
    days: frozenset[int]  # ISO weekdays, 1 = Monday … 7 = Sunday
    zone: ZoneInfo

    def __post_init__(self):
        if not self.days or not all(1 <= d <= 7 for d in self.days):
            raise ValueError("a window needs at least one ISO weekday (1..7)")
        if self.start >= self.end:
            raise ValueError("a window must end after it starts")


def zone_named(name: str | None, fallback: str = "UTC") -> ZoneInfo:
    """The zone called ``name``; ``fallback`` when it is empty or unknown."""
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (KeyError, ValueError):
                continue
    return ZoneInfo("UTC")


def local_instant(day: dt.date, wall: dt.time, zone: ZoneInfo) -> dt.datetime:
    """The first instant at which ``zone``'s clock reads ``wall`` (or later) on ``day``.

    In a spring-forward gap (the wall time does not exist) that is the moment
    the clocks jump; in a fall-back repeat, the first of the two.
    """
    naive = dt.datetime.combine(day, wall)
    first = naive.replace(tzinfo=zone, fold=0)
    # Round-trip through UTC: a wall time inside a gap comes back different.
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive:
        return first.astimezone(UTC)
    # In the gap: the clocks jump somewhere between the wall time's two
    # readings (at most a few hours apart); find the jump, to the minute.
    readings = sorted([naive.replace(tzinfo=zone, fold=1).astimezone(UTC), first.astimezone(UTC)])
    instant = readings[0].replace(second=0, microsecond=0)
    while instant < readings[1] and instant.astimezone(zone).replace(tzinfo=None) < naive:
        instant += dt.timedelta(minutes=1)
    return instant


def is_open(moment: dt.datetime, window) -> bool:
    """Whether a call may ring at ``moment`` (an aware datetime): in every zone of ``CallingHours``."""
    if isinstance(window, CallingHours):
        return all(is_open(moment, one) for one in window.windows)
    local = moment.astimezone(window.zone)
    return local.isoweekday() in window.days and window.start <= local.time().replace(tzinfo=None) < window.end


def next_opening(moment: dt.datetime, window) -> dt.datetime:
    """``moment`` itself when the window is open then, else the window's next opening (UTC).

    For ``CallingHours`` (several zones): the first moment open in all of them.
    Each step moves to the next opening of a zone that is closed, which never
    passes the first common one; ``NoCallingHours`` when there is none within
    two weeks (the zones' hours never overlap).
    """
    if moment.tzinfo is None:
        raise ValueError("next_opening needs an aware datetime")
    if isinstance(window, CallingHours):
        candidate, limit = moment.astimezone(UTC), moment + dt.timedelta(days=_SEARCH_DAYS)
        while candidate <= limit:
            moved = False
            for one in window.windows:
                opening = next_opening(candidate, one)
                if opening > candidate:
                    candidate, moved = opening, True
            if not moved:
                return candidate
        raise NoCallingHours(
            "The calling hours are never open at the same time in all of the patient's possible time zones ("
            + ", ".join(w.zone.key for w in window.windows) + "): set the patient's time zone."
        )
    moment = moment.astimezone(UTC)
    if is_open(moment, window):
        return moment
    day = moment.astimezone(window.zone).date()
    for offset in range(_SEARCH_DAYS):
        candidate = day + dt.timedelta(days=offset)
        if candidate.isoweekday() not in window.days:
            continue
        opening = local_instant(candidate, window.start, window.zone)
        if opening >= moment:
            return opening
    raise ValueError("the window never opens")  # unreachable with a valid Window


@dataclass(frozen=True)
class CallingHours:
    """One workflow window read in each of the callee's candidate zones: open when open in all."""

    windows: tuple[Window, ...]

    @property
    def zone(self) -> ZoneInfo:
        return self.windows[0].zone

    @property
    def zones(self) -> tuple[ZoneInfo, ...]:
        return tuple(w.zone for w in self.windows)


def calling_hours(start: dt.time, end: dt.time, days, zones) -> CallingHours:
    """The window in each zone, narrowed to the legal floor (08:00–21:00 local) that no workflow can widen."""
    start, end = rules.legal_hours(start, end)
    return CallingHours(tuple(Window(start=start, end=end, days=frozenset(days), zone=z) for z in zones))


def ring_time(now: dt.datetime, window, not_before: dt.datetime | None = None) -> dt.datetime:
    """When a dial-out asked for ``not_before`` (or now) may ring: moved into the window."""
    wanted = now if not_before is None or not_before <= now else not_before
    return next_opening(wanted, window)


# --- attempts --------------------------------------------------------------------


NO_ANSWER, BUSY, VOICEMAIL, DECLINED = "no_answer", "busy", "voicemail", "declined"
RETRYABLE_REASONS = (NO_ANSWER, BUSY, VOICEMAIL, DECLINED)


def retry_reason(status: str, end_reason: str) -> str | None:
    """Which of ``RETRYABLE_REASONS`` ended the call, or None (it ended otherwise).

    The bot's end reasons ``voicemail`` and ``declined`` end a call ``no_answer``;
    the reason is what the workflow's ``retry_on`` names.
    """
    if status not in (NO_ANSWER, BUSY):
        return None
    if end_reason in (VOICEMAIL, DECLINED):
        return end_reason
    return status


def retry_delay(delays_min: list[int], attempt: int) -> dt.timedelta:
    """The wait after attempt ``attempt`` (1-based): its delay, the last one repeating."""
    if not delays_min:
        return dt.timedelta(0)
    return dt.timedelta(minutes=delays_min[min(attempt, len(delays_min)) - 1])


def next_attempt_at(
    *, status: str, end_reason: str, attempt: int, max_attempts: int, retry_on, delays_min, ended_at: dt.datetime,
    window: Window,
) -> dt.datetime | None:
    """When the next attempt rings, or None when there is none (not retryable, or attempts spent)."""
    reason = retry_reason(status, end_reason)
    if reason is None or reason not in (retry_on or ()) or attempt >= max_attempts:
        return None
    return next_opening(ended_at + retry_delay(list(delays_min or []), attempt), window)


# --- capacity --------------------------------------------------------------------


def live_on_number(organization_id, number: str):
    """The organisation's calls holding a slot on ``number`` (a dial-out to it, a dial-in from it)."""
    return CallSession.objects.filter(organization_id=organization_id, status__in=list(HOLDING_STATUSES)).filter(
        Q(direction="dial_out", to_number=number) | Q(direction="dial_in", from_number=number)
    )


def number_in_call(call) -> bool:
    """Whether another call of the organisation is live on this dial-out's number (at most one at a time)."""
    return bool(call.to_number) and live_on_number(call.organization_id, call.to_number).exclude(pk=call.pk).exists()


def slots_held(organization_id) -> int:
    """Calls of the organisation holding a slot (starting until final; dial-ins too)."""
    return CallSession.objects.filter(organization_id=organization_id, status__in=list(HOLDING_STATUSES)).count()


@contextmanager
def slot_lock(organization_id):
    """A transaction holding the organisation's row lock; yields its ``max_concurrent_calls``.

    Whoever counts slots and takes one inside it cannot race another process
    doing the same.
    """
    with transaction.atomic():
        if connection.vendor == "sqlite":
            # SQLite has no row locks, and a transaction that reads before it
            # writes fails at once ("database is locked") when another one
            # writes meanwhile: take the database's write lock first (a no-op
            # write), so the count and the move below run alone.
            Organization.objects.filter(pk=organization_id).update(
                max_concurrent_calls=F("max_concurrent_calls")
            )
        cap = (
            Organization.objects.select_for_update()
            .filter(pk=organization_id)
            .values_list("max_concurrent_calls", flat=True)
            .first()
        )
        yield cap or 0


def free_slots_by_org(organization_ids) -> dict[int, int]:
    """{organisation id: free slots} in one query (a snapshot: take a slot under ``slot_lock``)."""
    rows = Organization.objects.filter(pk__in=list(organization_ids)).annotate(
        held=Count("calls", filter=Q(calls__status__in=list(HOLDING_STATUSES)))
    ).values_list("pk", "max_concurrent_calls", "held")
    return {pk: max(0, cap - held) for pk, cap, held in rows}


def deferral_delay(deferrals: int) -> dt.timedelta:
    """Backoff before the ``deferrals``-th new try after the bot runner answered 429 (1-based)."""
    base = settings.CALL_CAPACITY_BACKOFF_S
    return dt.timedelta(seconds=min(settings.CALL_CAPACITY_BACKOFF_MAX_S, base * (2 ** max(0, deferrals - 1))))


def capacity_wait_over(deferred_since: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a call kept waiting for capacity since ``deferred_since`` has waited long enough to fail."""
    return deferred_since is not None and (now - deferred_since).total_seconds() >= settings.CALL_CAPACITY_WAIT_S


# --- the rules on our models ----------------------------------------------------------


def patient_zone(patient, organization):
    """The zone a patient's times are shown in: theirs, else the first the number suggests, else the organisation's."""
    return zone_named(callee_zones(patient, organization).zones[0], organization.timezone or "UTC")


def window_for(workflow, patient, organization, number: str | None = None) -> CallingHours:
    """The workflow's window in the callee's zone(s), narrowed to the legal floor."""
    return calling_hours(
        workflow.window_start, workflow.window_end, workflow.window_days or [1, 2, 3, 4, 5],
        [ZoneInfo(z) for z in callee_zones(patient, organization, number).zones],
    )


def ring_time_for(
    workflow, patient, organization, not_before: dt.datetime | None = None, now=None, number: str | None = None
) -> dt.datetime:
    """When a dial-out for this patient, placed now (or for ``not_before``), may ring (hours only, no limits)."""
    return ring_time(now or timezone.now(), window_for(workflow, patient, organization, number), not_before)


class Plan(NamedTuple):
    at: dt.datetime
    zones: ZoneChoice
    capped_by: rules.Limit | None  # the limit that moved the call later (None: the hours did, or nothing)


def plan(
    workflow, patient, organization, *, basis: str, number: str | None = None, not_before=None, now=None,
    exclude=None, moments: list[dt.datetime] | None = None,
) -> Plan:
    """When a dial-out may ring: in the callee's hours (every candidate zone, the legal floor) and
    under the organisation's limits for its consent ``basis``. Raises ``NoCallingHours``."""
    now = now or timezone.now()
    zones = callee_zones(patient, organization, number)
    hours = window_for(workflow, patient, organization, number)
    wanted = now if not_before is None or not_before <= now else not_before
    limits = rules.limits_for(organization, basis)
    if not limits:
        return Plan(next_opening(wanted, hours), zones, None)
    if moments is None:
        moments = rules.counted_moments(organization.pk, [patient.pk], exclude=exclude, now=now).get(patient.pk, [])
    at, capped_by = rules.first_allowed(wanted, moments, limits, lambda moment: next_opening(moment, hours))
    return Plan(at, zones, capped_by)


def follow_up(call_id, *, now=None) -> CallSession | None:
    """Create the next attempt of a dial-out that just ended, when its workflow allows one.

    Runs inside the transaction of the final move (``calls.state``), so the
    call's end and its follow-up are written together. The new call is
    ``scheduled`` at end time + the delay, moved into the window; it is linked
    by ``previous_attempt``. At most one follow-up per call (a one-to-one link).
    """
    call = (
        CallSession.objects.select_related("organization", "workflow", "patient")
        .filter(pk=call_id, direction="dial_out")
        .first()
    )
    if call is None or call.patient_id is None:
        return None
    workflow = call.workflow
    ended_at = call.ended_at or now or timezone.now()
    when = next_attempt_at(
        status=call.status,
        end_reason=call.end_reason,
        attempt=call.attempt,
        max_attempts=call.max_attempts,
        retry_on=workflow.retry_on,
        delays_min=workflow.retry_delays_min,
        ended_at=ended_at,
        window=window_for(workflow, call.patient, call.organization, call.to_number),
    )
    if when is None:
        return None
    basis = call.consent_basis or workflow.consent_basis
    # Under the organisation's limits too: the call that just ended counts.
    when = plan(workflow, call.patient, call.organization, basis=basis, number=call.to_number,
                not_before=when, now=ended_at).at
    number = call.to_number  # the number this request asked for
    nxt = new_dial_out(
        organization=call.organization,
        workflow=workflow,
        patient=call.patient,
        to_number=number,
        from_number=call.from_number,
        ring_at=when,
        now=ended_at,
        consent_basis=basis,
        attempt=call.attempt + 1,
        max_attempts=call.max_attempts,
        previous_attempt=call,
        # A campaign's follow-up is the campaign's too, and waits to be released at its pace.
        campaign_id=call.campaign_id,
        held=call.campaign_id is not None,
        requested_by_user_id=call.requested_by_user_id,
        requested_by_api_key_id=call.requested_by_api_key_id,
    )
    try:
        with transaction.atomic():
            nxt.save(force_insert=True)
    except IntegrityError:
        return None  # another process made it already
    reason = retry_reason(call.status, call.end_reason)
    CallEvent.objects.create(
        call_id=nxt.pk, at=ended_at, kind="scheduled",
        data={"reason": "retry", "after": reason, "previous_attempt": str(call.pk), "scheduled_for": when.isoformat()},
    )
    CallEvent.objects.create(
        call_id=call.pk, at=ended_at, kind="next_attempt",
        data={"session_id": str(nxt.pk), "attempt": nxt.attempt, "scheduled_for": when.isoformat()},
    )
    log.info(
        "call %s ended %s: attempt %s of %s scheduled as %s for %s (to %s)",
        call.pk, reason, nxt.attempt, nxt.max_attempts, nxt.pk, when.isoformat(), mask_phone(number),
    )
    return nxt
