"""The sandbox: Daily's REST API and the bot runner's ``/start``, on one local port.

``python -m sandbox`` (``make demo``) serves both. Every ``/start`` runs the
real ``bot.py`` through the call simulator (``botkit.simulate``; the scenario
comes from ``sandbox.calls``): a stand-in Daily line, a patient speaking through
espeak-ng, and a local fake of OpenAI's API. The bot reports to the status
socket named in the request, so the server sees a call the real bot made. The
Django server is pointed at the sandbox with the settings a user would set
anyway (``DAILY_API_URL``, ``DAILY_API_KEY``, ``LOCAL_SERVER_URL``), so a call
goes through the same ``start_bot`` and the same server code as a real one.

It refuses to run with ``ENV=production``: there, bots start on Pipecat Cloud
and nothing may pretend to be Daily.

Imports no Django.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from botrunner.agent_request import AgentRequest

from .calls import check_speech, draw_fate, parse_rates, scenario_for

log = logging.getLogger("sandbox")

DEFAULT_PORT = 7871
DEFAULT_API_KEY = "sandbox-daily-api-key-for-local-demos-only"
DEFAULT_RATES = "answered=70,no_answer=10,voicemail=10,busy=10"
# Each call runs a whole bot (VAD, turn model, real-time audio) in this process: a
# start beyond this many answers 429, as Pipecat Cloud does at capacity, and the
# server queues the call again.
DEFAULT_MAX_CALLS = 2
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class SandboxRefused(RuntimeError):
    """The sandbox must not run here."""


def refuse_in_production(env: dict[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    if (env.get("ENV") or "development").strip().lower() == "production":
        raise SandboxRefused(
            "The call sandbox never runs with ENV=production: production calls start on Pipecat Cloud "
            "and reach real telephones."
        )


def _error(status: int, kind: str, info: str) -> web.Response:
    return web.json_response({"error": kind, "info": info}, status=status)


class Sandbox:
    """State of one sandbox process: rooms, and the simulated calls in flight."""

    def __init__(self, *, api_key: str = DEFAULT_API_KEY, rates: dict[str, float] | None = None,
                 seed: int | None = None, max_calls: int = DEFAULT_MAX_CALLS,
                 hipaa: bool = False) -> None:
        refuse_in_production()
        check_speech()
        self.hipaa = hipaa  # Daily's HIPAA mode: rooms get random names, whatever was asked
        self.api_key = api_key
        self.rates = rates or parse_rates(DEFAULT_RATES)
        self.max_calls = max_calls
        self.rng = random.Random(seed)
        self.domain_id = str(uuid.uuid4())
        self.rooms: dict[str, dict[str, Any]] = {}
        self.calls: dict[str, asyncio.Task] = {}       # room name → its call
        self.lines: dict[str, Any] = {}                # room name → the call's simulated line
        self.finished: list[dict[str, Any]] = []       # {session_id, fate, end_reason}

    # --- the app -----------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/", self._domain)
        app.router.add_post("/v1/rooms", self._create_room)
        app.router.add_get("/v1/rooms", self._list_rooms)
        app.router.add_get("/v1/rooms/{name}", self._get_room)
        app.router.add_delete("/v1/rooms/{name}", self._delete_room)
        app.router.add_post("/start", self._start)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _cleanup(self, app: web.Application) -> None:
        for task in list(self.calls.values()):
            task.cancel()

    def _auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if header != f"Bearer {self.api_key}":
            return _error(401, "authentication-error", "the API key is not valid (the sandbox's key is DAILY_API_KEY)")
        return None

    async def _domain(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        return web.json_response({"domain_name": "sandbox", "domain_id": self.domain_id, "config": {}})

    async def _create_room(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "json-parsing-error", "could not parse the request body as JSON")
        name = body.get("name") or uuid.uuid4().hex[:20]
        if self.hipaa:
            name = uuid.uuid4().hex[:20]
        if not isinstance(name, str) or not _NAME.match(name):
            return _error(400, "invalid-request-error", "name must be 1-128 characters of A-Z, a-z, 0-9, '-' and '_'")
        if name in self.rooms:
            return _error(400, "invalid-request-error", f"a room named {name} already exists")
        config = dict(body.get("properties") or {})
        if config.get("sip"):
            config["sip_uri"] = {"endpoint": f"sip:{name}@sandbox.sip.invalid"}
        room = {
            "id": str(uuid.uuid4()),
            "name": name,
            "api_created": True,
            "privacy": body.get("privacy", "public"),
            "url": f"https://sandbox.daily.invalid/{name}",
            "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "config": config,
        }
        self.rooms[name] = room
        return web.json_response(room)

    async def _list_rooms(self, request: web.Request) -> web.Response:
        """Newest first, one page (the sandbox holds few rooms)."""
        if (denied := self._auth(request)) is not None:
            return denied
        rooms = list(reversed(self.rooms.values()))
        return web.json_response({"total_count": len(rooms), "data": rooms[:100]})

    async def _get_room(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        room = self.rooms.get(request.match_info["name"])
        if room is None:
            return _error(404, "not-found", f"room {request.match_info['name']} was not found")
        return web.json_response(room)

    async def _delete_room(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        name = request.match_info["name"]
        if self.rooms.pop(name, None) is None:
            return _error(404, "not-found", f"room {name} was not found")
        # Daily ejects everyone from a deleted room: the bot in it gets the disconnection.
        line = self.lines.get(name)
        if line is not None:
            await line.delete_room()
        return web.json_response({"deleted": True, "name": name})

    async def _start(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
            body = (payload or {}).get("body") or {}
            req = AgentRequest.model_validate(body)
        except (ValueError, ValidationError) as exc:
            return web.json_response({"detail": f"not a valid start request: {exc}"[:500]}, status=400)
        if len(self.calls) >= self.max_calls:
            return web.json_response({"detail": f"the sandbox runs at most {self.max_calls} calls at once"},
                                     status=429)
        fate = draw_fate(self.rates, self.rng)
        room_name = req.room_url.rstrip("/").rsplit("/", 1)[-1]
        task = asyncio.get_running_loop().create_task(self._play(room_name, body, fate), name=f"sandbox-{room_name}")
        self.calls[room_name] = task
        task.add_done_callback(lambda _t: self.calls.pop(room_name, None))
        log.info("sandbox: call %s starts (%s, %s)", req.session_id, req.workflow.slug, fate)
        return web.json_response({"status": "started", "sessionId": req.session_id})

    async def _play(self, room_name: str, body: dict[str, Any], fate: str) -> None:
        from botkit.simulate import simulate

        try:
            report = await simulate(scenario_for(body, fate),
                                    on_transport=lambda line: self.lines.__setitem__(room_name, line))
        except Exception:  # noqa: BLE001 - one bad call must not stop the sandbox
            log.exception("sandbox: call %s failed", body.get("session_id"))
            return
        finally:
            self.lines.pop(room_name, None)
        self.finished.append({"session_id": report["session_id"], "fate": fate, "end_reason": report["end_reason"]})
        log.info("sandbox: call %s finished (%s: %s)", report["session_id"], fate, report["end_reason"])
