"""Errors that tell the start task what to do next.

The class says whether a retry is safe; ``reason`` is a sentence a clinic staff
member or an engineer can act on and is what the call records as its failure.
``body`` is the remote answer, truncated: it goes to logs and events, so it
must never carry what we sent (patient data) — only what the API answered.
"""

from __future__ import annotations

from masking import mask_phones

BODY_LIMIT = 1000


class BotRunnerError(Exception):
    """A fault talking to Daily, Pipecat Cloud or the local bot runner."""

    def __init__(self, reason: str, *, status: int | None = None, body: str = "") -> None:
        reason = mask_phones(reason)
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.body = mask_phones((body or "")[:BODY_LIMIT])

    def __str__(self) -> str:
        if self.status is None:
            return self.reason
        return f"{self.reason} (HTTP {self.status})"


class TransientError(BotRunnerError):
    """Nothing happened remotely, or repeating it is harmless: retry with backoff."""


class AmbiguousStartError(BotRunnerError):
    """The bot may have started: never retry (a second start rings the patient twice)."""


class PermanentError(BotRunnerError):
    """Retrying will not help: fail the call now with ``reason``."""


# Why each setting a start needs matters, said once: the check before a call
# is placed (``check_start_config``) and the error at start time read the same.
WHY_NEEDED = {
    "DAILY_API_KEY": "no Daily room can be made: set it from the Daily dashboard (Developers)",
    "PIPECAT_API_KEY": "with ENV=production bots start on Pipecat Cloud, which needs the agent's public API key",
    "PIPECAT_AGENT_NAME": "with ENV=production it must name the deployed Pipecat Cloud agent",
}


def missing_setting(variable: str) -> str:
    """The sentence a person reads when ``variable`` is not set."""
    why = WHY_NEEDED.get(variable, f"set the {variable} environment variable and try again")
    return f"{variable} is not set on the server: {why}."


class MissingCredentialsError(PermanentError):
    """The deployment lacks a setting a start needs; ``variable`` names it."""

    def __init__(self, variable: str) -> None:
        self.variable = variable
        super().__init__(missing_setting(variable))
