"""The data of each event type (ids, statuses and times; never a name or phone number)."""

from __future__ import annotations

from calls.models import CallEvent, CallSession


def iso(value):
    return value.isoformat() if value else None


def call_ended_payload(call: CallSession) -> dict:
    """The `call.ended` data: ids, statuses and times — no name, phone or transcript.

    Of the outcome only its ``result`` (a code) and the EHR appointment it changed:
    its free-text ``notes`` and its ``data`` are what the patient said, and go only
    to endpoints that asked for the transcript (``outcome_details``).
    """
    outcome = {"result": call.outcome.get("result")} if isinstance(call.outcome, dict) else None
    appointment = appointment_of(call)
    if appointment is not None and outcome is not None:
        outcome = {**outcome, "appointment": appointment}
    next_at = getattr(call, "next_attempt_at", None)
    campaign_id = getattr(call, "campaign_id", None)
    return {
        "session_id": str(call.pk),
        "external_id": call.patient.external_id if call.patient_id else None,
        "workflow": call.workflow.slug,
        "direction": call.direction,
        "status": call.status,
        "end_reason": call.end_reason or None,
        "outcome": outcome,
        "attempt": getattr(call, "attempt", None),
        "next_attempt_at": iso(next_at) if not isinstance(next_at, str) else next_at,
        "campaign_id": str(campaign_id) if campaign_id is not None else None,
        "started_at": iso(call.started_at),
        "answered_at": iso(call.answered_at),
        "ended_at": iso(call.ended_at),
        "appointment": appointment,
    }


def outcome_details(call: CallSession) -> dict | None:
    """The whole outcome (result, notes, data), for endpoints with "include transcript" on."""
    return call.outcome if isinstance(call.outcome, dict) else None


def appointment_of(call: CallSession) -> dict | None:
    """What the call last changed about its EHR appointment (the scheduling tools'
    ``appointment`` event): ``{appointment_id, change, start, end}``, or None."""
    event = CallEvent.objects.filter(call_id=call.pk, kind="appointment").order_by("-at", "-id").first()
    return dict(event.data) if event is not None else None


def opted_out_payload(*, call_id, patient_id, external_id, at) -> dict:
    """The `patient.opted_out` data: who (our id and the EHR's), on which call, when."""
    return {
        "patient_id": patient_id,
        "external_id": external_id,
        "session_id": str(call_id),
        "source": f"call:{call_id}",
        "opted_out_at": iso(at),
    }
