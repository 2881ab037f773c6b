"""Writes and business rules for calls: place, accept (dial-in) and cancel.

Every way into a call goes through here — the admin's "Call patient", the
REST API's start-call and Daily's dial-in webhook — so the rules hold in one
place (docs/architecture.md, "The flow"). Who may be called by which workflow
is ``calls.rules``; a refusal is its ``CallRefused`` (code table there).

Both ``place_call`` and ``accept_dialin`` create the CallSession (``queued``)
and enqueue ``calls.tasks.start_call`` (a thin task over ``calls.starting``)
when the transaction commits. Phone numbers are stored in E.164. Logs carry
session ids and masked numbers only.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import record as audit
from masking import mask_phone
from organizations.models import Direction
from organizations.validators import is_caller_id
from patients.models import Patient
from patients.phone import normalize_phone, try_normalize_phone

from . import caller_ids, policy, rules
from .dialout import new_dial_out
from .broadcast import broadcast_call_sync
from .models import ACTIVE_STATUSES, CallEvent, CallSession, CallStatus
from .starting import delete_call_room, room_hint
from .state import transition
from .tasks import start_call, start_in_background

log = logging.getLogger(__name__)

IDEMPOTENCY_TTL = timedelta(hours=24)

CallRefused = rules.CallRefused  # the callers' name for the one refusal (calls.rules)


def _start_on_commit(call: CallSession) -> None:
    session_id = str(call.pk)
    if start_call.app.conf.task_always_eager:
        transaction.on_commit(lambda: _announce(call))
        transaction.on_commit(lambda: enqueue_start(session_id))
    else:
        # With a worker the start is enqueued first (the announcement does not
        # wait for anything, and the worker's own updates come a Daily round trip later).
        hint = room_hint(call)
        transaction.on_commit(lambda: enqueue_start(session_id, hint))
        transaction.on_commit(lambda: _announce(call))


def enqueue_start(session_id: str, hint: dict | None = None) -> bool:
    """Hand the start to a worker. The call is already committed `queued`, so a
    broker that is down must not turn an accepted call into an error: the failure
    is recorded and the dispatcher's sweep enqueues the call again."""
    if start_call.app.conf.task_always_eager:
        if getattr(settings, "EMBEDDED_START_IN_THREAD", False):
            # Eager Celery would run the start — and its retries — inside the
            # request that placed the call: the staff member would wait for it.
            start_in_background(session_id)
        else:
            start_call.delay(session_id)
        return True
    try:
        start_call.delay(session_id, hint)
    except Exception as exc:  # noqa: BLE001 - kombu/redis raise many types when the broker is down
        log.warning("could not enqueue the start of call %s (%s); the dispatcher will retry", session_id, exc.__class__.__name__)
        CallEvent.objects.create(
            call_id=session_id, at=timezone.now(), kind="start_enqueue_failed",
            data={"error": exc.__class__.__name__, "note": "the dispatcher enqueues it again"},
        )
        return False
    return True


def _announce(call: CallSession) -> None:
    """Open live lists show the new call at once, even before a worker picks it up.

    Sent before an eager start (which would otherwise report `starting` before
    this `queued`); with a worker, right after the start is enqueued.
    """
    # With a worker, the worker starts the call tens of milliseconds from now.
    # Waiting here for the channel layer (a hop back to the server's busy event
    # loop) was most of a webhook's time under load (bench/RESULTS.md): send it
    # from the process's background loop instead.
    broadcast_call_sync(call, background=not start_call.app.conf.task_always_eager)


# --- dial-out ----------------------------------------------------------------------


def _existing_for_key(organization, idempotency_key: str, request_fingerprint: str) -> CallSession | None:
    """The live session for this key, or None; a key older than 24 h is released."""
    existing = CallSession.objects.filter(organization=organization, idempotency_key=idempotency_key).first()
    if existing is None:
        return None
    if existing.created_at < timezone.now() - IDEMPOTENCY_TTL:
        # Kept 24 h: after that the key may be used again for a new call.
        CallSession.objects.filter(pk=existing.pk).update(idempotency_key=None)
        return None
    if existing.request_fingerprint != request_fingerprint:
        raise CallRefused(
            "idempotency_conflict",
            "This Idempotency-Key was already used with a different request body; use a new key for a new call.",
            field="Idempotency-Key",
        )
    return existing


def place_call(
    *,
    organization,
    workflow,
    patient,
    phone_number: str | None = None,
    caller_id: str | None = None,
    requested_by_user=None,
    requested_by_api_key=None,
    idempotency_key: str | None = None,
    request_fingerprint: str = "",
    not_before=None,
    consent_basis: str | None = None,
    if_capped: str = "schedule",
) -> CallSession:
    """Create a dial-out call and start its bot when the transaction commits.

    The call policy (``calls.policy``) decides when it rings: placed for now,
    inside the workflow's calling window, it is ``queued`` and started at once;
    outside the window (or with a later ``not_before``, an aware datetime) it
    is ``scheduled`` with ``scheduled_for`` = when it will ring, and the
    dispatcher starts it then.

    It also keeps the organisation's limits for the call's consent basis
    (``consent_basis``, default the workflow's): a call over the day's or the
    week's limit is scheduled for when it is allowed, or, with
    ``if_capped="refuse"``, refused (``frequency_cap``). ``call.plan`` says
    which zone(s) were used and which limit moved it.

    Raises ``CallRefused``. With ``idempotency_key`` a second request with the
    same key (within 24 h, same ``request_fingerprint``) returns the first
    session and starts nothing; the returned call then has ``replayed = True``.
    """
    idempotency_key = (idempotency_key or "").strip() or None
    if idempotency_key:
        existing = _existing_for_key(organization, idempotency_key, request_fingerprint)
        if existing is not None:
            existing.replayed = True
            return existing

    rules.check_workflow(organization, workflow)
    rules.check_patient(organization, patient)

    if phone_number:
        try:
            to_number = normalize_phone(phone_number)
        except ValidationError as exc:
            raise CallRefused("invalid_phone", " ".join(exc.messages), field="phone_number")
    else:
        to_number = try_normalize_phone(patient.phone)
        if to_number is None:
            raise CallRefused(
                "invalid_phone",
                "The patient's phone number is not a valid phone number: correct it or give phone_number.",
                field="phone_number",
            )

    rules.check_number(organization, to_number)
    rules.check_deployment()

    basis = consent_basis or workflow.consent_basis
    caller_id = (caller_id or "").strip() or organization.dialout_caller_id or ""
    if caller_id and not is_caller_id(caller_id):
        raise CallRefused(
            "invalid_caller_id",
            "caller_id must be an E.164 number or a Daily phone-number id (a UUID).",
            field="caller_id",
        )
    try:
        caller_id = caller_ids.resolve_caller_id(caller_id)  # Daily's callerId is the number's id
    except caller_ids.CallerIdRefused as exc:
        raise CallRefused("invalid_caller_id", str(exc), field="caller_id") from None
    try:
        with transaction.atomic():
            call = _new_dial_out(
                organization, workflow, patient, to_number=to_number, caller_id=caller_id, basis=basis,
                not_before=not_before, if_capped=if_capped, requested_by_user=requested_by_user,
                requested_by_api_key=requested_by_api_key, idempotency_key=idempotency_key,
                request_fingerprint=request_fingerprint,
            )
            scheduled = call.status == CallStatus.SCHEDULED
            audit(
                AuditAction.PLACE_CALL, call, user=requested_by_user, api_key=requested_by_api_key,
                via="api" if requested_by_api_key is not None else "admin",
            )
            if scheduled:
                transaction.on_commit(lambda: _announce(call))
            else:
                _start_on_commit(call)
    except IntegrityError:
        if not idempotency_key:
            raise
        # Two requests with one key at the same moment: the database chose the other one.
        existing = _existing_for_key(organization, idempotency_key, request_fingerprint)
        if existing is None:
            raise
        existing.replayed = True
        return existing
    call.replayed = False
    log.info(
        "placed call %s (dial-out, workflow %s) to %s, %s", call.pk, workflow.slug, mask_phone(to_number),
        f"scheduled for {call.scheduled_for.isoformat()}" if scheduled else "now",
    )
    return call


def _new_dial_out(
    organization, workflow, patient, *, to_number, caller_id, basis, not_before, if_capped, requested_by_user,
    requested_by_api_key, idempotency_key, request_fingerprint,
) -> CallSession:
    """Save the call at the time the policy gives (in the caller's transaction, the patient's row locked,
    so two calls placed at once for one patient count each other against the limits)."""
    Patient.objects.select_for_update().filter(pk=patient.pk).values_list("pk", flat=True).first()
    now = timezone.now()
    try:
        ring = policy.plan(workflow, patient, organization, basis=basis, number=to_number,
                           not_before=not_before, now=now)
    except rules.NoCallingHours as exc:
        raise CallRefused("no_calling_hours", str(exc), field="patient")
    if ring.capped_by is not None and if_capped == "refuse":
        raise CallRefused(
            "frequency_cap",
            f"The organisation allows {rules.describe_limit(ring.capped_by, basis)}; "
            f"the next call may ring at {ring.at.isoformat()}.",
            field="patient",
        )
    call = new_dial_out(
        organization=organization,
        workflow=workflow,
        patient=patient,
        to_number=to_number,
        from_number=caller_id,
        ring_at=ring.at,
        now=now,
        start_now=ring.at <= now,
        consent_basis=basis,
        requested_by_user_id=requested_by_user.pk if requested_by_user is not None else None,
        requested_by_api_key_id=requested_by_api_key.pk if requested_by_api_key is not None else None,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
    )
    with transaction.atomic():  # an IntegrityError here leaves the caller's transaction usable
        call.save(force_insert=True)
    call.plan = ring
    return call


# --- dial-in -----------------------------------------------------------------------


def _clean_number(value: str | None) -> str:
    """E.164 when it is a phone number; otherwise what Daily sent (e.g. "anonymous")."""
    raw = (value or "").strip()
    return (try_normalize_phone(raw) or raw)[:32] if raw else ""


def _match_patient(organization, phone: str) -> Patient | None:
    """The organisation's one patient with this number; none when unknown or ambiguous.

    Two patients sharing a number (a family phone) are not guessed between:
    the bot would greet the wrong person and could tell them another's data.
    """
    if not phone.startswith("+"):
        return None
    matches = list(Patient.objects.filter(organization=organization, phone=phone).order_by("pk")[:2])
    return matches[0] if len(matches) == 1 else None


def accept_dialin(
    *,
    organization,
    workflow,
    call_id: str,
    call_domain: str,
    from_number: str,
    to_number: str,
    sip_headers: dict | None = None,
) -> tuple[CallSession, bool]:
    """Create the dial-in call for Daily's ``callId`` (once) and start its bot on commit.

    Returns ``(call, created)``. The database's unique constraint on
    ``(daily_call_domain, daily_call_id)`` decides between concurrent
    deliveries of one call: the loser gets the winner's session and starts
    nothing. ``sip_headers`` are accepted but not stored (they may carry
    caller details and the bot does not need them).
    """
    rules.check_workflow(organization, workflow, dialin=True)
    call_id = (call_id or "").strip()
    call_domain = (call_domain or "").strip()
    if not call_id or not call_domain:
        raise CallRefused("invalid", "callId and callDomain are required.", field="callId" if not call_id else "callDomain")
    rules.check_deployment()
    if (
        CallSession.objects.filter(daily_call_domain=call_domain, daily_call_id=call_id)
        .exclude(organization=organization)
        .exists()
    ):
        # Daily's callId names one call: another organisation reusing it is
        # refused, and never told anything about the first one's call.
        raise CallRefused("dialin_call_conflict", "This callId is already used by another call.", field="callId")

    caller = _clean_number(from_number)
    call = CallSession(
        organization=organization,
        workflow=workflow,
        patient=_match_patient(organization, caller),
        direction=Direction.DIAL_IN,
        status=CallStatus.QUEUED,
        from_number=caller,
        to_number=_clean_number(to_number),
        queued_at=timezone.now(),
        dispatched_at=timezone.now(),
        daily_call_id=call_id,
        daily_call_domain=call_domain,
    )
    try:
        with transaction.atomic():
            call.save(force_insert=True)
            _start_on_commit(call)
    except IntegrityError:
        existing = CallSession.objects.filter(
            organization=organization, daily_call_domain=call_domain, daily_call_id=call_id
        ).first()
        if existing is None:
            raise
        log.info("dial-in %s delivered again: same call %s", call_id, existing.pk)
        return existing, False
    log.info(
        "accepted dial-in %s as call %s (workflow %s) from %s, patient %s",
        call_id, call.pk, workflow.slug, mask_phone(caller), "matched" if call.patient_id else "unknown",
    )
    return call, True


# --- cancel -------------------------------------------------------------------------


def _pending_follow_ups(call: CallSession) -> list:
    """Later attempts of this call that have not ended (normally at most one, scheduled)."""
    pending, current = [], call.pk
    while True:
        nxt = CallSession.objects.filter(previous_attempt_id=current).values_list("pk", "status").first()
        if nxt is None:
            return pending
        if nxt[1] in ACTIVE_STATUSES:
            pending.append(nxt[0])
        current = nxt[0]


def cancel_call(call: CallSession, *, by_user=None, by_api_key=None) -> CallSession:
    """Mark the call ``canceled`` and delete its Daily room (which ends the bot's call).

    Its scheduled follow-up attempt (calls.policy) is canceled too, also when
    the call itself has already ended. Raises ``CallRefused("not_cancelable")``
    when there is nothing left to cancel. Returns the call, refreshed.
    """
    data = {}
    if by_user is not None:
        data["by_user"] = by_user.pk
    if by_api_key is not None:
        data["by_api_key"] = by_api_key.prefix
    moved = transition(call.pk, CallStatus.CANCELED, reason="canceled", data=data)
    # After the call's own move: a follow-up written with its end is found here.
    followers = [
        pk for pk in _pending_follow_ups(call)
        if transition(pk, CallStatus.CANCELED, reason="canceled", data={**data, "with_attempt": str(call.pk)})
    ]
    call.refresh_from_db()
    if not moved and not followers:
        raise CallRefused(
            "not_cancelable", f"The call has already ended ({call.get_status_display().lower()})."
        )
    if followers:
        log.info("call %s: canceled its follow-up attempt(s) %s", call.pk, ", ".join(str(pk) for pk in followers))
    if not moved:
        return call
    log.info("call %s canceled", call.pk)
    if by_user is not None or by_api_key is not None:
        audit(AuditAction.CANCEL_CALL, call, user=by_user, api_key=by_api_key, via="api" if by_api_key else "admin")
    # No room name yet: the start task is making it (or never will); it sees
    # the cancel when it claims the start and deletes the room itself.
    delete_call_room(call)
    return call
