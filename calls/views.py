"""Live call pages: the list of calls (/calls/live/) and one call (/calls/<id>/).

Staff only (``is_staff``; others go to the admin login), scoped to the user's
organisations: another organisation's call is a 404, never a 403. What a page
shows goes through ``calls.shaping`` — the same code that shapes the browser
sockets' messages — so a viewer's page never carries the patient's name, phone
or transcript. Pages render the current state; ``static/calls/live.js`` keeps
them current over ``/ws/calls/`` and ``/ws/calls/<id>/``.
"""

from __future__ import annotations

import statistics

import uuid

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from audit.models import AuditAction
from audit.services import record_request
from organizations import access, timefmt
from organizations.models import Direction

from . import labels, selectors
from .services import CallRefused, cancel_call
from .broadcast import serialize_call, serialize_event
from .models import CallStatus
from .shaping import event_key, shape_call, shape_event

MAX_IDS = 500

STATUS_LABELS = dict(CallStatus.choices)
DIRECTION_LABELS = dict(Direction.choices)


# --- presentation helpers (static/calls/live.js mirrors describe_event) -----------


def duration_seconds(call) -> int | None:
    """From answer (or start) to end (or now): the number a page ticks."""
    start = call.answered_at or call.started_at
    if start is None:
        return None
    end = call.ended_at or timezone.now()
    return max(0, int((end - start).total_seconds()))


def format_duration(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _status_label(value) -> str:
    return STATUS_LABELS.get(value, str(value or "").replace("_", " "))


EVENT_LABELS = {
    "bot_started": "Bot started",
    "joined": "Bot joined the room",
    "dialin_ready": "Ready for the caller",
    "dialin_connected": "Caller connected",
    "dialin_stopped": "Dial-in stopped",
    "dialin_warning": "Dial-in warning",
    "dialin_error": "Dial-in error",
    "dialout_attempt": "Dialing",
    "dialout_answered": "Answered",
    "dialout_connected": "Call connected",
    "dialout_stopped": "Dial-out stopped",
    "dialout_warning": "Dial-out warning",
    "dialout_error": "Dial-out error",
    "participant_left": "Participant left",
    "outcome": "Outcome",
    "ended": "Bot ended the call",
    "error": "Error",
    "bot_start_requested": "Bot start requested",
    "bot_start_unconfirmed": "Bot start unconfirmed",
    "start_retry": "Start retried",
    "room_delete_failed": "Room not deleted",
    "start_deferred": "Start deferred (bot runner at capacity)",
    "start_redispatched": "Start handed to a worker again",
    "next_attempt": "Next attempt scheduled",
    "scheduled": "Scheduled as a new attempt",
    "opt_out": "Patient asked not to be called",
    "opted_out": "Opted out: do-not-call set",
    "identity_verified": "Identity confirmed",
    "identity_failed": "Identity not confirmed",
    "tool": "Bot used a server tool",
}

def describe_event(event: dict) -> tuple[str, str]:
    """(label, detail) for one shaped event; keep in step with describe() in live.js."""
    kind = event.get("event") or ""
    data = event.get("data") or {}
    if kind == "status":
        label = f"{_status_label(data.get('from'))} → {_status_label(data.get('to'))}"
        detail = data.get("error") or data.get("reason") or ""
        return label, str(detail)
    label = EVENT_LABELS.get(kind, kind.replace("_", " ").capitalize())
    if kind == "dialout_attempt":
        attempt, most = data.get("attempt"), data.get("max_attempts")
        detail = f"attempt {attempt} of {most}" if attempt and most else (f"attempt {attempt}" if attempt else "")
    elif kind in ("dialout_error", "dialin_error"):
        detail = data.get("error") or ""
    elif kind == "error":
        detail = (data.get("message") or "") + (" (fatal)" if data.get("fatal") else "")
    elif kind in ("ended", "participant_left"):
        detail = data.get("reason") or ""
    elif kind == "outcome":
        detail = data.get("result") or ""
    elif kind == "start_retry":
        detail = data.get("error") or ""
    elif kind == "start_deferred":
        detail = f"tried again in {data.get('retry_in_s')} s" if data.get("retry_in_s") is not None else ""
    elif kind == "next_attempt":
        detail = f"attempt {data.get('attempt')} at {data.get('scheduled_for')}" if data.get("attempt") else ""
    elif kind == "tool":
        detail = (data.get("name") or "") + ("" if data.get("ok") else f" (refused: {data.get('error') or '?'})")
    elif kind == "opt_out":
        detail = {"dtmf": "by key", "voice": "by voice"}.get(data.get("via") or "", "")
    elif kind == "dtmf":
        detail = data.get("digits") or ""  # viewers' events no longer carry it (calls/shaping.py)
    else:
        detail = ""
    return label, str(detail)


def _timeline_entry(event: dict, at, tz: str = "") -> dict:
    label, detail = describe_event(event)
    to = (event.get("data") or {}).get("to", "")
    return {
        "key": event_key(event),
        "at": event.get("at"),
        "at_display": timefmt.in_zone(at, tz) if at else "",
        "kind": event.get("event"),
        "label": label,
        "detail": detail,
        "is_status": event.get("event") == "status",
        "to": to,
        "to_label": _status_label(to),
    }


def _page(request, template: str, context: dict):
    return render(
        request, template, {**admin.site.each_context(request), "is_nav_sidebar_enabled": False, **context}
    )


def _row(call, sees: bool) -> dict:
    shaped = shape_call(serialize_call(call), sees)
    seconds = duration_seconds(call)
    return {
        "call": call,
        "c": shaped,
        "url": shaped["url"],
        "status_label": _status_label(call.status),
        "direction_label": DIRECTION_LABELS.get(call.direction, call.direction),
        "duration": format_duration(seconds),
        "duration_start": shaped["answered_at"] or shaped["started_at"] or "",
        "is_final": call.is_final,
        "end_reason_label": labels.end_reason(call.end_reason),
        "consent_basis_label": call.get_consent_basis_display() if call.consent_basis else "",
        "attempt": f"{call.attempt} of {call.max_attempts}" if call.direction == Direction.DIAL_OUT else "",
        "rings": shaped.get("ring_times"),
    }


# --- views --------------------------------------------------------------------------


def _parse_ids(raw: str) -> list[str] | None:
    if not raw:
        return None
    ids = []
    for part in raw.split(",")[:MAX_IDS]:
        try:
            ids.append(str(uuid.UUID(part.strip())))
        except ValueError:
            continue
    return ids


@staff_member_required
def live_list(request):
    roles = access.roles_for(request.user)
    org_ids = list(roles)
    workflows = list(selectors.workflows_for(org_ids))

    workflow_id = None
    raw_workflow = request.GET.get("workflow", "")
    if raw_workflow.isdigit() and int(raw_workflow) in {w.pk for w in workflows}:
        workflow_id = int(raw_workflow)
    direction = request.GET.get("direction", "")
    if direction not in Direction.values:
        direction = ""
    session_ids = _parse_ids(request.GET.get("ids", ""))

    unfinished, finished = selectors.live_list(
        org_ids, workflow_id=workflow_id, direction=direction or None, session_ids=session_ids
    )
    scheduled = sorted((c for c in unfinished if c.status == CallStatus.SCHEDULED), key=lambda c: c.scheduled_for)
    unfinished = [c for c in unfinished if c.status != CallStatus.SCHEDULED]
    counts = selectors.waiting_counts(org_ids)
    sees = {org_id: access.sees_phi(request.user, org_id) for org_id in org_ids}
    return _page(
        request,
        "calls/live_list.html",
        {
            "title": "Live calls",
            "unfinished": [_row(c, sees.get(c.organization_id, False)) for c in unfinished],
            "scheduled": [_row(c, sees.get(c.organization_id, False)) for c in scheduled],
            "waiting_for_slot": sum(c["waiting"] for c in counts.values()),
            "scheduled_count": sum(c["scheduled"] for c in counts.values()),
            "finished": [_row(c, sees.get(c.organization_id, False)) for c in finished],
            "workflows": workflows,
            "show_org": len(org_ids) > 1,
            "org_names": {str(w.organization_id): w.organization.name for w in workflows},
            "org_zones": {str(w.organization_id): w.organization.timezone for w in workflows},
            "page_tz": next((w.organization.timezone for w in workflows), ""),
            "directions": Direction.choices,
            "selected_workflow": workflow_id,
            "selected_direction": direction,
            "session_ids": session_ids,
            "session_ids_param": ",".join(session_ids or []),
            "filtered": bool(workflow_id or direction or session_ids is not None),
            "can_place_calls": access.has_right(request.user, access.PLACE_CALLS),
        },
    )


def _visible_call(request, session_id):
    call = selectors.call_for(list(access.roles_for(request.user)), session_id)
    if call is None:
        raise Http404("No such call.")  # another organisation's call looks like no call
    return call


def _patient_zone_note(call) -> str:
    """"(patient 13:30 EST)" when the patient's clock differs from the organisation's."""
    if not call.patient_id or not call.created_at:
        return ""
    full = timefmt.with_patient(call.created_at, call.organization.timezone, call.patient.timezone)
    short = timefmt.in_zone(call.created_at, call.organization.timezone, timefmt.MINUTE)
    return full[len(short):].strip()


@staff_member_required
def call_detail(request, session_id):
    call = _visible_call(request, session_id)
    record_request(request, AuditAction.VIEW_CALL, call, via="page")
    sees = access.sees_phi(request.user, call.organization_id)
    shaped = shape_call(serialize_call(call), sees)
    timeline, attempts, turns = [], [], []
    for event in selectors.call_events(call):
        payload = shape_event(serialize_event(event), sees)
        if payload is None or payload["event"] == "transcript":
            continue
        if payload["event"] == "metrics":
            turn_ms = (payload.get("data") or {}).get("turn_ms")
            if isinstance(turn_ms, (int, float)) and not isinstance(turn_ms, bool):
                turns.append({"key": f"s{event.seq}", "ms": int(turn_ms), **{
                    k: v for k, v in payload["data"].items() if k in ("stt_ms", "llm_ttfb_ms", "tts_ttfb_ms")}})
        entry = _timeline_entry(payload, event.at, call.organization.timezone)
        timeline.append(entry)
        if entry["kind"] in ("dialout_attempt", "dialout_error", "dialout_answered", "dialout_stopped"):
            attempts.append(entry)
    transcript = None
    if sees:
        transcript = [
            {"key": f"s{line.get('seq')}" if line.get("seq") is not None else f"i{i}", **line}
            for i, line in enumerate(call.transcript or [])
            if isinstance(line, dict)
        ]
    row = _row(call, sees)
    chain = [
        {"call": c, "url": reverse("calls:detail", kwargs={"session_id": c.pk}), "current": c.pk == call.pk,
         "status_label": _status_label(c.status), "end_reason_label": labels.end_reason(c.end_reason)}
        for c in selectors.attempt_chain(call)
    ] if call.direction == Direction.DIAL_OUT else []
    next_attempt = selectors.next_attempt(call)
    return _page(
        request,
        "calls/call_detail.html",
        {
            "title": f"Call {str(call.pk)[:8]}",
            "call": call,
            "c": shaped,
            "row": row,
            "sees_phi": sees,
            "timeline": timeline,
            "attempts": attempts,
            "turns": turns,
            "median_turn_ms": round(statistics.median(t["ms"] for t in turns)) if turns else None,
            "transcript": transcript,
            "chain": chain if len(chain) > 1 or call.max_attempts > 1 else [],
            "next_attempt": next_attempt,
            "can_cancel": access.has_right(request.user, access.PLACE_CALLS, call.organization_id),
            "admin_url": reverse("admin:calls_callsession_change", args=[call.pk]),
            "patient_zone_note": _patient_zone_note(call),
        },
    )


@staff_member_required
@require_POST
def cancel(request, session_id):
    """Hang up (or cancel before it connects): staff and admins of the call's organisation."""
    call = _visible_call(request, session_id)
    if not access.has_right(request.user, access.PLACE_CALLS, call.organization_id):
        raise PermissionDenied("Only staff and admins may end calls.")
    was = call.status
    try:
        cancel_call(call, by_user=request.user)
    except CallRefused as exc:
        messages.error(request, f"The call was not ended: {exc.message}")
    else:
        verb = "Hung up" if was == CallStatus.IN_PROGRESS else "Canceled"
        messages.success(request, f"{verb} the call.")
    return HttpResponseRedirect(call.get_absolute_url())
