"""The system prompt and the tools the LLM gets, from the AgentRequest alone."""

from __future__ import annotations

import re
from typing import Any

_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

DEFAULT_GOODBYE = "Thank you for your time. Goodbye!"
MAX_DURATION_GOODBYE = "I'm sorry, we've reached the time limit for this call. Thank you, goodbye!"
STILL_THERE = "Are you still there?"
SILENCE_GOODBYE = "I can't hear anyone, so I'll end the call now. Goodbye!"
APOLOGY = "I'm sorry, I'm having technical trouble and have to end this call. Please call us back. Goodbye!"
TRANSFER_MESSAGE = "Of course. Please hold while I connect you to a member of our staff."
TRANSFER_FAILED = (
    "I'm sorry, I couldn't connect you to a member of our staff just now. "
    "Someone from the clinic will call you back as soon as possible. Goodbye!"
)

# The only names a voicemail message may use: nothing about the patient, since
# whoever plays the mailbox back is not known to be the patient.
VOICEMAIL_PLACEHOLDERS = ("clinic", "callback_number")


class SafeDict(dict):
    """``format_map`` helper: unknown ``{placeholders}`` stay as they are."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)


def personalise(template: str, values: dict[str, Any]) -> str:
    """``template`` with ``{name}`` placeholders filled from ``values``.

    ``str.format_map`` with a dict that leaves unknown names alone; a template
    ``format`` cannot parse (a stray brace, ``{0}``, ``{a.b}``) falls back to
    replacing plain ``{name}`` placeholders only, so a typo in a workflow never
    stops a call.
    """
    if not template:
        return ""
    safe = SafeDict({k: _text(v) for k, v in values.items()})
    try:
        return template.format_map(safe)
    except (ValueError, IndexError, KeyError, AttributeError, TypeError):
        return _PLACEHOLDER_RE.sub(lambda m: safe[m.group(1)], template)


def _placeholder_values(req: Any) -> dict[str, Any]:
    values: dict[str, Any] = dict(req.patient_data or {})
    values.setdefault("client_name", req.client_name)
    values.setdefault("organization", req.client_name)
    values.setdefault("workflow_name", req.workflow.name)
    return values


def build_system_prompt(req: Any) -> str:
    """The workflow's instructions, personalised, plus what every call needs to know."""
    wf = req.workflow
    values = _placeholder_values(req)
    parts: list[str] = []

    org = req.client_name or "the organisation"
    if req.is_dialin:
        parts.append(f"You are a voice assistant answering the phone for {org}.")
    else:
        parts.append(f"You are a voice assistant calling a patient on behalf of {org}.")

    instructions = personalise(wf.instructions, values).strip()
    if instructions:
        parts.append(instructions)

    if req.patient_data:
        lines = [f"- {k}: {_text(v)}" for k, v in req.patient_data.items()]
        parts.append(
            "What we know about the person on the call (use it to personalise the "
            "conversation; confirm identity before discussing anything private):\n"
            + "\n".join(lines)
        )
    elif req.is_dialin:
        parts.append("The caller is not yet known to us.")

    if wf.speaks_first == "callee" and wf.first_message:
        opening = personalise(wf.first_message, values)
        parts.append(f"Let the other person speak first; then open with: \"{opening}\"")

    outcome = "When the purpose of the call is settled, call the record_outcome function"
    if wf.outcome_results:
        outcome += " with one of: " + ", ".join(wf.outcome_results)
    parts.append(
        outcome + ". When the conversation is over, call the end_call function; it says "
        "goodbye and hangs up for you."
    )
    if wf.transfer_number:
        parts.append(
            "If the person asks to speak to a human or a member of staff, call the "
            "transfer_to_human function."
        )
    language = getattr(wf, "language", "")
    if language:
        parts.append(
            f"Speak in the language with the code {language!r}, unless the person asks for another one."
        )
    parts.append(
        "This is a phone call: keep replies short and conversational, use plain "
        "sentences (no lists, markdown, emojis or special characters), and never "
        "read these instructions aloud."
    )
    return "\n\n".join(parts)


def voicemail_message(req: Any) -> str:
    """The workflow's voicemail message with ``{clinic}`` and ``{callback_number}`` filled.

    Only those two names are filled; anything else stays as written (the server
    refuses to save other placeholders), so no patient value can get in.
    """
    values = {"clinic": req.client_name, "callback_number": getattr(req, "callback_number", "")}
    return personalise(req.workflow.voicemail_message or "", values).strip()


def first_message(req: Any) -> str:
    """What the bot says first when it speaks first ('' to let the LLM open)."""
    return personalise(req.workflow.first_message, _placeholder_values(req)).strip()


def goodbye(req: Any) -> str:
    text = (req.workflow.config or {}).get("goodbye") or DEFAULT_GOODBYE
    return personalise(str(text), _placeholder_values(req))


def record_outcome_properties(outcome_results: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "type": "string",
        "description": "The outcome of the call.",
    }
    if outcome_results:
        result["enum"] = list(outcome_results)
    return {
        "result": result,
        "notes": {"type": "string", "description": "A short note for the staff about the call."},
        "data": {
            "type": "object",
            "description": "Structured details gathered during the call (e.g. a chosen appointment time).",
        },
    }


TRANSFER_PROPERTIES: dict[str, Any] = {
    "reason": {"type": "string", "description": "Why the person wants to speak to a human."}
}

END_CALL_PROPERTIES: dict[str, Any] = {
    "goodbye": {
        "type": "string",
        "description": "Optional short goodbye sentence to say before hanging up.",
    }
}
