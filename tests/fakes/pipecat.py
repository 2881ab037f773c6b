"""Fakes of the two places a bot is started: Pipecat Cloud and the local dev runner."""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web

from .base import FakeServer, error

MAX_BODY_BYTES = 1024 * 1024  # Pipecat Cloud refuses a start body over 1 MB (413)


class FakePipecatCloud(FakeServer):
    """``POST /v1/public/{agent}/start`` as Pipecat Cloud answers it.

    Error codes other than PCC-AGENT-AT-CAPACITY are not documented; the
    ones used here only need to be shaped ``{"error", "code"}``.
    """

    def __init__(self, *, api_key: str = "pk_fake_public_key", agents: tuple[str, ...] = ("myrobot-agent",),
                 capacity: int | None = None, **kwargs: Any) -> None:
        self.api_key = api_key
        self.agents = set(agents)
        self.capacity = capacity  # max sessions in total; None = unlimited
        super().__init__(**kwargs)

    def default_error(self, status: int) -> Any:
        return {"error": f"injected {status}", "code": str(status)}

    def reset_state(self) -> None:
        self.sessions: list[dict[str, Any]] = []
        self.busy_until = 0.0
        self.refused_at_capacity = 0

    def at_capacity_for(self, seconds: float) -> None:
        """Every start answers 429 PCC-AGENT-AT-CAPACITY for the next ``seconds`` (wall clock)."""
        self.busy_until = time.monotonic() + seconds

    def at_capacity(self, times: int = 1) -> None:
        """The next ``times`` starts answer 429 PCC-AGENT-AT-CAPACITY."""
        self.fail_next("POST /v1/public/*/start", 429, times=times, json={
            "error": "Agent pool at capacity, try again later", "code": "PCC-AGENT-AT-CAPACITY"})

    @property
    def started(self) -> list[dict[str, Any]]:
        """Bodies (the ``body`` field) of the bots started, in order."""
        return [s["body"] for s in self.sessions]

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/public/{agent}/start", self._start)

    async def _start(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or header[7:].strip() != self.api_key:
            return error(401, {"error": "Unauthorized: invalid or missing public API key", "code": "401"})
        agent = request.match_info["agent"]
        if agent not in self.agents:
            return error(404, {"error": f"Service '{agent}' not found", "code": "404"})
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            return error(413, {"error": "Request body too large", "code": "413"})
        try:
            data = await request.json()
        except ValueError:
            return error(400, {"error": "Invalid JSON body", "code": "400"})
        if not isinstance(data, dict) or not isinstance(data.get("createDailyRoom", False), bool):
            return error(400, {"error": "createDailyRoom must be a boolean", "code": "400"})
        if "body" in data and not isinstance(data["body"], dict):
            return error(400, {"error": "body must be an object", "code": "400"})
        if (self.capacity is not None and len(self.sessions) >= self.capacity) or time.monotonic() < self.busy_until:
            self.refused_at_capacity += 1
            return error(429, {"error": "Agent pool at capacity, try again later", "code": "PCC-AGENT-AT-CAPACITY"})
        session_id = str(uuid.uuid4())
        self.sessions.append({"agent": agent, "sessionId": session_id, "body": data.get("body", {}), "request": data})
        return web.json_response({"dailyRoom": "", "dailyToken": "", "sessionId": session_id})


class FakeRunner(FakeServer):
    """Pipecat's development runner (``python bot.py``): ``POST /start``, ``GET /status``.

    It decides the transport as the real one does: the request's
    ``transport``, else ``daily`` when ``createDailyRoom`` is true, else the
    ``-t`` option (``cli_transport``), else WebRTC — which only registers a
    session and never runs the bot (``started`` stays empty).
    """

    def __init__(self, *, cli_transport: str | None = None, **kwargs: Any) -> None:
        self.cli_transport = cli_transport
        super().__init__(**kwargs)

    def reset_state(self) -> None:
        self.started: list[dict[str, Any]] = []  # bodies handed to bot()
        self.webrtc_sessions: list[str] = []

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/start", self._start)
        app.router.add_get("/status", self._status)

    async def _status(self, request: web.Request) -> web.Response:
        transports = [self.cli_transport] if self.cli_transport else ["webrtc", "daily"]
        return web.json_response({"status": "ready", "transports": transports})

    async def _start(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        transport = data.get("transport")
        if transport is None and data.get("createDailyRoom", False):
            transport = "daily"
        if transport is None:
            transport = self.cli_transport or "webrtc"
        if self.cli_transport is not None and transport != self.cli_transport:
            return error(400, {"detail": f"Transport '{transport}' is not allowed. Server is configured for "
                                         f"'{self.cli_transport}' only (-t {self.cli_transport})."})
        if transport == "webrtc":
            session_id = str(uuid.uuid4())
            self.webrtc_sessions.append(session_id)
            return web.json_response({"sessionId": session_id})
        if transport != "daily":
            return error(400, {"detail": f"Transport '{transport}' is disabled in this runner environment."})
        self.started.append(data.get("body", {}))
        return web.json_response(None)
