"""What one person may see of a call: the serialized call and its events, shaped per role.

Pages (``calls.views``) and browser sockets (``calls.consumers``) both go through
here, so a viewer's page and a viewer's socket carry the same thing: the patient
masked, no transcript lines, of event data only the allow-listed fields, and
of the outcome only its result (docs/architecture.md, "Roles").
"""

from __future__ import annotations

import re

from masking import mask_phones
from organizations import access

# Event data keys that may carry a person's details or free text from the call.
_PHI_KEYS = frozenset(
    {
        "text", "notes", "name", "first_name", "last_name", "full_name", "user_name", "userName",
        "phone", "phone_number", "phoneNumber", "from_phone", "to_phone", "from_number", "to_number",
        "caller", "callee", "sipFrom", "sipTo", "sip_from", "sip_to", "sipHeaders", "sip_headers",
        "patient", "patient_data", "data", "transcript",
        "digits",  # keypad entries (a date of birth, a PIN): never shown to viewers
    }
)
def scrub(value, depth: int = 0):
    """Viewer-safe copy of event data: PHI keys dropped, phone-like strings masked."""
    if depth > 6:
        return None
    if isinstance(value, dict):
        return {k: scrub(v, depth + 1) for k, v in value.items() if k not in _PHI_KEYS}
    if isinstance(value, list):
        return [scrub(v, depth + 1) for v in value[:50]]
    if isinstance(value, str):
        return mask_phones(value)
    return value


# What a viewer receives is built from these allow-lists (docs/architecture.md "Security
# rules"), never by removing known keys: a key a bot or a new feature adds
# reaches viewers only once it is listed here.
VIEWER_CALL_FIELDS = (
    "session_id", "organization_id", "status", "status_display", "direction", "workflow",
    "created_at", "started_at", "answered_at", "ended_at", "end_reason", "end_reason_label", "dialout_attempts", "url",
)
VIEWER_WORKFLOW_FIELDS = ("id", "slug", "name")
VIEWER_EVENT_FIELDS: dict[str, frozenset] = {
    "status": frozenset({"from", "to", "reason", "error"}),
    "dialout_attempt": frozenset({"attempt", "max_attempts"}),
    "dialout_error": frozenset({"attempt", "error", "kind"}),  # kind: busy, declined, no_answer, technical
    "dialin_error": frozenset({"attempt", "error"}),
    "participant_left": frozenset({"reason"}),
    "outcome": frozenset({"result"}),
    "ended": frozenset({"reason", "message_left"}),
    "error": frozenset({"fatal"}),
    "metrics": frozenset({"stt_ms", "llm_ttfb_ms", "tts_ttfb_ms", "turn_ms"}),
    "invalid_message": frozenset({"reason", "seq"}),
}
# Events a viewer does not receive at all.
VIEWER_HIDDEN_EVENTS = frozenset({"transcript"})
# Error text written by the server or by Daily (a reason a person can act on):
# passed with phone-like strings masked. Every other string must look like a code.
_SERVER_TEXT = {("status", "error"), ("invalid_message", "reason"), ("dialout_error", "error"),
                ("dialin_error", "error")}
_CODE_RE = re.compile(r"^[a-z0-9_]{1,40}$")


def _viewer_value(kind: str, key: str, value):
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        if (kind, key) in _SERVER_TEXT:
            return mask_phones(value)[:500]
        return value if _CODE_RE.match(value) else None
    return None  # objects and lists: never for viewers


def viewer_event_data(kind: str, data) -> dict:
    """The allow-listed part of one event's data."""
    if not isinstance(data, dict):
        return {}
    allowed = VIEWER_EVENT_FIELDS.get(kind, frozenset())
    shaped = {}
    for key in allowed:
        if key in data:
            value = _viewer_value(kind, key, data[key])
            if value is not None:
                shaped[key] = value
    return shaped


def shape_call(call: dict, sees: bool) -> dict:
    """``calls.broadcast.serialize_call`` output, for someone who does (not) see PHI."""
    patient = call.get("patient") or {}
    if sees:
        shaped = {k: v for k, v in call.items() if k != "patient"}
        shaped["patient"] = {"id": patient.get("id"), "name": patient.get("name"), "phone": patient.get("phone")}
        shaped["sees_phi"] = True
        return shaped
    shaped = {k: call[k] for k in VIEWER_CALL_FIELDS if k in call}
    if isinstance(shaped.get("workflow"), dict):
        shaped["workflow"] = {k: shaped["workflow"].get(k) for k in VIEWER_WORKFLOW_FIELDS}
    shaped["patient"] = {"id": patient.get("id"), "name": patient.get("masked_name"),
                         "phone": patient.get("masked_phone")}
    shaped["error"] = mask_phones(call.get("error") or "")
    outcome = call.get("outcome")
    shaped["outcome"] = viewer_event_data("outcome", outcome) if isinstance(outcome, dict) else None
    shaped["sees_phi"] = False
    return shaped


def shape_event(event: dict, sees: bool) -> dict | None:
    """One ``{seq, event, at, data}``; None when the recipient must not get it at all."""
    if sees:
        return event
    kind = event.get("event")
    if kind in VIEWER_HIDDEN_EVENTS:
        return None  # viewers get no transcript lines
    return {"seq": event.get("seq"), "event": kind, "at": event.get("at"),
            "data": viewer_event_data(kind, event.get("data"))}


def shape_call_for(user, call: dict) -> dict:
    return shape_call(call, access.sees_phi(user, call["organization_id"]))


def shape_event_for(user, organization_id, event: dict) -> dict | None:
    return shape_event(event, access.sees_phi(user, organization_id))


def event_key(event: dict) -> str:
    """Identifies one event on a page, so a replayed snapshot does not show it twice."""
    if event.get("seq") is not None:
        return f"s{event['seq']}"
    data = event.get("data") or {}
    if event.get("event") == "status":
        # A call reaches each status at most once (the state machine has no cycles),
        # so a page that learns of a move from a `call.update` keys it the same way.
        return f"st{data.get('to', '')}"
    return f"t{event.get('at')}|{event.get('event')}"
