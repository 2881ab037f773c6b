"""What one person may see of a call: the serialized call and its events, shaped per role.

Pages (``calls.views``) and browser sockets (``calls.consumers``) both go through
here, so a viewer's page and a viewer's socket carry the same thing: the patient
masked, no transcript lines, no phone numbers or free text in event data, and of
the outcome only its result.
"""

from __future__ import annotations

from organizations import access
from masking import mask_phones

# Event data keys that may carry a person's details or free text from the call.
_PHI_KEYS = frozenset(
    {
        "text", "notes", "name", "first_name", "last_name", "full_name", "user_name", "userName",
        "phone", "phone_number", "phoneNumber", "from_phone", "to_phone", "from_number", "to_number",
        "caller", "callee", "sipFrom", "sipTo", "sip_from", "sip_to", "sipHeaders", "sip_headers",
        "patient", "patient_data", "data", "transcript",
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


def shape_call(call: dict, sees: bool) -> dict:
    """``calls.broadcast.serialize_call`` output, for someone who does (not) see PHI."""
    patient = call.get("patient") or {}
    shaped = {k: v for k, v in call.items() if k not in ("patient", "error", "outcome")}
    shaped["patient"] = {
        "id": patient.get("id"),
        "name": patient.get("name") if sees else patient.get("masked_name"),
        "phone": patient.get("phone") if sees else patient.get("masked_phone"),
    }
    error = call.get("error") or ""
    shaped["error"] = error if sees else mask_phones(error)
    outcome = call.get("outcome")
    if outcome and not sees:
        outcome = {"result": outcome.get("result") if isinstance(outcome, dict) else None}
    shaped["outcome"] = outcome
    shaped["sees_phi"] = sees
    return shaped


def shape_event(event: dict, sees: bool) -> dict | None:
    """One ``{seq, event, at, data}``; None when the recipient must not get it at all."""
    if sees:
        return event
    if event.get("event") == "transcript":
        return None  # viewers get no transcript lines
    data = event.get("data") or {}
    if event.get("event") == "outcome":
        data = {"result": data.get("result")}
    else:
        data = scrub(data)
    return {**event, "data": data}


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
