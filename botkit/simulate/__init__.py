"""The call simulator: one scenario, one whole call, played as audio into the real bot.

``python -m botkit.simulate SCENARIO.json`` prints a JSON report; tests and the
sandbox (``make demo``) call ``await simulate(scenario)``. Only two things are
stand-ins: the transport (``transport.SimTransport``, Daily's events and audio
both ways) and OpenAI's HTTP API (``fake_openai.FakeOpenAI``, which the bot's
real OpenAI services reach over HTTP). Everything between them is ``bot.py``'s
pipeline as a real call runs it: Silero VAD, the turn analyser, the voicemail
detector, the DTMF aggregator, the aggregators, the TTS gate, idle handling,
the tools and the real ``StatusReporter`` — to a real server's ``/ws/bot/``
socket when the scenario gives ``status_url`` and ``status_token``, else to a
small recording socket here.

The report: ``heard`` (what the bot said, with when its sound began),
``status`` (the status messages as the socket carries them), ``transport``
(the calls the bot made on it), ``end_reason``, ``turns`` (per callee ``say``:
when its speech ended, when the bot's next sound began, the difference),
``llm_requests``, ``stt_requests``, ``tts_requests``, ``callee`` and ``events``.

Imports no Django.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from botkit import phi
from botkit.reporter import StatusReporter
from botrunner.agent_request import AgentRequest

from .fake_openai import FakeOpenAI
from .scenario import Scenario, Step
from .transport import Clock, SimTransport

__all__ = ["Scenario", "Step", "simulate", "demo_request"]

DEMO_PATIENT = {"first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1815-12-10",
                "appointment": "Tuesday at 3 PM with Dr Babbage"}


def demo_request(direction: str, status_url: str, status_token: str, workflow: dict[str, Any] | None = None,
                 ) -> dict[str, Any]:
    """An ``AgentRequest`` body for a demo patient of a demo clinic."""
    body: dict[str, Any] = {
        "room_url": "https://sandbox.daily.invalid/sim-room",
        "token": "sim-meeting-token",
        "session_id": "sim-" + secrets.token_hex(4),
        "patient_id": "1",
        "patient_data": dict(DEMO_PATIENT),
        "client_name": "Sunrise Family Clinic",
        "callback_number": "+15550001111",
        "organization_id": "1",
        "organization_slug": "sunrise",
        "workflow": {
            "slug": "appointment-reminder",
            "name": "Appointment reminder",
            "instructions": "Remind {first_name} of the appointment on {appointment} and ask whether they will come.",
            "first_message": "Hello {first_name}, this is Sunrise Family Clinic about your appointment.",
            "outcome_results": ["confirmed", "rescheduled", "declined"],
            "voicemail_message": "This is {clinic}. Please call us back at {callback_number}.",
            "silence_timeout_s": 6,
            "ring_timeout_s": 30,
            **(workflow or {}),
        },
        "status_url": status_url,
        "status_token": status_token,
    }
    if direction == "dial_in":
        body["dialin_settings"] = {"call_id": "sim-call", "call_domain": "sim-domain", "from_phone": "+15551230000"}
    else:
        body["dialout_settings"] = {"phone_number": "+15551230000"}
    return body


class StatusSocket:
    """A stand-in for the server's ``/ws/bot/<session>/`` when no real server is given: it records."""

    def __init__(self, token: str):
        self.token = token
        self.messages: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> "StatusSocket":
        app = web.Application()
        app.router.add_get("/ws/bot/{session}/", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/ws/bot/{{session}}/"
        return self

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=403)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        seen = {m["seq"] for m in self.messages}
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)
                if data.get("seq") not in seen:
                    seen.add(data.get("seq"))
                    self.messages.append(data)
        return ws

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _request_body(scenario: Scenario, status_url: str, status_token: str) -> dict[str, Any]:
    if scenario.agent_request:
        body = json.loads(json.dumps(scenario.agent_request))
        body.setdefault("status_url", status_url)
        body.setdefault("status_token", status_token)
        body["workflow"] = {**body.get("workflow", {}), **scenario.workflow}
        return body
    body = demo_request(scenario.direction, status_url, status_token, scenario.workflow)
    return body


def _turns(transport: SimTransport) -> list[dict[str, Any]]:
    """For each thing the callee said: when its speech ended, and when the bot's next sound began."""
    turns = []
    sayings = [s for s in transport.sayings if s["end_s"] is not None]
    for i, entry in enumerate(sayings):
        later = sayings[i + 1]["start_s"] if i + 1 < len(sayings) else None
        bot = next((t for t in transport.ear.audio_starts
                    if t > entry["end_s"] and (later is None or t < later)), None)
        turns.append({"text": entry["text"], "user_stopped_s": entry["end_s"], "bot_audio_s": bot,
                      "latency_ms": round((bot - entry["end_s"]) * 1000) if bot is not None else None})
    return turns


def _end_reason(status: list[dict[str, Any]]) -> str | None:
    for message in reversed(status):
        if message.get("event") == "ended":
            return message.get("data", {}).get("reason")
    for message in reversed(status):
        if message.get("event") == "error" and message.get("data", {}).get("fatal"):
            return "error"
    return None


async def simulate(scenario: Scenario | dict[str, Any], *, bot_module: Any = None,
                   on_transport: Any = None) -> dict[str, Any]:
    """Play ``scenario`` through bot.py (or ``bot_module``, something with its ``run_bot`` and
    ``create_services``) and return the report.

    ``on_transport(transport)`` is called with the call's ``SimTransport`` before the bot
    starts: the sandbox keeps it to delete the room under a running call (Cancel)."""
    if not isinstance(scenario, Scenario):
        scenario = Scenario.model_validate(scenario)
    if bot_module is None:
        import bot as bot_module  # the real bot.py, at the repository's root

    clock = Clock()
    transport = SimTransport(scenario, clock)
    if on_transport is not None:
        on_transport(transport)
    fake = await FakeOpenAI(scenario, clock.now, transport.segment_of).start()
    fake.on_speech = transport.ear.spoken_texts.append
    socket: StatusSocket | None = None
    if scenario.status_url and scenario.status_token:
        status_url, status_token = scenario.status_url, scenario.status_token
    else:
        status_token = secrets.token_urlsafe(16)
        socket = await StatusSocket(status_token).start()
        status_url = socket.url
    body = _request_body(scenario, status_url, status_token)
    if "{session}" in body["status_url"]:
        body["status_url"] = body["status_url"].format(session=body["session_id"])
    req = AgentRequest.model_validate(body)
    handle = phi.register(bot_module.sensitive_values_of(req))
    reporter = StatusReporter(req.status_url, req.status_token, backoff=(0.05, 0.2, 0.5))
    reporter.start()
    reporter.send("bot_started", {})
    services = bot_module.create_services(req, openai={"api_key": "sk-simulated", "base_url": fake.base_url})
    timed_out = False
    call = None
    try:
        run = asyncio.ensure_future(bot_module.run_bot(
            transport, req, reporter, services=services, call_options=dict(scenario.bot_args)))
        try:
            call = await asyncio.wait_for(asyncio.shield(run), scenario.timeout_s)
        except TimeoutError:
            timed_out = True
            run.cancel()
            try:
                await run
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
    finally:
        await reporter.close(timeout=5.0)
        phi.unregister(handle)
        transport.stop_media()
        await fake.stop()
        if socket is not None:
            await asyncio.sleep(0.05)
            await socket.stop()
    status = socket.messages if socket is not None else list(reporter.messages)
    return {
        "direction": scenario.direction,
        "session_id": req.session_id,
        "timed_out": timed_out,
        "duration_s": clock.now(),
        "end_reason": _end_reason(status),
        "heard": transport.ear.heard,
        "status": status,
        "transport": transport.calls,
        "turns": _turns(transport),
        "callee": transport.callee_log,
        "events": transport.events,
        "llm_requests": {"count": sum(1 for r in fake.llm_requests if r["kind"] == "chat"),
                         "classifier_count": sum(1 for r in fake.llm_requests if r["kind"] == "classifier"),
                         "requests": fake.llm_requests},
        "stt_requests": {"count": len(fake.stt_requests), "requests": fake.stt_requests},
        "tts_requests": {"count": len(fake.tts_requests), "requests": fake.tts_requests},
        "turn_latencies_ms": list(getattr(call, "turn_latencies_ms", []) or []),
    }


def load(path: str) -> Scenario:
    with open(path) as f:
        return Scenario.model_validate(json.load(f))


def quiet_logs(level: str | None = None) -> None:
    """Pipecat logs at DEBUG by default; a simulated call's report is on stdout, logs on stderr."""
    import sys

    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=level or os.environ.get("BOT_LOG_LEVEL", "WARNING"))
