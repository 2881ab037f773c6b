"""Daily's dial-out ``callerId`` is the id of a phone number bought on Daily, not the number.

Staff and EHRs know the number, so an E.164 caller id is looked up in the
domain's purchased numbers (``GET /purchased-phone-numbers``) when it is saved
(the organisation's admin page) or sent (``POST /api/start-call``), and the id
is stored instead; a number the domain did not buy is refused with a sentence
saying what to enter. A UUID is taken as it is.
"""

from __future__ import annotations

import time
import uuid

import background
from botrunner import daily, http
from botrunner.errors import BotRunnerError, MissingCredentialsError
from organizations.validators import validate_e164

CACHE_S = 300  # numbers are bought rarely: one look-up per number per process and 5 minutes
_cache: dict[str, tuple[str, float]] = {}


class CallerIdRefused(ValueError):
    """The caller id cannot be used; the message says what to enter."""


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def resolve_caller_id(value: str) -> str:
    """The Daily phone-number id for ``value`` (an id as it is, an E.164 number looked up)."""
    value = (value or "").strip()
    if not value or _is_uuid(value):
        return value
    try:
        validate_e164(value)
    except Exception:  # noqa: BLE001 - django's ValidationError: refused below with what to enter
        raise CallerIdRefused(
            "Enter a phone number bought on Daily in E.164 form (+15551234567) or its Daily phone-number id (a UUID)."
        ) from None
    cached = _cache.get(value)
    if cached and cached[1] > time.monotonic():
        return cached[0]
    try:
        found = background.run(lambda: _look_up(value))
    except MissingCredentialsError:
        raise CallerIdRefused(
            f"{value} can only be checked with Daily, and DAILY_API_KEY is not set: set it, or enter the "
            "number's Daily phone-number id (a UUID)."
        ) from None
    except BotRunnerError as exc:
        raise CallerIdRefused(
            f"Daily could not be asked which numbers this domain bought ({exc.reason}): try again, or enter "
            "the number's Daily phone-number id (a UUID)."
        ) from None
    if found is None:
        raise CallerIdRefused(
            f"{value} is not a phone number bought on this Daily domain: enter one of its purchased numbers "
            "(Daily dashboard, Phone numbers) or that number's id (a UUID)."
        )
    _cache[value] = (found, time.monotonic() + CACHE_S)
    return found


async def _look_up(number: str):
    session = await http.get_session()
    return await daily.purchased_number_id(session, number)


def clear_cache() -> None:
    _cache.clear()
