"""Dialling the patient: classify each failure, re-dial only technical ones.

Daily reports a failed dial-out in two ways: ``start_dialout()`` returns
``(session_id, error)`` with an error, or an ``on_dialout_error`` event arrives
later (sometimes both for one attempt; sometimes only the first — a known
Pipecat issue). Both count as the failure of the current attempt, once.

Each failure is classified (``classify_failure``): ``busy``, ``declined`` and
``no_answer`` end the call with that reason at once — ringing a busy or
declining patient again inside the same call is what the call policy's later
attempts are for. Only a ``technical`` failure (no route, SIP 5xx, SDP
negotiation, a rate limit) is dialled again, after a backoff, while attempts
remain (``workflow.max_dialout_attempts``); when they run out the call ends
``dialout_failed``.

A ``dialout-stopped`` before anyone answered is the far end going away without
an answer — unless an error for the same attempt follows it: Daily may send the
stop first and the error right after. So the stop waits ``stop_grace_s`` for a
matching error before it is taken as ``no_answer``.

``ring_timeout_s`` (from the first dial) ends a call nobody answered as
``no_answer``. docs/dialout.md lists which payloads map to which reason.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Awaitable, Callable, Protocol, Sequence

from loguru import logger

from botkit.phi import redact
from masking import mask_phone

DEFAULT_BACKOFF = (2.0, 4.0, 8.0, 15.0)
DEFAULT_STOP_GRACE_S = 1.5

BUSY, DECLINED, NO_ANSWER, TECHNICAL = "busy", "declined", "no_answer", "technical"

# Daily event fields that carry no patient data (``sipFrom`` etc. do).
SAFE_DAILY_FIELDS = ("sessionId", "userId", "participantId", "sipCallId", "provider",
                     "errorMsg", "error", "code", "message", "status", "reason", "sipCode",
                     "statusCode")

# SIP final responses (RFC 3261 §21) and the words carriers and Daily put in
# error texts. Checked in this order: the first that matches decides.
_SIP_CODE_RE = re.compile(r"(?<!\d)([3-6]\d\d)(?!\d)")
_SIP_CODES = {
    486: BUSY, 600: BUSY,                    # Busy Here / Busy Everywhere
    603: DECLINED, 607: DECLINED,            # Decline / Unwanted
    408: NO_ANSWER, 480: NO_ANSWER,          # Request Timeout / Temporarily Unavailable
    487: NO_ANSWER,                          # Request Terminated (the ringing was cancelled)
}
_WORDS = (
    (BUSY, re.compile(r"\bbusy\b", re.I)),
    (DECLINED, re.compile(r"\b(declin\w*|reject\w*|refused)\b", re.I)),
    (NO_ANSWER, re.compile(r"\b(no[ -]?answer|not answered|unanswered|ring(ing)? timeout|"
                           r"timed out|temporarily unavailable)\b", re.I)),
)


def classify_failure(data: Any) -> str:
    """``busy`` / ``declined`` / ``no_answer`` / ``technical`` for one dial-out failure payload."""
    texts: list[str] = []
    codes: list[int] = []
    if isinstance(data, dict):
        for key in ("sipCode", "statusCode", "code", "status"):
            value = data.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                codes.append(value)
            elif isinstance(value, str) and value.strip().isdigit():
                codes.append(int(value.strip()))
        for key in ("errorMsg", "error", "message", "reason"):
            value = data.get(key)
            if value:
                texts.append(str(value))
    elif data not in (None, ""):
        texts.append(str(data))
    for text in texts:
        codes.extend(int(c) for c in _SIP_CODE_RE.findall(text))
    for code in codes:
        if code in _SIP_CODES:
            return _SIP_CODES[code]
    for text in texts:
        for reason, pattern in _WORDS:
            if pattern.search(text):
                return reason
    return TECHNICAL


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
    """One dial-out, up to ``max_attempts`` tries for technical failures.

    ``transport`` needs only ``start_dialout(settings) -> (session_id, error)``.
    ``on_give_up(reason)`` is awaited once, with ``busy``, ``declined``,
    ``no_answer`` or ``dialout_failed``. ``sleep`` is injectable so tests do not wait.
    """

    def __init__(
        self,
        transport: DialoutTransport,
        reporter: Reporter,
        *,
        phone_number: str,
        caller_id: str | None = None,
        max_attempts: int = 5,
        ring_timeout_s: float = 0,
        on_give_up: Callable[[str], Awaitable[Any]] | None = None,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        ring_sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        self._transport = transport
        self._reporter = reporter
        self._phone_number = phone_number
        self._caller_id = caller_id or None
        self.max_attempts = max(1, int(max_attempts or 1))
        self.ring_timeout_s = float(ring_timeout_s or 0)
        self._on_give_up = on_give_up
        self._backoff = tuple(backoff) or (0.0,)
        self._stop_grace_s = stop_grace_s
        self._sleep = sleep
        self._ring_sleep = ring_sleep

        self.attempt = 0
        self.session_id: str | None = None
        self.participant_id: str | None = None  # the phone participant of the current attempt
        self.ringing = False                    # the current attempt's leg rings (not answered, not ended)
        self.answered = False
        self.finished = False          # gave up (or the call ended): no more dialling
        self.gave_up_reason: str | None = None
        self.last_error: str = ""
        self.failures: list[str] = []  # the class of each failed attempt, in order
        self._failed: set[int] = set()
        self._session_ids: dict[str, int] = {}  # Daily session id -> attempt
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()

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
        """Dial for the first time (on ``on_joined``); starts the ring timeout. Later calls do nothing."""
        if self.attempt == 0 and not self.finished:
            if self.ring_timeout_s > 0:
                self._spawn(self._ring_timeout())
            await self._dial()

    def stop(self) -> None:
        """The call is ending for another reason: dial no more."""
        self.finished = True
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ring_timeout(self) -> None:
        await self._ring_sleep(self.ring_timeout_s)
        if not (self.answered or self.finished):
            logger.info(f"nobody answered within {self.ring_timeout_s:.0f} s")
            await self.stop_ringing()  # or the patient's phone rings on into an empty room
            await self._give_up(NO_ANSWER)

    def is_current(self, data: Any) -> bool:
        """Whether a Daily event belongs to the current attempt (events without a session id do)."""
        return self._attempt_of(data) == self.attempt

    def participant_joined(self, participant_id: str) -> None:
        """A phone participant appeared during the current attempt: that is the leg to hang up."""
        self.participant_id = participant_id

    async def stop_ringing(self) -> None:
        """Stop the current attempt's ringing leg (``stop_dialout`` with its session id)."""
        if not self.ringing or not self.session_id:
            return
        self.ringing = False
        try:
            error = await self._transport.stop_dialout(self.participant_id or self.session_id)
        except Exception as e:  # leaving the room ends the leg as well
            error = type(e).__name__
        if error:
            logger.warning(f"stopping the ringing dial-out failed: {redact(error)}")

    async def _dial(self) -> None:
        async with self._lock:
            if self.finished or self.answered:
                return
            self.attempt += 1
            attempt = self.attempt
            self.session_id = None
            self.participant_id = None
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
                self.ringing = not error
        if error:
            if self.attempt == attempt:
                self.ringing = False
            await self._attempt_failed(attempt, {"error": redact(error)})

    def _attempt_of(self, data: Any) -> int:
        """Which attempt a Daily event belongs to (the current one when it cannot tell)."""
        if isinstance(data, dict) and data.get("sessionId"):
            return self._session_ids.get(str(data["sessionId"]), self.attempt)
        return self.attempt

    async def handle_error(self, data: Any) -> None:
        """``on_dialout_error``."""
        attempt = self._attempt_of(data)
        if attempt == self.attempt:
            self.ringing = False
        await self._attempt_failed(attempt, safe_daily_data(data))

    async def handle_answered(self, data: Any) -> None:
        """``on_dialout_answered``: success, no more retries."""
        self.answered = True
        self.ringing = False
        if isinstance(data, dict) and data.get("participantId"):
            self.participant_id = str(data["participantId"])
        elif isinstance(data, dict) and data.get("sessionId") and self.participant_id is None:
            self.participant_id = str(data["sessionId"])
        for task in list(self._tasks):
            task.cancel()
        self._reporter.send("dialout_answered", {"attempt": self._attempt_of(data), **safe_daily_data(data)})

    async def handle_stopped(self, data: Any) -> None:
        """``on_dialout_stopped``. Before an answer: ``no_answer``, unless an error of the same attempt follows."""
        self._reporter.send("dialout_stopped", safe_daily_data(data))
        attempt = self._attempt_of(data)
        if attempt == self.attempt:
            self.ringing = False
        if self.answered or self.finished:
            return
        if attempt != self.attempt or attempt in self._failed:
            return  # a late event of an attempt already handled
        self._spawn(self._stopped_without_answer(attempt))

    async def _stopped_without_answer(self, attempt: int) -> None:
        await self._sleep(self._stop_grace_s)
        if self.answered or self.finished or attempt != self.attempt or attempt in self._failed:
            return  # an error came after the stop and decided instead
        await self._give_up(NO_ANSWER)

    async def _attempt_failed(self, attempt: int, data: dict[str, Any]) -> None:
        kind = classify_failure(data)
        self._reporter.send("dialout_error", {"attempt": attempt, "kind": kind, **data})
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
            self.failures.append(kind)
            retry = kind == TECHNICAL and attempt < self.max_attempts
        logger.warning(f"dial-out attempt {attempt}/{self.max_attempts} failed ({kind})")
        if kind != TECHNICAL:
            await self._give_up(kind)
            return
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
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        logger.warning(f"dial-out ended without an answer ({reason}) after {self.attempt} attempt(s)")
        if self._on_give_up is not None:
            await self._on_give_up(reason)
