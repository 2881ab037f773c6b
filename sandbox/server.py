"""The sandbox: Daily's REST API and the bot runner's ``/start``, on one local port.

``python -m sandbox`` (``make demo``) serves both, and every ``/start`` runs
the simulated bot of ``sandbox.script`` — which reports over the server's real
status socket with the real ``StatusReporter`` — instead of a Pipecat bot. The
Django server is pointed at it with the settings a user would set anyway
(``DAILY_API_URL``, ``DAILY_API_KEY``, ``LOCAL_SERVER_URL``), so a call goes
through the same ``start_bot`` and the same server code as a real one.

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

from .script import draw_fate, parse_rates, run_call

log = logging.getLogger("sandbox")

DEFAULT_PORT = 7871
DEFAULT_API_KEY = "sandbox-daily-api-key-for-local-demos-only"
DEFAULT_RATES = "answered=70,no_answer=10,voicemail=10,busy=10"
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
                 step_s: float = 0.8, seed: int | None = None, hipaa: bool = False) -> None:
        refuse_in_production()
        self.hipaa = hipaa  # Daily's HIPAA mode: rooms get random names, whatever was asked
        self.api_key = api_key
        self.rates = rates or parse_rates(DEFAULT_RATES)
        self.step_s = step_s
        self.rng = random.Random(seed)
        self.domain_id = str(uuid.uuid4())
        self.rooms: dict[str, dict[str, Any]] = {}
        self.calls: set[asyncio.Task] = set()
        self.states: dict[str, dict] = {}  # room name → the script's state
        self.finished: list[dict[str, Any]] = []  # {session_id, fate, events}

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
        for task in list(self.calls):
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
        # Daily ejects everyone from a deleted room: a simulated call in it stops.
        if not self.states.pop(name, {}).get("ended"):
            for task in list(self.calls):
                if task.get_name() == f"sandbox-{name}":
                    task.cancel()
        return web.json_response({"deleted": True, "name": name})

    async def _start(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
            req = AgentRequest.model_validate((payload or {}).get("body") or {})
        except (ValueError, ValidationError) as exc:
            return web.json_response({"detail": f"not a valid start request: {exc}"[:500]}, status=400)
        fate = draw_fate(self.rates, self.rng)
        room_name = req.room_url.rstrip("/").rsplit("/", 1)[-1]
        state = self.states[room_name] = {}
        task = asyncio.get_running_loop().create_task(self._play(req, fate, state), name=f"sandbox-{room_name}")
        self.calls.add(task)
        task.add_done_callback(self.calls.discard)
        log.info("sandbox: call %s starts (%s, %s)", req.session_id, req.workflow.slug, fate)
        return web.json_response({"status": "started", "sessionId": req.session_id})

    async def _play(self, req: AgentRequest, fate: str, state: dict) -> None:
        try:
            events = await run_call(req, fate, step_s=self.step_s, state=state)
        except asyncio.CancelledError:
            log.info("sandbox: call %s ended by the server (room deleted)", req.session_id)
            raise
        except Exception:  # noqa: BLE001 - one bad call must not stop the sandbox
            log.exception("sandbox: call %s failed", req.session_id)
            return
        self.finished.append({"session_id": req.session_id, "fate": fate, "events": [e["event"] for e in events]})
        log.info("sandbox: call %s finished (%s)", req.session_id, fate)
