"""Keeping patient data out of the bot's logs.

Three layers, because Pipecat logs generously:

* ``configure_logging()`` replaces loguru's sinks with one at ``BOT_LOG_LEVEL``
  (default ``INFO``; Pipecat logs transcripts, prompts and tool arguments at
  ``DEBUG``) and without ``diagnose`` (which prints local variables, a whole
  request body among them, in tracebacks).
* A loguru *patcher* (it survives ``logger.remove()``, which is what the Pipecat
  runner's ``main()`` calls before adding its own DEBUG sink) withholds the
  runner's messages that carry the ``/start`` body, and replaces, in every
  message, the patient values of the calls running in this process, and masks
  anything shaped like a phone number (the shared ``masking`` module, which
  the server uses too).
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import threading
from typing import Any, Iterable

from loguru import logger

from masking import mask_phones

REDACTED = "[redacted]"
RUNNER_WITHHELD = "[runner message withheld: it may carry patient data]"

_MIN_VALUE_LEN = 3

_lock = threading.Lock()
_handles = itertools.count(1)
_values_by_handle: dict[int, frozenset[str]] = {}
_pattern: re.Pattern[str] | None = None
_logging_configured = False


def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            yield from _leaves(v)
    elif value is None or isinstance(value, bool):
        return
    else:
        yield str(value)


def _phone_variants(number: str) -> Iterable[str]:
    number = (number or "").strip()
    if not number:
        return
    yield number
    digits = re.sub(r"\D", "", number)
    if len(digits) >= 7:
        yield digits
        if len(digits) > 10:
            yield digits[-10:]


def sensitive_values(patient_data: Any = None, phones: Iterable[str | None] = ()) -> set[str]:
    """The strings of one call that must not reach a log line."""
    values = {v.strip() for v in _leaves(patient_data or {})}
    for phone in phones:
        values.update(_phone_variants(phone or ""))
    return {v for v in values if len(v) >= _MIN_VALUE_LEN}


def _rebuild() -> None:
    global _pattern
    values = set().union(*_values_by_handle.values()) if _values_by_handle else set()
    if not values:
        _pattern = None
        return
    # Longest first, so "Ann Smith" wins over "Ann"; whole words only, so "Ann"
    # does not eat "Announcement".
    alternatives = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    _pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def register(values: Iterable[str]) -> int:
    """Start redacting ``values`` from every log line; returns a handle for ``unregister``."""
    handle = next(_handles)
    with _lock:
        _values_by_handle[handle] = frozenset(v for v in values if v)
        _rebuild()
    return handle


def unregister(handle: int) -> None:
    with _lock:
        _values_by_handle.pop(handle, None)
        _rebuild()


def redact(text: Any) -> str:
    """``text`` with the registered patient values redacted and phone numbers masked."""
    text = str(text)
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return mask_phones(text)


def _patch(record: dict) -> None:
    try:
        name = record.get("name") or ""
        message = record["message"]
        if name.startswith("pipecat.runner") and (
            record["level"].no <= 10 or "body" in message.lower() or "request" in message.lower()
        ):
            # "Received request: {...}" at DEBUG is the whole /start body.
            record["message"] = RUNNER_WITHHELD
            return
        record["message"] = redact(message)
    except Exception:  # a log line must never break the call
        record["message"] = REDACTED


def install_redaction() -> None:
    """Install the redacting patcher (idempotent; survives ``logger.remove()``)."""
    logger.configure(patcher=_patch)


def configure_logging(level: str | None = None, *, force: bool = False) -> None:
    """One stderr sink at ``BOT_LOG_LEVEL`` (default INFO), no variable dumps, redaction on.

    Runs once per process unless ``force``: the development runner calls
    ``bot()`` once per call, and its ``main()`` has already reset loguru to a
    DEBUG sink by then.
    """
    global _logging_configured
    install_redaction()
    if _logging_configured and not force:
        return
    level = (level or os.environ.get("BOT_LOG_LEVEL") or "INFO").upper()
    logger.remove()
    logger.add(sys.stderr, level=level, diagnose=False, backtrace=False)
    _logging_configured = True
