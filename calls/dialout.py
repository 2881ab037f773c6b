"""The one constructor of a dial-out attempt.

A new dial-out ``CallSession`` is made in three places — a call placed by a
person or an API key (``calls.services.place_call``), a follow-up attempt
(``calls.policy.follow_up``) and a campaign's first attempts
(``campaigns.services.start_campaign``) — and they save it differently (one
row, one row in the end's transaction, thousands in bulk). What the row holds
is decided here once.
"""

from __future__ import annotations

from organizations.models import Direction

from .models import CallSession, CallStatus


def new_dial_out(
    *,
    organization,
    workflow,
    patient,
    to_number: str,
    from_number: str = "",
    ring_at,
    now,
    start_now: bool = False,
    attempt: int = 1,
    max_attempts: int | None = None,
    previous_attempt=None,
    campaign_id=None,
    held: bool = False,
    requested_by_user_id=None,
    requested_by_api_key_id=None,
    idempotency_key: str | None = None,
    request_fingerprint: str = "",
    consent_basis: str | None = None,
) -> CallSession:
    """An unsaved dial-out: ``queued`` for a start now (``start_now``), else ``scheduled`` for ``ring_at``.

    ``held`` (a campaign's) waits to be released at the campaign's pace.
    ``consent_basis`` (what the call rests on) is the workflow's unless given.
    """
    return CallSession(
        organization=organization,
        workflow=workflow,
        patient=patient,
        direction=Direction.DIAL_OUT,
        consent_basis=consent_basis or workflow.consent_basis,
        status=CallStatus.QUEUED if start_now else CallStatus.SCHEDULED,
        scheduled_for=None if start_now else ring_at,
        queued_at=now if start_now else None,
        dispatched_at=now if start_now else None,
        attempt=attempt,
        max_attempts=workflow.max_attempts if max_attempts is None else max_attempts,
        from_number=from_number or "",
        to_number=to_number,
        previous_attempt=previous_attempt,
        campaign_id=campaign_id,
        held=held,
        requested_by_user_id=requested_by_user_id,
        requested_by_api_key_id=requested_by_api_key_id,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint if idempotency_key else "",
    )

