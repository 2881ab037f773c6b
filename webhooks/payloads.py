"""The data of each event type (ids, statuses and times; never a name or phone number)."""

from __future__ import annotations

from calls.models import CallSession


def iso(value):
    return value.isoformat() if value else None


def call_ended_payload(call: CallSession) -> dict:
    """The `call.ended` data: ids, statuses and times — no name, phone or transcript."""
    outcome = call.outcome if isinstance(call.outcome, dict) else None
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
    }


def opted_out_payload(*, call_id, patient_id, external_id, at) -> dict:
    """The `patient.opted_out` data: who (our id and the EHR's), on which call, when."""
    return {
        "patient_id": patient_id,
        "external_id": external_id,
        "session_id": str(call_id),
        "source": f"call:{call_id}",
        "opted_out_at": iso(at),
    }
