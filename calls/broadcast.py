"""What browsers hear about calls: DESIGN.md's `call.update` / `call.event` messages.

Sent on the channel-layer groups `call.<session id>` and `org.<organization id>`;
browser consumers shape each message for their recipient's role before sending.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import contextmanager

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from botrunner import http
from organizations.masking import mask_phone

from .models import CallEvent, CallSession
from .policy import zone_named

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
        "campaign_id": call.campaign_id,
        # The call policy: when it rings, which attempt, whether it waits for a slot.
        "scheduled_for": _iso(call.scheduled_for),
        "ring_times": ring_times(call),
        "attempt": call.attempt,
        "max_attempts": call.max_attempts,
        "previous_attempt": str(call.previous_attempt_id) if call.previous_attempt_id else None,
        "waiting_for_slot": call.status == "queued" and call.direction == "dial_out" and call.dispatched_at is None,
        "start_deferrals": call.start_deferrals,
    }


def ring_times(call: CallSession) -> dict | None:
    """A scheduled call's ring time on the patient's clock and the clinic's (for pages)."""
    if call.scheduled_for is None or call.status != "scheduled":
        return None
    organization = call.organization
    patient_zone = zone_named(getattr(call.patient, "timezone", "") if call.patient_id else "", organization.timezone)
    clinic_zone = zone_named(organization.timezone)
    local, clinic = call.scheduled_for.astimezone(patient_zone), call.scheduled_for.astimezone(clinic_zone)
    return {
        "patient": f"{local:%a %d %b %H:%M} ({patient_zone.key})",
        "clinic": f"{clinic:%a %d %b %H:%M} ({clinic_zone.key})",
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
        # Both groups at once (each still gets the messages in order): one
        # channel-layer round trip per message instead of two.
        await asyncio.gather(*(layer.group_send(group, message) for group in groups))
    message = {"type": "call.update", "call": call_payload}
    await asyncio.gather(*(layer.group_send(group, message) for group in groups))


def load_call(call_id) -> CallSession | None:
    return CallSession.objects.select_related("organization", "workflow", "patient").filter(pk=call_id).first()


_deferred = threading.local()


@contextmanager
def deferred(*, background: bool = False):
    """Hold this thread's ``broadcast_call_sync`` calls and send them on exit,
    one per call (its latest state, every event in order).

    The start task runs inside it: a broadcast costs a query and a channel-layer
    round trip (~6 ms measured, bench/RESULTS.md), which must not sit on a
    dial-in caller's hold time. With ``background`` the messages go out from the
    process's long-lived loop (``botrunner.http``) without waiting, over a
    channel-layer connection that stays open, instead of a new event loop and
    connection per broadcast (a Celery worker's case). Nested uses join the
    outermost one.
    """
    if getattr(_deferred, "pending", None) is not None:
        yield
        return
    pending: dict[str, list[CallEvent]] = {}
    _deferred.pending = pending
    try:
        yield
    finally:
        _deferred.pending = None
        for call_id, events in pending.items():
            broadcast_call_sync(call_id, events, background=background)


def _log_failure(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("broadcast failed: %s", future.exception())


def broadcast_call_sync(call_id, events: list[CallEvent] | None = None, *, background: bool = False) -> None:
    """Tell browsers about a call's state from sync code (tasks, services, admin).

    ``background``: send from the process's long-lived loop and do not wait
    (see ``deferred``).
    """
    pending = getattr(_deferred, "pending", None)
    if pending is not None:
        pending.setdefault(str(call_id), []).extend(events or [])
        return
    try:
        call = load_call(call_id)
        if call is None:
            return
        payload, event_payloads = serialize_call(call), [serialize_event(e) for e in events or []]
        if background:
            http.submit(send_call_messages(payload, event_payloads)).add_done_callback(_log_failure)
        else:
            async_to_sync(send_call_messages)(payload, event_payloads)
    except Exception:  # noqa: BLE001 - a page missing an update must never break a call
        log.exception("broadcast of call %s failed", call_id)
