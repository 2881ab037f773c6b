"""Daily REST: rooms and the bot's meeting token.

Plain aiohttp JSON, not Pipecat's ``configure()`` (it reads the process
environment, picks a random name and always adds a token round trip). The
room name comes from the call's session id, so a redelivered task finds the
room it made instead of making a second one; every call here is therefore
safe to retry, and any transient fault is a ``TransientError``.

The bot's token is signed locally (Daily's self-signed meeting tokens: an
HS256 JWT with the API key), which keeps a round trip off the caller's hold
time; ``DAILY_MEETING_TOKEN_MODE = "rest"`` falls back to ``POST /meeting-tokens``.
Signing needs the domain id (``GET {DAILY_API_URL}/``, cached per process);
``create_room()`` starts that fetch alongside the room's request, so even the
first token of a process adds no round trip.

Rooms are ``private`` (a URL alone does not let anyone listen to a patient's
call; the bot joins with its owner token), always: no setting makes them public.

``DAILY_HIPAA_MODE``: Daily's HIPAA mode names rooms itself (a random string;
a create-room call with a name of ours fails), so rooms are created without a
name and the start path stores the name Daily returns (calls.starting). The
caller's SIP display name is never their number: Daily's dashboards and payloads
would show it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
from django.conf import settings

from .errors import MissingCredentialsError, PermanentError, TransientError

logger = logging.getLogger(__name__)

ROOM_NAME_PREFIX = "mr-"
#: the SIP participant's name in Daily (dashboards, participant lists): never the caller's number
SIP_DISPLAY_NAME = "Caller"
_VALID_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class Room:
    """A Daily room as the start path needs it."""

    name: str
    url: str
    sip_endpoint: str | None = None  # "sip:…" for dial-in rooms
    exp: float | None = None  # epoch seconds
    created: bool = True  # False when an existing room was found (redelivery)
    id: str | None = None
    created_at: str | None = None  # ISO 8601, as Daily gives it


# --- settings ---------------------------------------------------------------


def _api_url() -> str:
    return settings.DAILY_API_URL.rstrip("/")  # its default: myrobot/settings.py


def _api_key() -> str:
    key = getattr(settings, "DAILY_API_KEY", "") or ""
    if not key:
        raise MissingCredentialsError("DAILY_API_KEY")
    return key


def _margin_s() -> int:
    return int(getattr(settings, "DAILY_ROOM_EXPIRY_MARGIN_S", 300))


def hipaa_mode() -> bool:
    """Daily's HIPAA mode: Daily names the rooms (read at call time: tests switch it)."""
    return bool(getattr(settings, "DAILY_HIPAA_MODE", False))


def _token_mode() -> str:
    return (getattr(settings, "DAILY_MEETING_TOKEN_MODE", "local") or "local").lower()


# --- names --------------------------------------------------------------------


def room_name_for(session_id: str) -> str:
    """Deterministic, valid Daily name: ``mr-<session id>``.

    Characters Daily refuses are replaced, and then (or when the name would
    pass 128 characters) a hash of the original id is appended so two ids can
    never share a room.
    """
    sid = str(session_id or "")
    if not sid:
        raise ValueError("room_name_for() needs a session id")
    name = ROOM_NAME_PREFIX + sid
    if _VALID_NAME.match(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", sid)[:100]
    digest = hashlib.sha256(sid.encode()).hexdigest()[:16]
    return f"{ROOM_NAME_PREFIX}{cleaned}-{digest}"


# --- HTTP ---------------------------------------------------------------------


def _error_text(data: Any, text: str) -> str:
    if isinstance(data, dict):
        parts = [str(data[k]) for k in ("error", "info") if isinstance(data.get(k), str)]
        if parts:
            return ": ".join(parts)[:300]
    return (text or "").strip()[:300]


async def _request(
    http: aiohttp.ClientSession, method: str, path: str, what: str, *, json_body: Any = None
) -> tuple[int, Any, str]:
    """One Daily call with the configured URL and key."""
    return await _send(http, method, _api_url(), _api_key(), path, what, json_body=json_body)


async def _send(
    http: aiohttp.ClientSession, method: str, base: str, key: str, path: str, what: str,
    *, json_body: Any = None,
) -> tuple[int, Any, str]:
    """Connection faults and timeouts become TransientError (every Daily call
    we make is safe to repeat)."""
    try:
        async with http.request(
            method, base + path, json=json_body, headers={"Authorization": f"Bearer {key}"}
        ) as resp:
            text = await resp.text()
            status = resp.status
    except aiohttp.InvalidURL as e:
        raise PermanentError(f"DAILY_API_URL is not a valid URL ({base!r}): {e}") from e
    except aiohttp.ClientSSLError as e:
        raise PermanentError(
            f"TLS to Daily failed while trying to {what} ({base}): {e}. Check DAILY_API_URL."
        ) from e
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        raise TransientError(
            f"Could not reach Daily to {what} ({base}): {type(e).__name__}: {e}"
        ) from e
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    return status, data, text


def _raise_for(status: int, data: Any, text: str, what: str) -> None:
    """Map a non-2xx Daily answer to an error class."""
    detail = _error_text(data, text)
    if status in (401, 403) or (isinstance(data, dict) and data.get("error") == "authorization-header-error"):
        raise PermanentError(
            f"Daily refused DAILY_API_KEY while trying to {what} ({detail}): "
            "check the key in the server's environment.",
            status=status,
            body=text,
        )
    if status == 429 or status >= 500:
        raise TransientError(f"Daily is busy or failing ({detail}) while trying to {what}.", status=status, body=text)
    raise PermanentError(f"Daily refused to {what}: {detail}", status=status, body=text)


def _room_from(data: dict[str, Any], *, created: bool) -> Room:
    config = data.get("config") or {}
    endpoint = (config.get("sip_uri") or {}).get("endpoint") or None
    if endpoint and not endpoint.startswith("sip:"):
        endpoint = "sip:" + endpoint  # Pipecat's helper adds it; Daily's docs show it included
    exp = config.get("exp")
    return Room(
        name=data["name"],
        url=data["url"],
        sip_endpoint=endpoint,
        exp=float(exp) if exp is not None else None,
        created=created,
        id=data.get("id"),
        created_at=data.get("created_at"),
    )


def _already_exists(status: int, data: Any) -> bool:
    return (
        status == 400
        and isinstance(data, dict)
        and data.get("error") == "invalid-request-error"
        and "already exists" in str(data.get("info", ""))
    )


# --- rooms --------------------------------------------------------------------


async def create_room(
    http: aiohttp.ClientSession,
    *,
    session_id: str,
    dialin: bool,
    caller_phone: str | None = None,
    max_duration_s: int,
) -> Room:
    """Create the call's room, or return it if a previous delivery made it.

    Dial-in rooms get SIP dial-in for the caller (audio only, one endpoint, a
    neutral display name); every room gets ``enable_dialout`` (a dial-in's
    transfer to a person dials out of its room). Both expire after the workflow's
    maximum duration plus ``DAILY_ROOM_EXPIRY_MARGIN_S``, ejecting everyone.
    In HIPAA mode the room is created without a name and Daily picks one: then
    this call is not idempotent, and the start path finds a stored room instead.
    ``caller_phone`` is accepted for the callers' sake and not sent.
    """
    _api_key()  # fail before any work when the key is missing
    name = room_name_for(session_id)
    if _token_mode() == "local":
        prefetch_domain_id(http)  # overlaps the room's round trip
    exp = int(time.time() + int(max_duration_s) + _margin_s())
    properties: dict[str, Any] = {"exp": exp, "eject_at_room_exp": True, "start_video_off": True}
    if dialin:
        properties["sip"] = {
            "display_name": SIP_DISPLAY_NAME,
            "video": False,
            "sip_mode": "dial-in",
            "num_endpoints": 1,
        }
    properties["enable_dialout"] = True
    body: dict[str, Any] = {
        "privacy": "private",
        "properties": properties,
    }
    if not hipaa_mode():
        body["name"] = name
    status, data, text = await _request(http, "POST", "/rooms", "create a room", json_body=body)
    if status == 200 and isinstance(data, dict) and data.get("name") and data.get("url"):
        logger.info("daily: created room %s", data["name"])
        return _room_from(data, created=True)
    if _already_exists(status, data):
        room = await get_room(http, name)
        if room is None:  # deleted between our two calls: try again later
            raise TransientError(f"Daily room {name} vanished while it was being looked up.", status=404)
        if room.exp is not None and room.exp <= time.time():
            raise PermanentError(f"Daily room {name} from an earlier attempt has expired; the call is too old to start.")
        logger.info("daily: found existing room %s (redelivery)", name)
        return room
    if status == 200:
        raise TransientError("Daily answered room creation with an unreadable body.", status=status, body=text)
    _raise_for(status, data, text, "create a room")
    raise AssertionError("unreachable")


async def get_room(http: aiohttp.ClientSession, name: str) -> Room | None:
    """The room called ``name``, or None if Daily has no such room."""
    status, data, text = await _request(http, "GET", f"/rooms/{quote(name, safe='')}", "look up a room")
    if status == 404:
        return None
    if status == 200 and isinstance(data, dict):
        return _room_from(data, created=False)
    _raise_for(status, data, text, "look up a room")
    raise AssertionError("unreachable")


async def delete_room(http: aiohttp.ClientSession, name: str) -> bool:
    """Delete a room (ejects everyone, ending the bot's call).

    Returns False when it was already gone: 404 counts as success.
    """
    status, data, text = await _request(http, "DELETE", f"/rooms/{quote(name, safe='')}", "delete a room")
    if status == 404:
        return False
    if 200 <= status < 300:
        logger.info("daily: deleted room %s", name)
        return True
    _raise_for(status, data, text, "delete a room")
    raise AssertionError("unreachable")


async def list_rooms(http: aiohttp.ClientSession, *, ending_before: str | None = None) -> list[Room]:
    """One page (up to 100) of the domain's rooms, newest first; ``ending_before``
    a room id to page on (rooms created before it)."""
    path = "/rooms?limit=100" + (f"&ending_before={quote(ending_before, safe='')}" if ending_before else "")
    status, data, text = await _request(http, "GET", path, "list rooms")
    if status == 200 and isinstance(data, dict) and isinstance(data.get("data"), list):
        return [_room_from(r, created=False) for r in data["data"] if isinstance(r, dict) and r.get("name")]
    if status == 200:
        raise TransientError("Daily answered the room list with an unreadable body.", status=status, body=text)
    _raise_for(status, data, text, "list rooms")
    raise AssertionError("unreachable")


async def purchased_number_id(http: aiohttp.ClientSession, number: str) -> str | None:
    """The id of the domain's purchased phone number ``number`` (E.164), or None.

    Daily's dial-out ``callerId`` is this id, not the number
    (``GET /purchased-phone-numbers``, filtered by number, paged by ``pagination_id``).
    """
    what = "list the purchased phone numbers"
    after = None
    for _page in range(100):
        path = f"/purchased-phone-numbers?limit=50&filter_number={quote(number, safe='')}"
        if after is not None:
            path += f"&starting_after={quote(str(after), safe='')}"
        status, data, text = await _request(http, "GET", path, what)
        if status != 200 or not isinstance(data, dict) or not isinstance(data.get("data"), list):
            if status == 200:
                raise TransientError("Daily answered the phone number list with an unreadable body.", status=status)
            _raise_for(status, data, text, what)
        rows = [r for r in data["data"] if isinstance(r, dict)]
        for row in rows:
            if row.get("number") == number and row.get("id"):
                return str(row["id"])
        if not rows or rows[-1].get("pagination_id") is None:
            return None
        after = rows[-1]["pagination_id"]
    return None


# --- domain id and tokens -----------------------------------------------------

_domain_ids: dict[tuple[str, str], str] = {}
_domain_fetches: dict[tuple[str, str], asyncio.Task] = {}


def clear_caches() -> None:
    """Forget cached domain ids (tests; a rotated key is keyed separately anyway)."""
    _domain_ids.clear()
    _domain_fetches.clear()


async def _fetch_domain_id(http: aiohttp.ClientSession, base: str, key: str) -> str:
    what = "read the domain configuration"
    status, data, text = await _send(http, "GET", base, key, "/", what)
    if status != 200:
        _raise_for(status, data, text, what)
    domain_id = data.get("domain_id") if isinstance(data, dict) else None
    if not domain_id:
        raise TransientError("Daily's domain configuration had no domain_id.", status=status, body=text)
    return str(domain_id)


def _domain_fetch(http: aiohttp.ClientSession) -> tuple[tuple[str, str], "asyncio.Task[str] | None"]:
    """The in-flight fetch of the domain id on this loop, started if needed
    (None when cached). Shared by concurrent callers; fills the cache."""
    cache_key = (_api_url(), _api_key())
    if cache_key in _domain_ids:
        return cache_key, None
    loop = asyncio.get_running_loop()
    task = _domain_fetches.get(cache_key)
    if task is None or task.get_loop() is not loop:
        task = loop.create_task(_fetch_domain_id(http, *cache_key))

        def done(t: asyncio.Task, cache_key: tuple[str, str] = cache_key) -> None:
            if _domain_fetches.get(cache_key) is t:
                del _domain_fetches[cache_key]
            if not t.cancelled() and t.exception() is None:  # also marks errors as retrieved
                _domain_ids[cache_key] = t.result()

        task.add_done_callback(done)
        _domain_fetches[cache_key] = task
    return cache_key, task


def prefetch_domain_id(http: aiohttp.ClientSession) -> None:
    """Start fetching the domain id in the background (no-op when cached).

    ``create_room`` calls it in local token mode, so the first token of a
    process costs no extra round trip after the room's.
    """
    _domain_fetch(http)


async def get_domain_id(http: aiohttp.ClientSession) -> str:
    """The Daily domain id (``GET {DAILY_API_URL}/``), fetched once per process
    per API URL and key; concurrent first callers share one request."""
    cache_key, task = _domain_fetch(http)
    if task is None:
        return _domain_ids[cache_key]
    domain_id = await asyncio.shield(task)
    _domain_ids[cache_key] = domain_id
    return domain_id


async def meeting_token(http: aiohttp.ClientSession, room: Room) -> str:
    """An owner token for the bot (dial-out needs an owner), expiring with the room."""
    key = _api_key()
    now = int(time.time())
    exp = int(room.exp) if room.exp else now + 3600 + _margin_s()
    mode = _token_mode()
    if mode == "local":
        domain_id = await get_domain_id(http)
        payload = {"r": room.name, "d": domain_id, "iat": now, "exp": exp, "o": True}
        return jwt.encode(payload, key, algorithm="HS256")
    if mode == "rest":
        body = {"properties": {"room_name": room.name, "exp": exp, "is_owner": True, "eject_at_token_exp": True}}
        status, data, text = await _request(http, "POST", "/meeting-tokens", "create a meeting token", json_body=body)
        if status == 200 and isinstance(data, dict) and data.get("token"):
            return str(data["token"])
        if status == 200:
            raise TransientError("Daily answered without a meeting token.", status=status, body=text)
        _raise_for(status, data, text, "create a meeting token")
    raise PermanentError(
        f"DAILY_MEETING_TOKEN_MODE is {mode!r}: set it to 'local' (sign tokens here) or 'rest' (ask Daily)."
    )


__all__ = [
    "Room",
    "room_name_for",
    "create_room",
    "get_room",
    "delete_room",
    "list_rooms",
    "purchased_number_id",
    "hipaa_mode",
    "get_domain_id",
    "prefetch_domain_id",
    "meeting_token",
    "clear_caches",
]
