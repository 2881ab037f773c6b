"""What a sandbox call is: the real bot on a simulated line, with a simulated patient.

Each ``/start`` the sandbox gets becomes one call simulator scenario
(``botkit.simulate``): the ``AgentRequest`` exactly as the server sent it (so
the bot reports to the server's real status socket with the token in it), a
way the call goes drawn at the sandbox's rates, and a patient who speaks
through espeak-ng. The fake OpenAI answers with its ``auto`` policy: the bot
greets, asks, records an outcome and says goodbye.

Imports no Django.
"""

from __future__ import annotations

import random
import shutil
from typing import Any

from botkit.simulate import Scenario

FATES = ("answered", "no_answer", "voicemail", "busy")

# What the simulated patient says on an answered call. The second line carries no
# answer, so the bot asks its question; the third answers it.
ANSWERED = [
    {"say": "Hello?"},
    {"wait_for_bot": 0.8},
    {"say": "Oh, hi. Go ahead."},
    {"wait_for_bot": 0.8},
    {"say": "Yes, I'll be there."},
    {"wait_for_bot": 1.5},
]
MAILBOX = [
    {"say": "You have reached the voicemail of this number. Please leave a message after the tone."},
    {"beep": True},
    {"silence_s": 15},
    {"hangup": True},
]
RING_S = {"answered": 2.0, "voicemail": 2.0, "busy": 2.0, "no_answer": 8.0}
CALL_TIMEOUT_S = 150.0


class SpeechMissing(RuntimeError):
    """The simulated patient cannot speak without espeak-ng."""


def check_speech() -> None:
    if shutil.which("espeak-ng") is None:
        raise SpeechMissing(
            "espeak-ng is not installed: the simulated patient speaks through it "
            "(make demo installs it; or apt-get install espeak-ng)"
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


def scenario_for(body: dict[str, Any], fate: str) -> Scenario:
    """The scenario that plays ``body`` (a valid ``AgentRequest``) the way ``fate`` says."""
    dial_in = body.get("dialin_settings") is not None
    if dial_in:
        # A caller: no ringing, no mailbox; they wait for the greeting unless they speak first.
        bot_first = (body.get("workflow") or {}).get("speaks_first", "bot") == "bot"
        callee = ([{"wait_for_bot": 0.8}] if bot_first else [{"say": "Hello?"}, {"wait_for_bot": 0.8}])
        callee += ANSWERED[2:]
        return Scenario.model_validate({"direction": "dial_in", "agent_request": body, "callee": callee,
                                        "llm": "auto", "timeout_s": CALL_TIMEOUT_S})
    result = "answered" if fate in ("answered", "voicemail") else fate
    return Scenario.model_validate({
        "direction": "dial_out",
        "agent_request": body,
        "dialout": {"result": result, "after_s": RING_S[fate]},
        "callee": MAILBOX if fate == "voicemail" else ANSWERED if fate == "answered" else [],
        "llm": "auto",
        "timeout_s": CALL_TIMEOUT_S,
    })
