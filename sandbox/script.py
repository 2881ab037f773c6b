"""The simulated bot: a scripted call reported over the real status protocol.

It reads the same ``AgentRequest`` a real bot gets and reports through the real
``botkit.reporter.StatusReporter``, so the server cannot tell it from ``bot.py``
— only that nothing reaches a telephone. One short conversation per workflow
(by slug, with a generic one for the rest); how the call goes (answered, no
answer, voicemail, busy) is drawn at the rates the sandbox was given.

Imports no Django, like ``bot.py``.
"""

from __future__ import annotations

import asyncio
import random
from typing import Awaitable, Callable

from botkit.prompt import personalise
from botkit.reporter import StatusReporter
from botrunner.agent_request import AgentRequest

FATES = ("answered", "no_answer", "voicemail", "busy")

# slug → (lines after the greeting, preferred outcome result). The greeting is
# the workflow's own first message, personalised as the real bot does.
SCRIPTS: dict[str, tuple[list[tuple[str, str]], str]] = {
    "appointment-reminder": (
        [
            ("user", "Hi, yes, this is {first_name}."),
            ("assistant", "I'm calling to remind you of your appointment: {appointment}. Will you be able to make it?"),
            ("user", "Yes, I'll be there."),
            ("assistant", "Wonderful, I've noted that you'll attend. Thank you, goodbye!"),
        ],
        "confirmed",
    ),
    "triage-line": (
        [
            ("user", "Hello, I'd like a nurse to call me back about my prescription."),
            ("assistant", "Of course. A nurse will call you back today. Is this the best number to reach you?"),
            ("user", "Yes, it is. Thank you."),
            ("assistant", "You're welcome. Goodbye!"),
        ],
        "callback_requested",
    ),
}
GENERIC = (
    [
        ("user", "Hello?"),
        ("assistant", "Hello, I'm calling on behalf of {client_name}. Do you have a minute?"),
        ("user", "Yes, go ahead."),
        ("assistant", "Thank you, that's all for today. Goodbye!"),
    ],
    "",
)


def parse_rates(text: str) -> dict[str, float]:
    """``"answered=70,no_answer=10,voicemail=10,busy=10"`` → weights; unknown names are refused."""
    rates: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in FATES:
            raise ValueError(f"unknown call fate {name!r}: use {', '.join(FATES)}")
        rates[name] = float(value)
        if rates[name] < 0:
            raise ValueError(f"the rate of {name} must not be negative")
    if not rates or sum(rates.values()) <= 0:
        raise ValueError("give at least one positive rate, e.g. answered=1")
    return rates


def draw_fate(rates: dict[str, float], rng: random.Random) -> str:
    names = list(rates)
    return rng.choices(names, weights=[rates[n] for n in names])[0]


def _outcome_result(req: AgentRequest, preferred: str) -> str:
    allowed = list(req.workflow.outcome_results or [])
    if preferred and (not allowed or preferred in allowed):
        return preferred
    return allowed[0] if allowed else "completed"


async def run_call(
    req: AgentRequest,
    fate: str,
    *,
    step_s: float = 0.8,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    state: dict | None = None,
) -> list[dict]:
    """Play one call; returns the messages sent (for tests and logs).

    ``state["ended"]`` turns true once ``ended`` is queued: from then on the call
    only drains its reporter, and deleting its room no longer interrupts it.
    """
    state = {} if state is None else state
    reporter = StatusReporter(req.status_url, req.status_token)
    reporter.start()
    values = {**(req.patient_data or {}), "client_name": req.client_name}
    values.setdefault("first_name", "there")
    values.setdefault("appointment", "your upcoming appointment")
    lines, preferred = SCRIPTS.get(req.workflow.slug, GENERIC)

    def send(event: str, data: dict | None = None) -> int:
        if event == "ended":
            state["ended"] = True
        return reporter.send(event, data)

    async def converse() -> None:
        greeting = personalise(req.workflow.first_message or "Hello from {client_name}.", values)
        script = [("assistant", greeting)] + [(role, personalise(text, values)) for role, text in lines]
        if req.workflow.speaks_first == "callee":
            script = [("user", "Hello?")] + script
        for role, text in script:
            await sleep(step_s)
            send("transcript", {"role": role, "text": text})
        send("metrics", {"stt_ms": 180, "llm_ttfb_ms": 420, "tts_ttfb_ms": 210, "turn_ms": 820})
        send(
            "outcome",
            {"result": _outcome_result(req, preferred), "notes": "Simulated call (sandbox).", "data": {"simulated": True}},
        )
        await sleep(step_s / 2)
        send("ended", {"reason": "completed"})

    try:
        send("bot_started")
        await sleep(step_s / 2)
        send("joined")
        if req.dialin_settings is not None:
            send("dialin_ready", {"sip_endpoint": "sip:sandbox@sandbox.invalid"})
            await sleep(step_s)
            send("dialin_connected", {"callId": req.dialin_settings.call_id})
            await converse()
        else:
            send("dialout_attempt", {"attempt": 1, "max_attempts": req.workflow.max_dialout_attempts})
            await sleep(step_s * 2)  # ringing
            if fate == "answered":
                send("dialout_answered", {"sessionId": "sandbox"})
                await converse()
            elif fate == "voicemail":
                send("dialout_answered", {"sessionId": "sandbox"})
                await sleep(step_s)
                send("voicemail_detected")
                send("ended", {"reason": "voicemail", "message_left": False})
            elif fate == "busy":
                send("ended", {"reason": "busy"})
            else:
                await sleep(step_s * 2)
                send("ended", {"reason": "no_answer"})
    finally:
        await reporter.close(timeout=5.0)
    return list(reporter.messages)
