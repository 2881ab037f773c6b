"""A fake of the Daily REST API endpoints we call, with Daily's JSON and error shapes.

Serves under ``/v1`` like the real ``DAILY_API_URL`` (so a client that drops
the base path fails here too); recorded paths are relative to it ("/rooms").
"""

from __future__ import annotations

import random
import re
import string
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import jwt
from aiohttp import web

from .base import FakeServer, error

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

# Room properties Daily accepts that our code might send; anything else is
# refused like Daily refuses an unknown property (catches typos).
KNOWN_PROPERTIES = {
    "exp", "nbf", "eject_at_room_exp", "eject_after_elapsed", "start_video_off",
    "start_audio_off", "enable_dialout", "sip", "max_participants", "enable_chat",
    "enable_prejoin_ui", "enable_recording", "geo", "lang", "dialout_config",
    "enable_transcription_storage", "max_sip_pstn_sessions_per_room",
}
SIP_KEYS = {"display_name", "video", "sip_mode", "num_endpoints", "codecs", "provider"}
TOKEN_PROPERTIES = {
    "room_name", "exp", "nbf", "is_owner", "eject_at_token_exp", "eject_after_elapsed",
    "user_name", "user_id", "start_video_off", "start_audio_off", "permissions",
}


def _invalid(info: str) -> web.Response:
    return error(400, {"error": "invalid-request-error", "info": info})


class FakeDaily(FakeServer):
    """Daily REST: GET /, rooms (create/list/get/delete), meeting tokens,
    pinlessCallUpdate, purchased phone numbers.

    ``hipaa=True`` is Daily's HIPAA mode as far as rooms go: the name asked for is
    ignored and the room gets a random one (``hipaa_named_requests`` counts the
    requests that asked for a name). ``purchased_numbers``: {E.164: id}.
    """

    prefix = "/v1"

    def __init__(self, *, api_key: str = "fake-daily-api-key-0123456789abcdef0123456789abcdef", domain_name: str = "fake-clinic",
                 domain_id: str | None = None, hipaa: bool = False, purchased_numbers: dict[str, str] | None = None,
                 **kwargs: Any) -> None:
        self.api_key = api_key
        self.domain_name = domain_name
        self.domain_id = domain_id or str(uuid.uuid4())
        self.hipaa = hipaa
        self.purchased_numbers = dict(purchased_numbers or {})
        super().__init__(**kwargs)

    def default_error(self, status: int) -> Any:
        kind = {400: "invalid-request-error", 401: "authentication-error", 403: "forbidden-error",
                404: "not-found", 429: "rate-limit-error"}.get(status, "server-error")
        return {"error": kind, "info": f"injected {status}"}

    def reset_state(self) -> None:
        self.rooms: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.tokens: list[dict[str, Any]] = []
        self.pinless_updates: list[dict[str, Any]] = []
        self.hipaa_named_requests = 0

    def verify_token(self, token: str) -> dict[str, Any]:
        """Decode a meeting token as Daily would check a self-signed one."""
        return jwt.decode(token, self.api_key, algorithms=["HS256"])

    # --- routes -----------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        p = self.prefix
        app.router.add_get(p + "/", self._domain)
        app.router.add_post(p + "/rooms", self._create_room)
        app.router.add_get(p + "/rooms", self._list_rooms)
        app.router.add_get(p + "/purchased-phone-numbers", self._purchased_numbers)
        app.router.add_get(p + "/rooms/{name}", self._get_room)
        app.router.add_delete(p + "/rooms/{name}", self._delete_room)
        app.router.add_post(p + "/meeting-tokens", self._create_token)
        app.router.add_post(p + "/dialin/pinlessCallUpdate", self._pinless)

    def _auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            return error(400, {"error": "authorization-header-error",
                               "info": "Authorization header missing or not of the form 'Bearer <api key>'"})
        if header[7:].strip() != self.api_key:
            return error(401, {"error": "authentication-error", "info": "the API key is not valid"})
        return None

    async def _json(self, request: web.Request) -> tuple[Any, web.Response | None]:
        raw = await request.read()
        if not raw:
            return {}, None
        try:
            return await request.json(), None
        except ValueError:
            return None, error(400, {"error": "json-parsing-error", "info": "could not parse the request body as JSON"})

    async def _domain(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        return web.json_response({
            "domain_name": self.domain_name,
            "domain_id": self.domain_id,
            "config": {"hide_daily_branding": False, "pinless_dialin": []},
        })

    def _room_json(self, room: dict[str, Any]) -> dict[str, Any]:
        return dict(room)

    async def _create_room(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body, bad = await self._json(request)
        if bad is not None:
            return bad
        if not isinstance(body, dict):
            return _invalid("body must be a JSON object")
        name = body.get("name") or uuid.uuid4().hex[:20]
        if self.hipaa:  # HIPAA mode: Daily's random string, whatever was asked
            self.hipaa_named_requests += 1 if body.get("name") else 0
            name = "".join(random.choice(string.ascii_letters + string.digits) for _ in range(20))
        if not isinstance(name, str) or not _NAME.match(name):
            return _invalid("name must be 1-128 characters of A-Z, a-z, 0-9, '-' and '_'")
        privacy = body.get("privacy", "public")
        if privacy not in ("public", "private"):
            return _invalid("privacy must be 'public' or 'private'")
        props = body.get("properties") or {}
        if not isinstance(props, dict):
            return _invalid("properties must be an object")
        for key in props:
            if key not in KNOWN_PROPERTIES:
                return _invalid(f"unknown property '{key}'")
        if "exp" in props and not isinstance(props["exp"], (int, float)):
            return _invalid("exp must be a number (epoch seconds)")
        sip = props.get("sip")
        if sip is not None:
            if not isinstance(sip, dict) or set(sip) - SIP_KEYS:
                return _invalid("sip has unknown keys")
            if sip.get("sip_mode", "dial-in") != "dial-in":
                return _invalid("sip.sip_mode must be 'dial-in'")
            if not isinstance(sip.get("display_name", ""), str):
                return _invalid("sip.display_name must be a string")
        if name in self.rooms:
            return _invalid(f"a room named {name} already exists")
        config = dict(props)
        if sip is not None:
            config["sip_uri"] = {"endpoint": f"sip:{uuid.uuid4().hex[:12]}@{self.domain_name}.sip.daily.co"}
        room = {
            "id": str(uuid.uuid4()),
            "name": name,
            "api_created": True,
            "privacy": privacy,
            "url": f"https://{self.domain_name}.daily.co/{name}",
            "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "config": config,
        }
        self.rooms[name] = room
        return web.json_response(self._room_json(room))

    async def _list_rooms(self, request: web.Request) -> web.Response:
        """Newest first, at most ``limit`` (100); ``ending_before``: a room id (rooms created before it)."""
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            limit = min(int(request.query.get("limit", "100")), 100)
        except ValueError:
            return _invalid("limit must be a number")
        rooms = list(reversed(self.rooms.values()))  # dicts keep insertion (creation) order
        before = request.query.get("ending_before")
        if before:
            ids = [r["id"] for r in rooms]
            rooms = rooms[ids.index(before) + 1:] if before in ids else []
        return web.json_response({"total_count": len(self.rooms), "data": [self._room_json(r) for r in rooms[:limit]]})

    async def _purchased_numbers(self, request: web.Request) -> web.Response:
        """Daily's list of purchased numbers (``filter_number``, ``limit`` ≤ 50, ``starting_after``)."""
        if (denied := self._auth(request)) is not None:
            return denied
        rows = [
            {"name": "Fake Clinic", "type": "purchased_phone_number", "id": pid, "pagination_id": i + 1,
             "created_date": "2026-01-05T10:00:00.000Z", "number": number, "status": "verified", "verified": True}
            for i, (number, pid) in enumerate(self.purchased_numbers.items())
        ]
        wanted = request.query.get("filter_number")
        if wanted:
            rows = [r for r in rows if wanted in r["number"]]
        after = request.query.get("starting_after")
        if after:
            rows = [r for r in rows if r["pagination_id"] > int(after)]
        limit = min(int(request.query.get("limit", "50")), 50)
        return web.json_response({"total_count": len(self.purchased_numbers), "data": rows[:limit]})

    async def _get_room(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        name = request.match_info["name"]
        room = self.rooms.get(name)
        if room is None:
            return error(404, {"error": "not-found", "info": f"room {name} was not found"})
        return web.json_response(self._room_json(room))

    async def _delete_room(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        name = request.match_info["name"]
        if self.rooms.pop(name, None) is None:
            return error(404, {"error": "not-found", "info": f"room {name} was not found"})
        self.deleted.append(name)
        return web.json_response({"deleted": True, "name": name})

    async def _create_token(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body, bad = await self._json(request)
        if bad is not None:
            return bad
        props = (body or {}).get("properties") if isinstance(body, dict) else None
        if not isinstance(props, dict):
            return _invalid("properties must be an object")
        for key in props:
            if key not in TOKEN_PROPERTIES:
                return _invalid(f"unknown property '{key}'")
        payload: dict[str, Any] = {"d": self.domain_id, "iat": int(time.time())}
        if props.get("room_name"):
            payload["r"] = props["room_name"]
        if "exp" in props:
            payload["exp"] = int(props["exp"])
        if props.get("is_owner"):
            payload["o"] = True
        if props.get("eject_at_token_exp"):
            payload["ejt"] = True
        self.tokens.append(props)
        return web.json_response({"token": jwt.encode(payload, self.api_key, algorithm="HS256")})

    async def _pinless(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body, bad = await self._json(request)
        if bad is not None:
            return bad
        missing = [k for k in ("callId", "callDomain", "sipUri") if not (body or {}).get(k)]
        if missing:
            return _invalid(f"missing {', '.join(missing)}")
        self.pinless_updates.append(body)
        return web.json_response({"status": "success", "callId": body["callId"]})
