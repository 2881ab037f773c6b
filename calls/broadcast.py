"""What browsers hear about calls: the `call.update` / `call.event` messages.

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

import background as background_loop
from masking import mask_phone
from organizations import timefmt

from . import labels

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
        patient = {
            "id": None,
            "name": "Unknown caller",
            "masked_name": "Unknown caller",
            "phone": call.patient_phone,
            "masked_phone": mask_phone(call.patient_phone),
        }
    return {
        "session_id": str(call.pk),
        "url": call.get_absolute_url(),
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
        "end_reason_label": labels.end_reason(call.end_reason),
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
    patient_tz = getattr(call.patient, "timezone", "") if call.patient_id else ""
    clinic = timefmt.show(call.scheduled_for, organization.timezone)
    # "2026-12-08 09:00 clinic time", and the patient's clock only where it differs (said once).
    text = timefmt.with_patient(call.scheduled_for, organization.timezone, patient_tz, timefmt.DATETIME)
    return {"clinic": clinic, "text": f"{clinic} {timefmt.CLINIC_TIME}{text[len(clinic):]}"}


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
    process's background loop (``background``) without waiting, over a
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


def broadcast_call_sync(call, events: list[CallEvent] | None = None, *, background: bool = False) -> None:
    """Tell browsers about a call's state from sync code (tasks, services, admin).

    ``call``: its id (the call is read again), or a CallSession just read or
    made with its workflow and patient. ``background``: send from the
    process's background loop and do not wait (see ``deferred``).
    """
    call_id = call.pk if isinstance(call, CallSession) else call
    pending = getattr(_deferred, "pending", None)
    if pending is not None:
        pending.setdefault(str(call_id), []).extend(events or [])
        return
    try:
        if not isinstance(call, CallSession):
            call = load_call(call_id)
        if call is None:
            return
        payload, event_payloads = serialize_call(call), [serialize_event(e) for e in events or []]
        if background:
            background_loop.submit(send_call_messages(payload, event_payloads)).add_done_callback(
                background_loop.log_failure(f"broadcast of call {call_id}", log)
            )
        else:
            async_to_sync(send_call_messages)(payload, event_payloads)
    except Exception:  # noqa: BLE001 - a page missing an update must never break a call
        log.exception("broadcast of call %s failed", call_id)
