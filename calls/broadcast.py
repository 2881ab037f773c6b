"""What browsers hear about calls: DESIGN.md's `call.update` / `call.event` messages.

Sent on the channel-layer groups `call.<session id>` and `org.<organization id>`;
browser consumers shape each message for their recipient's role before sending.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from .models import CallEvent, CallSession

log = logging.getLogger(__name__)


def call_group(session_id) -> str:
    return f"call.{session_id}"


def org_group(organization_id) -> str:
    return f"org.{organization_id}"


def _iso(value):
    return value.isoformat() if value else None


def serialize_call(call: CallSession) -> dict:
    """The full form; `patient` carries name and phone, which consumers mask for viewers."""
    patient = None
    if call.patient_id:
        p = call.patient
        patient = {
            "id": p.pk,
            "name": p.full_name,
            "masked_name": p.masked_name,
            "phone": call.patient_phone,
            "masked_phone": p.masked_phone,
        }
    else:
        from organizations.masking import mask_phone

        patient = {
            "id": None,
            "name": "Unknown caller",
            "masked_name": "Unknown caller",
            "phone": call.patient_phone,
            "masked_phone": mask_phone(call.patient_phone),
        }
    return {
        "session_id": str(call.pk),
        "organization_id": call.organization_id,
        "status": call.status,
        "status_display": call.get_status_display(),
        "direction": call.direction,
        "workflow": {"id": call.workflow_id, "slug": call.workflow.slug, "name": call.workflow.name},
        "patient": patient,
        "created_at": _iso(call.created_at),
        "started_at": _iso(call.started_at),
        "answered_at": _iso(call.answered_at),
        "ended_at": _iso(call.ended_at),
        "end_reason": call.end_reason,
        "error": call.error,
        "outcome": call.outcome,
        "dialout_attempts": call.dialout_attempts,
    }


def serialize_event(event: CallEvent) -> dict:
    return {"seq": event.seq, "event": event.kind, "at": _iso(event.at), "data": event.data}


async def send_call_messages(call_payload: dict, event_payloads: list[dict]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    groups = [call_group(call_payload["session_id"]), org_group(call_payload["organization_id"])]
    for event in event_payloads:
        message = {
            "type": "call.event",
            "session_id": call_payload["session_id"],
            "organization_id": call_payload["organization_id"],
            "event": event,
        }
        for group in groups:
            await layer.group_send(group, message)
    message = {"type": "call.update", "call": call_payload}
    for group in groups:
        await layer.group_send(group, message)


def load_call(call_id) -> CallSession | None:
    return CallSession.objects.select_related("organization", "workflow", "patient").filter(pk=call_id).first()


def broadcast_call_sync(call_id, events: list[CallEvent] | None = None) -> None:
    """Tell browsers about a call's state from sync code (tasks, services, admin)."""
    try:
        call = load_call(call_id)
        if call is None:
            return
        async_to_sync(send_call_messages)(serialize_call(call), [serialize_event(e) for e in events or []])
    except Exception:  # noqa: BLE001 - a page missing an update must never break a call
        log.exception("broadcast of call %s failed", call_id)
