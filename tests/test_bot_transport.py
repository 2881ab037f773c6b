"""bot.py with the real DailyTransport: its handlers fired as Daily would fire them.

Nothing reaches Daily: only ``start_dialout`` is replaced, ``pinlessCallUpdate``
goes to a small aiohttp server on 127.0.0.1 (through ``DAILY_API_URL``), and the
status events go to a recording WebSocket server.
"""

from __future__ import annotations

import asyncio
import os
import sys
from types import SimpleNamespace

import pytest
from aiohttp import web
from loguru import logger

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import bot  # noqa: E402
from botkit.reporter import StatusReporter  # noqa: E402
from tests.status_server import StatusServer  # noqa: E402
from botrunner.agent_request import AgentRequest  # noqa: E402
from pipecat.frames.frames import EndFrame, LLMRunFrame, TTSSpeakFrame  # noqa: E402
from pipecat.transports.daily.transport import DailyTransport  # noqa: E402

TOKEN = "status-token-1"


def request_body(direction: str, status_url: str, **workflow) -> dict:
    body = {
        "room_url": "https://example.daily.co/call-abc",
        "token": "meeting-token",
        "session_id": "abc",
        "patient_id": "7",
        "patient_data": {"first_name": "Ada", "last_name": "Lovelace"},
        "client_name": "Acme Clinic",
        "organization_id": "1",
        "organization_slug": "acme",
        "workflow": {
            "slug": "reminder",
            "name": "Reminder",
            "instructions": "Remind {first_name} of the appointment.",
            "first_message": "Hello {first_name}, this is {client_name}.",
            "outcome_results": ["confirmed", "rescheduled"],
            "max_dialout_attempts": 3,
            **workflow,
        },
        "status_url": status_url,
        "status_token": TOKEN,
    }
    if direction == "dial_in":
        body["dialin_settings"] = {
            "call_id": "call-id-1",
            "call_domain": "domain-1",
            "from_phone": "+15551230000",
            "to_phone": "+15559990000",
        }
    else:
        body["dialout_settings"] = {"phone_number": "+15551230000", "caller_id": "+15559990000"}
    return body


class FakeWorker:
    """What ``Call`` uses of a PipelineWorker."""

    def __init__(self):
        self.queued: list = []
        self.cancelled: list = []

    async def queue_frames(self, frames):
        self.queued.extend(frames)

    async def cancel(self, *, reason=None):
        self.cancelled.append(reason)


class Sleeps:
    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, delay):
        self.delays.append(delay)


async def settle(transport: DailyTransport) -> None:
    """Wait for the handler tasks Daily's events started (and those they started)."""
    for _ in range(20):
        tasks = [t for _, t in list(transport._event_tasks)]
        if not tasks:
            return
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def status_server():
    async with StatusServer(token=TOKEN) as server:
        yield server


@pytest.fixture
async def daily_api(monkeypatch):
    """A fake Daily REST API that records pinlessCallUpdate calls."""
    received: list[dict] = []

    async def pinless(request: web.Request):
        received.append({"auth": request.headers.get("Authorization"), "json": await request.json()})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/v1/dialin/pinlessCallUpdate", pinless)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    monkeypatch.setenv("DAILY_API_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("DAILY_API_KEY", "daily-key-1")
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}/v1", received=received)
    await runner.cleanup()


async def make_call(direction, status_server, **workflow):
    req = AgentRequest.model_validate(request_body(direction, status_server.url("abc"), **workflow))
    transport = bot.create_transport(req)
    reporter = StatusReporter(req.status_url, req.status_token, backoff=(0.01,))
    reporter.start()
    sleeps = Sleeps()
    timer_started = asyncio.Event()

    async def timer_sleep(delay):  # the max-duration timer waits until a test lets it go
        timer_started.set()
        await asyncio.Event().wait()

    # No voicemail detector here (no pipeline): the greeting follows the answer.
    call = bot.Call(req, reporter, transport, sleep=sleeps, timer_sleep=timer_sleep,
                    voicemail_detection=False, stop_grace_s=0)
    call.worker = FakeWorker()
    bot.register_event_handlers(transport, call)
    return SimpleNamespace(req=req, transport=transport, reporter=reporter, call=call, sleeps=sleeps)


async def finish(ctx) -> None:
    await settle(ctx.transport)
    ctx.call.finish()
    assert await ctx.reporter.close(timeout=5)


# -- construction -----------------------------------------------------------


async def test_dialin_transport_has_dialin_settings_and_api_url(status_server, daily_api):
    ctx = await make_call("dial_in", status_server)
    params = ctx.transport._params
    assert isinstance(ctx.transport, DailyTransport)
    assert params.dialin_settings is not None
    assert params.dialin_settings.call_id == "call-id-1"
    assert params.dialin_settings.call_domain == "domain-1"
    assert params.api_url == daily_api.url
    assert params.api_key == "daily-key-1"
    assert params.audio_in_enabled and params.audio_out_enabled
    assert ctx.call.dialout is None
    await ctx.reporter.close(timeout=1)


async def test_dialout_transport_has_no_dialin_settings_and_default_api_url(status_server, monkeypatch):
    monkeypatch.delenv("DAILY_API_URL", raising=False)
    ctx = await make_call("dial_out", status_server)
    assert ctx.transport._params.dialin_settings is None
    assert ctx.transport._params.api_url == "https://api.daily.co/v1"
    assert ctx.call.dialout is not None and ctx.call.dialout.max_attempts == 3
    await ctx.reporter.close(timeout=1)


async def test_every_handler_the_bot_relies_on_is_registered(status_server):
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(str(m)), level="WARNING")
    try:
        ctx = await make_call("dial_out", status_server)
    finally:
        logger.remove(sink)
    for name in bot.TRANSPORT_EVENTS:
        assert ctx.transport._event_handlers[name].handlers, f"no handler for {name}"
    assert not [w for w in warnings if "not registered" in w]
    await ctx.reporter.close(timeout=1)


# -- dial-in ------------------------------------------------------------------


async def test_dialin_call_reports_each_step_and_ends_when_the_caller_hangs_up(status_server, daily_api):
    ctx = await make_call("dial_in", status_server)
    t = ctx.transport
    await t._call_event_handler("on_joined", {"participants": {"local": {"id": "bot"}}})
    # The transport's own dialin-ready logic: pinlessCallUpdate, then our handler.
    await t._on_dialin_ready("sip:call-abc@sip.daily.co")
    await t._call_event_handler(
        "on_dialin_connected", {"sessionId": "sess-1", "sipFrom": "sip:+15551230000@carrier"}
    )
    await t._call_event_handler("on_first_participant_joined", {"id": "caller"})
    await settle(t)

    assert daily_api.received == [
        {
            "auth": "Bearer daily-key-1",
            "json": {"callId": "call-id-1", "callDomain": "domain-1", "sipUri": "sip:call-abc@sip.daily.co"},
        }
    ]
    # The bot speaks first with the personalised first message.
    speak = ctx.call.worker.queued[0]
    assert isinstance(speak, TTSSpeakFrame)
    # Calling law: the disclosure first (a person called us), then the personal greeting.
    assert speak.text == "Hello, you have reached the automated assistant of Acme Clinic. Hello Ada, this is Acme Clinic."

    await t._on_participant_left({"id": "caller"}, "hangup")
    await finish(ctx)

    assert isinstance(ctx.call.worker.queued[-1], EndFrame)
    assert status_server.events() == [
        "joined",
        "dialin_ready",
        "dialin_connected",
        "participant_left",
        "ended",
    ]
    assert status_server.event("dialin_ready") == [{"sip_endpoint": "sip:call-abc@sip.daily.co"}]
    assert status_server.event("dialin_connected") == [{"sessionId": "sess-1"}]  # no caller number
    assert status_server.event("participant_left") == [{"reason": "hangup"}]
    assert status_server.event("ended") == [{"reason": "completed"}]


async def test_dialin_error_is_fatal(status_server, daily_api):
    ctx = await make_call("dial_in", status_server)
    t = ctx.transport
    await t._call_event_handler("on_joined", {})
    await t._call_event_handler("on_dialin_error", {"sessionId": "s", "errorMsg": "sdp failed"})
    await t._call_event_handler("on_dialin_warning", {"sessionId": "s", "errorMsg": "codec"})
    await finish(ctx)
    assert status_server.event("dialin_error")[0]["error"] == "sdp failed"
    assert status_server.event("error") == [{"message": "dial-in failed: sdp failed", "fatal": True}]
    assert status_server.event("dialin_warning") == [{"sessionId": "s", "errorMsg": "codec"}]
    assert ctx.call.worker.cancelled
    assert "ended" not in status_server.events()


async def test_dialin_caller_who_never_arrives_fails_the_call(status_server, daily_api):
    ctx = await make_call("dial_in", status_server)
    await ctx.transport._call_event_handler("on_joined", {})
    await finish(ctx)  # e.g. the idle timeout ended the pipeline
    assert status_server.event("error") == [{"message": "the caller never reached the bot", "fatal": True}]


# -- dial-out -------------------------------------------------------------------


async def test_dialout_retries_on_errors_then_answers_and_greets(status_server):
    ctx = await make_call("dial_out", status_server)
    t = ctx.transport
    calls: list[dict] = []

    async def start_dialout(settings=None):
        calls.append(settings)
        return f"sess-{len(calls)}", None

    t.start_dialout = start_dialout  # the only thing replaced

    await t._call_event_handler("on_joined", {})
    await settle(t)
    assert calls == [{"phoneNumber": "+15551230000", "callerId": "+15559990000"}]

    await t._call_event_handler("on_dialout_error", {"sessionId": "sess-1", "errorMsg": "SIP 503"})
    await settle(t)
    await t._call_event_handler("on_dialout_warning", {"sessionId": "sess-2", "errorMsg": "codec"})
    await t._call_event_handler("on_dialout_connected", {"sessionId": "sess-2"})
    await t._call_event_handler("on_dialout_answered", {"sessionId": "sess-2"})
    await settle(t)
    assert ctx.call.worker.queued == []  # answered, but nobody has joined the room yet
    await t._call_event_handler("on_first_participant_joined", {"id": "patient"})
    await settle(t)
    assert [f.text for f in ctx.call.worker.queued] == [
        "Hello, this is an automated assistant calling from Acme Clinic. "
        "To stop these calls, say stop calling me at any time. Hello Ada, this is Acme Clinic."
    ]  # the disclosure, then the greeting, once the person is there

    await t._call_event_handler("on_dialout_stopped", {"sessionId": "sess-2"})
    await finish(ctx)

    assert len(calls) == 2 and ctx.sleeps.delays == [2.0]
    assert status_server.events() == [
        "joined",
        "dialout_attempt",
        "dialout_error",
        "dialout_attempt",
        "dialout_warning",
        "dialout_connected",
        "dialout_answered",
        "dialout_stopped",
        "ended",
    ]
    assert status_server.event("dialout_attempt") == [
        {"attempt": 1, "max_attempts": 3},
        {"attempt": 2, "max_attempts": 3},
    ]
    assert status_server.event("dialout_error") == [
        {"attempt": 1, "kind": "technical", "sessionId": "sess-1", "errorMsg": "SIP 503"}
    ]
    assert status_server.event("ended") == [{"reason": "completed"}]
    assert isinstance(ctx.call.worker.queued[-1], EndFrame)


async def test_dialout_gives_up_after_max_attempts(status_server):
    ctx = await make_call("dial_out", status_server)
    t = ctx.transport
    calls: list[dict] = []

    async def start_dialout(settings=None):
        calls.append(settings)
        return f"sess-{len(calls)}", None

    t.start_dialout = start_dialout
    await t._call_event_handler("on_joined", {})
    await settle(t)
    for n in (1, 2, 3):
        await t._call_event_handler("on_dialout_error", {"sessionId": f"sess-{n}", "errorMsg": "no route"})
        await settle(t)
    # A participant leaving before anyone answered does not end a dial-out by itself...
    await t._call_event_handler("on_participant_left", {"id": "x"}, "hangup")
    await finish(ctx)

    assert len(calls) == 3
    assert ctx.sleeps.delays == [2.0, 4.0]
    assert [d["attempt"] for d in status_server.event("dialout_attempt")] == [1, 2, 3]
    assert [d["attempt"] for d in status_server.event("dialout_error")] == [1, 2, 3]
    assert status_server.event("ended") == [
        {"reason": "dialout_failed", "error": "dial-out failed after 3 attempt(s): no route"}
    ]
    assert ctx.call.worker.queued == [ctx.call.worker.queued[0]]
    assert isinstance(ctx.call.worker.queued[0], EndFrame)  # ...the give-up did, once


async def test_start_dialout_error_without_an_event_is_retried(status_server):
    ctx = await make_call("dial_out", status_server)
    t = ctx.transport
    results = [(None, "rate limited"), ("sess-2", None)]
    calls: list[dict] = []

    async def start_dialout(settings=None):
        calls.append(settings)
        return results.pop(0)

    t.start_dialout = start_dialout
    await t._call_event_handler("on_joined", {})
    await settle(t)
    assert len(calls) == 2
    await finish(ctx)
    assert status_server.event("dialout_error") == [{"attempt": 1, "kind": "technical", "error": "rate limited"}]
    assert status_server.event("ended") == [{"reason": "no_answer"}]  # never answered


async def test_failed_join_cancels_and_reports_a_fatal_error(status_server):
    ctx = await make_call("dial_out", status_server)
    await ctx.transport._call_event_handler("on_error", "Error joining https://example.daily.co/x: 404")
    await finish(ctx)
    assert ctx.call.worker.cancelled
    assert status_server.event("error") == [
        {"message": "could not join the room: Error joining https://example.daily.co/x: 404", "fatal": True}
    ]
    assert "ended" not in status_server.events()


async def test_non_fatal_transport_error_after_join_is_reported(status_server):
    ctx = await make_call("dial_out", status_server)
    t = ctx.transport

    async def start_dialout(settings=None):
        return "sess-1", None

    t.start_dialout = start_dialout
    await t._call_event_handler("on_joined", {})
    await t._call_event_handler("on_error", "Unable to stop transcription")
    await settle(t)
    assert not ctx.call.worker.cancelled
    await finish(ctx)
    assert status_server.event("error") == [{"message": "Unable to stop transcription", "fatal": False}]


async def test_max_duration_says_goodbye_and_ends(status_server):
    req = AgentRequest.model_validate(request_body("dial_in", status_server.url("abc"), max_duration_s=30))
    transport = bot.create_transport(req)
    reporter = StatusReporter(req.status_url, req.status_token, backoff=(0.01,))
    reporter.start()
    waited: list[float] = []

    async def timer_sleep(delay):
        waited.append(delay)

    call = bot.Call(req, reporter, transport, timer_sleep=timer_sleep)
    call.worker = FakeWorker()
    bot.register_event_handlers(transport, call)
    await transport._call_event_handler("on_joined", {})
    await settle(transport)
    assert "max_duration" not in call._timers  # counted from the answer, not the join
    await transport._call_event_handler("on_dialin_connected", {"sessionId": "s"})
    await settle(transport)
    timer = call._timers.get("max_duration")
    if timer is not None:
        await timer
    ctx = SimpleNamespace(transport=transport, call=call, reporter=reporter)
    await finish(ctx)
    assert waited == [30]
    speak, end = call.worker.queued
    assert isinstance(speak, TTSSpeakFrame) and not speak.interruptible
    assert isinstance(end, EndFrame)
    assert status_server.event("ended") == [{"reason": "max_duration"}]


# -- the LLM's tools ------------------------------------------------------------


class Params:
    def __init__(self, **arguments):
        self.arguments = arguments
        self.results: list = []

    async def result_callback(self, result, *, properties=None):
        self.results.append((result, properties))


async def test_record_outcome_checks_the_allowed_results_and_reports(status_server):
    ctx = await make_call("dial_out", status_server)
    bad = Params(result="maybe")
    await ctx.call.record_outcome(bad)
    assert bad.results[0][0]["recorded"] is False
    good = Params(result="confirmed", notes="will come", data={"slot": "Tue 10:00"})
    await ctx.call.record_outcome(good)
    assert good.results == [({"recorded": True}, None)]
    await finish(ctx)
    assert status_server.event("outcome") == [
        {"result": "confirmed", "notes": "will come", "data": {"slot": "Tue 10:00"}}
    ]


async def test_end_call_says_goodbye_then_ends_completed(status_server):
    ctx = await make_call("dial_out", status_server, config={"goodbye": "Bye {first_name}!"})
    await ctx.transport._call_event_handler("on_dialout_answered", {"sessionId": "s"})
    await settle(ctx.transport)
    params = Params()
    await ctx.call.end_call(params)
    assert params.results[0][1].run_llm is False
    speak, end = ctx.call.worker.queued
    assert speak.text == "Bye Ada!" and not speak.interruptible
    assert isinstance(end, EndFrame)
    await ctx.call.end_call(Params())  # a second end is ignored
    assert len(ctx.call.worker.queued) == 2
    await finish(ctx)
    assert status_server.event("ended") == [{"reason": "completed"}]


async def test_callee_speaks_first_means_no_greeting(status_server):
    ctx = await make_call("dial_in", status_server, speaks_first="callee")
    await ctx.transport._call_event_handler("on_first_participant_joined", {"id": "p"})
    await settle(ctx.transport)
    assert ctx.call.worker.queued == []  # nothing over the caller
    # Their first words are answered with the disclosure, once, ahead of the LLM's reply.
    assert ctx.call.take_disclosure() == "Hello, you have reached the automated assistant of Acme Clinic."
    assert ctx.call.take_disclosure() == ""
    await ctx.reporter.close(timeout=1)


async def test_without_a_first_message_the_llm_opens(status_server):
    ctx = await make_call("dial_in", status_server, first_message="")
    await ctx.transport._call_event_handler("on_first_participant_joined", {"id": "p"})
    await settle(ctx.transport)
    # The disclosure, then the LLM opens.
    assert [type(f) for f in ctx.call.worker.queued] == [TTSSpeakFrame, LLMRunFrame]
    assert ctx.call.worker.queued[0].text == "Hello, you have reached the automated assistant of Acme Clinic."
    await ctx.reporter.close(timeout=1)


async def test_transcripts_are_reported(status_server):
    ctx = await make_call("dial_in", status_server)
    ctx.call.on_transcript("user", "  I can come on Tuesday ")
    ctx.call.on_transcript("assistant", "")
    ctx.call.on_transcript("assistant", "Great, see you then.")
    await ctx.reporter.close(timeout=5)
    assert status_server.event("transcript") == [
        {"role": "user", "text": "I can come on Tuesday"},
        {"role": "assistant", "text": "Great, see you then."},
    ]


async def test_the_real_pipeline_builds_offline(status_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    req = AgentRequest.model_validate(request_body("dial_out", status_server.url("abc")))
    transport = bot.create_transport(req)
    reporter = StatusReporter(req.status_url, req.status_token)
    call = bot.Call(req, reporter, transport)
    worker = bot.build_pipeline(transport, call)
    assert call.worker is worker
    assert worker._event_handlers["on_idle_timeout"].handlers
    for name in bot.TRANSPORT_EVENTS:
        assert transport._event_handlers[name].handlers, name


async def test_idle_while_ringing_is_not_the_end_but_idle_after_answer_is(status_server):
    ctx = await make_call("dial_out", status_server)
    t = ctx.transport

    async def start_dialout(settings=None):
        return "sess-1", None

    t.start_dialout = start_dialout
    await t._call_event_handler("on_joined", {})
    await settle(t)
    await ctx.call.on_idle_timeout()
    assert not ctx.call.ending and ctx.call.worker.queued == []

    await t._call_event_handler("on_dialout_answered", {"sessionId": "sess-1"})
    await settle(t)
    await ctx.call.on_idle_timeout()
    assert ctx.call.ending and isinstance(ctx.call.worker.queued[-1], EndFrame)
    await finish(ctx)
    assert status_server.event("ended") == [{"reason": "completed"}]


# -- the meeting ends under the bot (Cancel deletes the room) ------------------------


async def test_room_deleted_under_the_bot_stops_it_through_the_daily_clients_own_callbacks(status_server):
    """daily-python calls the client's ``on_call_state_updated("left")`` from its own thread; the
    client turns that into a "Disconnected" error and a state update, queued to its event task."""
    from pipecat.clocks.system_clock import SystemClock
    from pipecat.processors.frame_processor import FrameProcessorSetup
    from pipecat.transports.daily.transport import _CallState
    from pipecat.utils.asyncio.task_manager import TaskManager

    ctx = await make_call("dial_in", status_server)
    client = ctx.transport._client
    task_manager = TaskManager(loop=asyncio.get_running_loop())
    await client.setup(FrameProcessorSetup(clock=SystemClock(), task_manager=task_manager, pipeline_worker=None))
    try:
        # What join() leaves behind (the join itself would reach Daily).
        client._call_state = _CallState.JOINED
        client._joined_event.set()
        await ctx.transport._on_joined({})
        await ctx.transport._call_event_handler("on_dialin_connected", {"sessionId": "s"})
        await settle(ctx.transport)

        # Daily's thread: the room is gone.
        await asyncio.to_thread(client.on_call_state_updated, "left")
        await asyncio.wait_for(client._event_queue.join(), 2)
        await settle(ctx.transport)
        assert ctx.call.worker.cancelled == ["the meeting ended"]  # at once: no goodbye, no EndFrame
        assert not any(isinstance(f, EndFrame) for f in ctx.call.worker.queued)
        await finish(ctx)
        assert status_server.event("ended") == [{"reason": "remote_ended"}]
    finally:
        if client._event_task is not None:
            await task_manager.cancel_task(client._event_task)
            client._event_task = None


async def test_our_own_leave_is_not_a_remote_end(status_server):
    ctx = await make_call("dial_out", status_server)
    t = ctx.transport
    stopped: list = []

    async def start_dialout(settings=None):
        return "sess-1", None

    async def stop_dialout(participant_id):
        stopped.append(participant_id)

    t.start_dialout, t.stop_dialout = start_dialout, stop_dialout
    await t._call_event_handler("on_joined", {})
    await t._call_event_handler("on_participant_joined", {"id": "phone-leg"})
    await t._call_event_handler("on_dialout_answered", {"sessionId": "sess-1"})
    await settle(t)
    await ctx.call.end("completed", goodbye="Bye!")
    await t._on_before_leave()  # what DailyTransportClient.leave() runs first
    await t._call_event_handler("on_call_state_updated", "left")
    await t._on_left()
    await finish(ctx)
    assert stopped == ["phone-leg"]  # the bot hung up the phone leg before leaving
    assert not ctx.call.worker.cancelled
    assert status_server.event("ended") == [{"reason": "completed"}]
