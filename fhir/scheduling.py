"""Scheduling during the call: confirm, cancel, find free slots, book one.

The bot never talks to the EHR: it asks the server (``fhir/bot_tools.py``)
and the server acts on the one appointment the call is about — through the
FHIR connection when it allows writes (``Slot`` search, ``Appointment`` update
with If-Match), else through a signed tool webhook to the organisation's own
system (Standard Webhooks). Only slots offered on this call may be booked;
nothing about the patient's other appointments or other patients is answered.

Each tool call is stored once per (call, tool, key) in ``ToolCall``: a request
the bot sends again gets the stored answer, never a second booking. An EHR
that is slow or down answers ``{"ok": false, "reason": "callback"}``: the bot
says staff will call back, and the call records ``callback_requested``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import uuid

import httpx
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from standardwebhooks import Webhook

from calls import policy
from calls.models import CallEvent

from .client import Conflict, FhirClient, FhirError, http
from .models import FhirAppointment, LinkStatus, ToolCall
from .sync import _instant

log = logging.getLogger(__name__)

SLOTS_OFFERED = 3
SLOT_SEARCH_DAYS = 14
CALLBACK = {"ok": False, "reason": "callback",
            "say": "I could not reach the schedule just now. Someone from the clinic will call you back."}


class NoAppointment(Exception):
    """The call is about no appointment we can act on (or the EHR takes no changes)."""


def appointment_for(call) -> FhirAppointment:
    link = FhirAppointment.objects.select_related("connection", "patient").filter(call_id=call.pk).first()
    if link is None:
        raise NoAppointment("This call is not about an EHR appointment.")
    if link.status == LinkStatus.CANCELLED and link.call_result != "cancelled":
        raise NoAppointment("The appointment was cancelled in the EHR.")
    connection = link.connection
    if not connection.is_active or not (connection.allow_writes or connection.tool_webhook_url):
        raise NoAppointment("This organisation's EHR takes no changes during calls.")
    return link


def spoken(moment: dt.datetime, link: FhirAppointment) -> str:
    local = moment.astimezone(policy.patient_zone(link.patient, link.connection.organization))
    return local.strftime("%A %B %-d at %-I:%M %p")


def _appointment_answer(link: FhirAppointment) -> dict:
    return {"status": link.call_result or "booked", "start": link.start.isoformat(), "text": spoken(link.start, link)}


def _record_change(call, link: FhirAppointment, change: str) -> None:
    """The call's own record of what changed: the call.ended webhook and the outcome read it."""
    FhirAppointment.objects.filter(pk=link.pk).update(
        call_result=change, start=link.start, end=link.end,
        status=LinkStatus.CANCELLED if change == "cancelled" else LinkStatus.BOOKED,
    )
    link.call_result = change
    CallEvent.objects.create(call_id=call.pk, at=timezone.now(), kind="appointment", data={
        "appointment_id": link.fhir_id, "change": change, "start": link.start.isoformat(),
        "end": link.end.isoformat() if link.end else None,
    })


def _callback(call, tool: str) -> dict:
    CallEvent.objects.create(call_id=call.pk, at=timezone.now(), kind="callback_requested", data={"tool": tool})
    return dict(CALLBACK)


# --- through FHIR -------------------------------------------------------------------------


def _update_appointment(client: FhirClient, link: FhirAppointment, change) -> dict:
    """Read, change, PUT with If-Match; a 412 reads again and re-applies ``change``."""
    for _ in range(3):
        resource, etag = client.read("Appointment", link.fhir_id)
        change(resource)
        try:
            return client.update(resource, etag)
        except Conflict:
            continue
    raise Conflict(f"{link.reference} kept changing.", 412)


def _set_patient_status(resource: dict, link: FhirAppointment, status: str) -> None:
    for participant in resource.get("participant") or []:
        if (participant.get("actor") or {}).get("reference") == f"Patient/{link.patient_fhir_id}":
            participant["status"] = status


def fhir_confirm(client: FhirClient, link: FhirAppointment) -> None:
    _update_appointment(client, link, lambda r: _set_patient_status(r, link, "accepted"))


def fhir_cancel(client: FhirClient, link: FhirAppointment, reason: str) -> None:
    def cancel(resource):
        resource["status"] = "cancelled"
        resource["cancelationReason"] = {"text": reason or "Cancelled by the patient on a reminder call"}
        _set_patient_status(resource, link, "declined")

    _update_appointment(client, link, cancel)


def _schedule_of(client: FhirClient, link: FhirAppointment) -> str:
    if link.connection.schedule_reference:
        return link.connection.schedule_reference
    resource, _ = client.read("Appointment", link.fhir_id)
    for ref in resource.get("slot") or []:
        slot, _ = client.read("Slot", ref["reference"].split("/", 1)[1])
        return slot["schedule"]["reference"]
    raise NoAppointment("The EHR says nothing about which schedule this appointment is on.")


def fhir_free_slots(client: FhirClient, link: FhirAppointment, after: dt.datetime, before: dt.datetime,
                    exclude=()) -> list[dict]:
    params = {"schedule": _schedule_of(client, link), "status": "free",
              "start": [f"ge{after.isoformat()}", f"lt{before.isoformat()}"], "_count": str(SLOTS_OFFERED + len(exclude))}
    bundle = next(client.search("Slot", params))
    slots = [e["resource"] for e in bundle.get("entry") or [] if e.get("resource", {}).get("resourceType") == "Slot"]
    return [s for s in slots if s["id"] not in exclude][:SLOTS_OFFERED]


def fhir_book(client: FhirClient, link: FhirAppointment, slot_id: str) -> dict:
    """Take the slot (If-Match: 409/412 when someone took it first), then move the appointment onto it."""
    slot, etag = client.read("Slot", slot_id)
    if slot.get("status") != "free":
        raise Conflict(f"Slot/{slot_id} is {slot.get('status')}.", 409)
    client.update({**slot, "status": "busy"}, etag)
    old_slots = []

    def move(resource):
        old_slots[:] = [r["reference"] for r in resource.get("slot") or [] if r["reference"] != f"Slot/{slot_id}"]
        resource["start"], resource["end"] = slot["start"], slot["end"]
        resource["slot"] = [{"reference": f"Slot/{slot_id}"}]
        resource["status"] = "booked"
        _set_patient_status(resource, link, "accepted")

    _update_appointment(client, link, move)
    for ref in old_slots:  # best effort: the EHR may free it itself
        try:
            old, old_etag = client.read("Slot", ref.split("/", 1)[1])
            client.update({**old, "status": "free"}, old_etag)
        except FhirError as exc:
            log.info("could not free %s after a move: %s", ref, exc)
    return slot


# --- through the organisation's tool webhook ----------------------------------------------


def webhook_call(link: FhirAppointment, call, action: str, data: dict) -> tuple[int, dict]:
    """POST one signed request (Standard Webhooks) with a short timeout; (status, JSON answer).

    Raises FhirError on a timeout or no answer."""
    connection = link.connection
    message_id = "msg_" + uuid.uuid4().hex
    now = timezone.now()
    body = json.dumps({"type": f"appointment.{action}", "timestamp": now.isoformat(), "data": {
        "session_id": str(call.pk), "appointment_id": link.fhir_id, "patient_id": link.patient_fhir_id,
        "external_id": link.patient.external_id, **data,
    }}, separators=(",", ":"), sort_keys=True)
    headers = {
        "Content-Type": "application/json", "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(connection.tool_webhook_secret).sign(message_id, now, body),
    }
    try:
        response = http().post(connection.tool_webhook_url, content=body, headers=headers,
                               timeout=settings.FHIR_TOOL_TIMEOUT_S)
    except httpx.TimeoutException:
        raise FhirError("The tool webhook did not answer in time.") from None
    except httpx.HTTPError as exc:
        raise FhirError(f"Could not reach the tool webhook ({type(exc).__name__}).") from None
    try:
        answer = response.json() if response.content else {}
    except ValueError:
        answer = {}
    if response.status_code >= 500:
        raise FhirError(f"The tool webhook answered {response.status_code}.", response.status_code)
    return response.status_code, answer if isinstance(answer, dict) else {}


# --- the four tools -----------------------------------------------------------------------


def _key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]


def run_tool(call, tool: str, key: str, arguments: dict, action) -> dict:
    """Once per (call, tool, key): a stored success is answered again; otherwise ``action(link)`` runs."""
    link = appointment_for(call)
    stored = ToolCall.objects.filter(call=call, tool=tool, key=key).first()
    if stored is not None and stored.ok:
        return stored.result
    started = time.monotonic()
    via = "fhir" if link.connection.allow_writes else "webhook"
    try:
        result = action(link, via)
    except FhirError as exc:
        log.warning("call %s: tool %s could not reach the EHR: %s", call.pk, tool, exc)
        result = _callback(call, tool)
    ok = bool(result.get("ok"))
    values = {"organization_id": call.organization_id, "appointment": link, "arguments": arguments,
              "result": result, "ok": ok, "via": via, "duration_ms": int((time.monotonic() - started) * 1000)}
    if stored is None:
        try:
            with transaction.atomic():
                ToolCall.objects.create(call=call, tool=tool, key=key, **values)
        except IntegrityError:
            ToolCall.objects.filter(call=call, tool=tool, key=key).update(**values)
    else:
        ToolCall.objects.filter(pk=stored.pk).update(**values)
    return result


def confirm_appointment(call) -> dict:
    def action(link, via):
        if via == "fhir":
            fhir_confirm(FhirClient(link.connection, timeout=settings.FHIR_TOOL_TIMEOUT_S), link)
        else:
            status, _ = webhook_call(link, call, "confirm", {})
            if status >= 400:
                return {"ok": False, "reason": "refused", "say": "I could not confirm it; the clinic will call you."}
        _record_change(call, link, "confirmed")
        return {"ok": True, "appointment": _appointment_answer(link)}

    return run_tool(call, "confirm_appointment", "appointment", {}, action)


def cancel_appointment(call, reason: str = "") -> dict:
    def action(link, via):
        if via == "fhir":
            fhir_cancel(FhirClient(link.connection, timeout=settings.FHIR_TOOL_TIMEOUT_S), link, reason)
        else:
            status, _ = webhook_call(link, call, "cancel", {"reason": reason})
            if status >= 400:
                return {"ok": False, "reason": "refused", "say": "I could not cancel it; the clinic will call you."}
        _record_change(call, link, "cancelled")
        return {"ok": True, "appointment": _appointment_answer(link)}

    return run_tool(call, "cancel_appointment", "appointment", {}, action)


def _slot_answer(slot: dict, link: FhirAppointment) -> dict | None:
    start = _instant(slot.get("start"))
    if start is None:
        return None
    return {"slot_id": str(slot.get("slot_id") or slot.get("id")), "start": start.isoformat(),
            "text": spoken(start, link)}


def _window(after: dt.date | None, before: dt.date | None, link) -> tuple[dt.datetime, dt.datetime]:
    zone = policy.patient_zone(link.patient, link.connection.organization)
    now = timezone.now()
    begin = max(now, dt.datetime.combine(after, dt.time(0), tzinfo=zone)) if after else now
    end = dt.datetime.combine(before, dt.time(0), tzinfo=zone) + dt.timedelta(days=1) if before \
        else begin + dt.timedelta(days=SLOT_SEARCH_DAYS)
    return begin, end


def find_slots(call, after: dt.date | None = None, before: dt.date | None = None) -> dict:
    def action(link, via):
        begin, end = _window(after, before, link)
        if via == "fhir":
            raw = fhir_free_slots(FhirClient(link.connection, timeout=settings.FHIR_TOOL_TIMEOUT_S), link, begin, end)
        else:
            status, answer = webhook_call(link, call, "find_slots", {"after": begin.isoformat(), "before": end.isoformat()})
            raw = answer.get("slots") or [] if status < 400 else []
        slots = [s for s in (_slot_answer(r, link) for r in raw[:SLOTS_OFFERED] if isinstance(r, dict)) if s]
        return {"ok": True, "slots": slots}

    return run_tool(call, "find_slots", _key(after=after, before=before),
                    {"after": str(after or ""), "before": str(before or "")}, action)


def offered_slots(call) -> dict[str, dict]:
    """The slots this call was offered (only these may be booked)."""
    offered = {}
    for result in ToolCall.objects.filter(call=call, tool__in=("find_slots", "book_slot"), ok__in=(True, False)) \
            .values_list("result", flat=True):
        for slot in (result or {}).get("slots") or []:
            offered[slot["slot_id"]] = slot
        if (result or {}).get("next_slot"):
            offered[result["next_slot"]["slot_id"]] = result["next_slot"]
    return offered


def book_slot(call, slot_id: str) -> dict:
    offered = offered_slots(call)
    if slot_id not in offered:
        raise NoAppointment("Only a slot offered on this call (find_slots) can be booked.")

    def taken(link, client_or_none, tried):
        """The next free slot after the one that went, offered instead."""
        begin = _instant(offered[slot_id]["start"]) or timezone.now()
        if client_or_none is not None:
            raw = fhir_free_slots(client_or_none, link, max(begin, timezone.now()), begin + dt.timedelta(
                days=SLOT_SEARCH_DAYS), exclude=tried)
        else:
            status, answer = webhook_call(link, call, "find_slots", {"after": begin.isoformat(), "before": (
                begin + dt.timedelta(days=SLOT_SEARCH_DAYS)).isoformat()})
            raw = [s for s in answer.get("slots") or [] if str(s.get("slot_id") or s.get("id")) not in tried]
        nxt = _slot_answer(raw[0], link) if raw else None
        return {"ok": False, "reason": "slot_taken", "next_slot": nxt,
                "say": "That time was just taken." + (f" The next one is {nxt['text']}." if nxt else "")}

    def action(link, via):
        if via == "fhir":
            client = FhirClient(link.connection, timeout=settings.FHIR_TOOL_TIMEOUT_S)
            try:
                slot = fhir_book(client, link, slot_id)
            except Conflict:
                return taken(link, client, {slot_id})
        else:
            status, answer = webhook_call(link, call, "book_slot", {"slot_id": slot_id})
            if status in (409, 412):
                return taken(link, None, {slot_id})
            if status >= 400:
                return {"ok": False, "reason": "refused", "say": "I could not book it; the clinic will call you."}
            slot = {"start": answer.get("start") or offered[slot_id]["start"], "end": answer.get("end")}
        link.start = _instant(slot["start"])
        link.end = _instant(slot.get("end"))
        _record_change(call, link, "rescheduled")
        return {"ok": True, "appointment": _appointment_answer(link)}

    return run_tool(call, "book_slot", f"slot:{slot_id}", {"slot_id": slot_id}, action)
