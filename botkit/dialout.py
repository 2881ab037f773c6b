"""Dialling the patient, with retries.

Daily reports a failed dial-out in two ways: ``start_dialout()`` returns
``(session_id, error)`` with an error, or an ``on_dialout_error`` event arrives
later (sometimes both, for one attempt; sometimes only the first — a known
Pipecat issue). Both count as the failure of the current attempt, once. While
attempts remain (``workflow.max_dialout_attempts``) the manager waits a short
backoff and dials again; when they run out it calls ``on_give_up("dialout_failed")``.

A ``dialout-stopped`` before anyone answered means the far end hung up or never
picked up: that ends the call as ``no_answer`` (no point ringing a declining
patient four more times).
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Protocol, Sequence

from loguru import logger

from botkit.phi import redact
from masking import mask_phone

DEFAULT_BACKOFF = (2.0, 4.0, 8.0, 15.0)

# Daily event fields that carry no patient data (``sipFrom`` etc. do).
SAFE_DAILY_FIELDS = ("sessionId", "userId", "participantId", "sipCallId", "provider",
                     "errorMsg", "error", "code", "message", "status", "reason")


def safe_daily_data(data: Any) -> dict[str, Any]:
    """The parts of a Daily event payload that may go into a status event."""
    if not isinstance(data, dict):
        return {"info": redact(data)} if data not in (None, "") else {}
    out: dict[str, Any] = {}
    for key in SAFE_DAILY_FIELDS:
        if key in data and data[key] is not None:
            value = data[key]
            out[key] = value if isinstance(value, (int, float, bool)) else redact(value)
    return out


class Reporter(Protocol):
    def send(self, event: str, data: dict[str, Any] | None = None) -> int: ...


class DialoutTransport(Protocol):
    async def start_dialout(self, settings: dict[str, Any] | None = None) -> tuple[Any, Any]: ...


class DialoutManager:
    """One dial-out, up to ``max_attempts`` tries.

    ``transport`` needs only ``start_dialout(settings) -> (session_id, error)``.
    ``on_give_up(reason)`` is awaited once, with ``"dialout_failed"`` or
    ``"no_answer"``. ``sleep`` is injectable so tests do not wait.
    """

    def __init__(
        self,
        transport: DialoutTransport,
        reporter: Reporter,
        *,
        phone_number: str,
        caller_id: str | None = None,
        max_attempts: int = 5,
        on_give_up: Callable[[str], Awaitable[Any]] | None = None,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        self._transport = transport
        self._reporter = reporter
        self._phone_number = phone_number
        self._caller_id = caller_id or None
        self.max_attempts = max(1, int(max_attempts or 1))
        self._on_give_up = on_give_up
        self._backoff = tuple(backoff) or (0.0,)
        self._sleep = sleep

        self.attempt = 0
        self.session_id: str | None = None
        self.answered = False
        self.finished = False          # gave up (or the call ended): no more dialling
        self.gave_up_reason: str | None = None
        self.last_error: str = ""
        self._failed: set[int] = set()
        self._session_ids: dict[str, int] = {}  # Daily session id -> attempt
        self._lock = asyncio.Lock()

    @property
    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"phoneNumber": self._phone_number}
        if self._caller_id:
            settings["callerId"] = self._caller_id
        return settings

    def backoff_for(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1``."""
        return self._backoff[min(attempt, len(self._backoff)) - 1]

    async def start(self) -> None:
        """Dial for the first time (on ``on_joined``). Later calls do nothing."""
        if self.attempt == 0 and not self.finished:
            await self._dial()

    def stop(self) -> None:
        """The call is ending for another reason: dial no more."""
        self.finished = True

    async def _dial(self) -> None:
        async with self._lock:
            if self.finished or self.answered:
                return
            self.attempt += 1
            attempt = self.attempt
            self.session_id = None
        logger.info(
            f"dial-out attempt {attempt}/{self.max_attempts} to {mask_phone(self._phone_number)}"
        )
        self._reporter.send("dialout_attempt", {"attempt": attempt, "max_attempts": self.max_attempts})
        try:
            session_id, error = await self._transport.start_dialout(self.settings)
        except Exception as e:  # a raising transport is one more way to fail
            session_id, error = None, f"{type(e).__name__}: {e}"
        if session_id:
            self._session_ids[str(session_id)] = attempt
            if self.attempt == attempt:
                self.session_id = str(session_id)
        if error:
            await self._attempt_failed(attempt, {"error": redact(error)})

    def _attempt_of(self, data: Any) -> int:
        """Which attempt a Daily event belongs to (the current one when it cannot tell)."""
        if isinstance(data, dict) and data.get("sessionId"):
            return self._session_ids.get(str(data["sessionId"]), self.attempt)
        return self.attempt

    async def handle_error(self, data: Any) -> None:
        """``on_dialout_error``."""
        attempt = self._attempt_of(data)
        await self._attempt_failed(attempt, safe_daily_data(data))

    async def handle_answered(self, data: Any) -> None:
        """``on_dialout_answered``: success, no more retries."""
        self.answered = True
        self._reporter.send("dialout_answered", {"attempt": self._attempt_of(data), **safe_daily_data(data)})

    async def handle_stopped(self, data: Any) -> bool:
        """``on_dialout_stopped``. Returns True when this ended the dialling (no answer)."""
        self._reporter.send("dialout_stopped", safe_daily_data(data))
        if self.answered or self.finished:
            return False
        attempt = self._attempt_of(data)
        if attempt != self.attempt or attempt in self._failed:
            return False  # a late event of an attempt already retried
        await self._give_up("no_answer")
        return True

    async def _attempt_failed(self, attempt: int, data: dict[str, Any]) -> None:
        self._reporter.send("dialout_error", {"attempt": attempt, **data})
        self.last_error = str(data.get("errorMsg") or data.get("error") or data.get("message") or "")
        async with self._lock:
            if (
                self.finished
                or self.answered
                or attempt != self.attempt
                or attempt in self._failed
            ):
                return  # already handled (both error paths fired) or a stale event
            self._failed.add(attempt)
            retry = attempt < self.max_attempts
        logger.warning(f"dial-out attempt {attempt}/{self.max_attempts} failed")
        if not retry:
            await self._give_up("dialout_failed")
            return
        await self._sleep(self.backoff_for(attempt))
        if not (self.finished or self.answered):
            await self._dial()

    def failure_summary(self) -> str:
        """For a person: why the dialling ended without a conversation."""
        text = f"dial-out failed after {self.attempt} attempt(s)"
        return f"{text}: {self.last_error}" if self.last_error else text

    async def _give_up(self, reason: str) -> None:
        if self.finished:
            return
        self.finished = True
        self.gave_up_reason = reason
        logger.warning(f"dial-out ended without an answer ({reason}) after {self.attempt} attempt(s)")
        if self._on_give_up is not None:
            await self._on_give_up(reason)
