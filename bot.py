"""MyRobot's Pipecat bot: one phone call, dial-in or dial-out, over Daily.

Everything the bot knows comes in the ``AgentRequest`` (``runner_args.body``,
see ``botrunner/agent_request.py``); it never imports Django or reads a database,
because in production it runs on Pipecat Cloud. What happens is reported back to
the server over a WebSocket (``botkit.reporter.StatusReporter``; docs/architecture.md,
"Status protocol").

Run locally with ``python bot.py``: Pipecat's development runner on
http://localhost:7860 with the Daily transport (``LOCAL_SERVER_URL``); the server
POSTs ``{"createDailyRoom": false, "body": <AgentRequest>}`` to ``/start``.

Environment: ``OPENAI_API_KEY`` (and ``OPENAI_BASE_URL`` to point elsewhere),
``DAILY_API_KEY`` / ``DAILY_API_URL`` (dial-in needs the key for
``pinlessCallUpdate``), optional ``OPENAI_LLM_MODEL``, ``OPENAI_STT_MODEL``,
``OPENAI_TTS_MODEL``, ``BOT_NAME``, ``BOT_LOG_LEVEL`` (default ``INFO``: at
``DEBUG`` Pipecat logs what is said on the call).
"""

from __future__ import annotations

import os

# Before loguru is imported: no variable values (a request body...) in tracebacks.
os.environ.setdefault("LOGURU_DIAGNOSE", "NO")

import asyncio  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from loguru import logger  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from botkit import phi  # noqa: E402
from botkit import prompt  # noqa: E402

# Installed at import, so it is in place before the runner logs a /start body.
phi.install_redaction()

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema  # noqa: E402
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema  # noqa: E402
from pipecat.audio.vad.silero import SileroVADAnalyzer  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    EndFrame,
    FunctionCallResultProperties,
    LLMRunFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.aggregators.llm_context import LLMContext  # noqa: E402
from pipecat.processors.aggregators.llm_response_universal import (  # noqa: E402
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.services.llm_service import FunctionCallParams  # noqa: E402
from pipecat.services.openai.llm import OpenAILLMService  # noqa: E402
from pipecat.services.openai.stt import OpenAISTTService  # noqa: E402
from pipecat.services.openai.tts import OpenAITTSService  # noqa: E402
from pipecat.transports.daily.transport import (  # noqa: E402
    DailyDialinSettings,
    DailyParams,
    DailyTransport,
)
from pipecat.turns.user_turn_strategies import UserTurnStrategies  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from botkit.dialout import DEFAULT_BACKOFF, DialoutManager, safe_daily_data  # noqa: E402
from botkit.reporter import StatusReporter  # noqa: E402
from botrunner.agent_request import AgentRequest  # noqa: E402

DEFAULT_DAILY_API_URL = "https://api.daily.co/v1"
REPORTER_CLOSE_TIMEOUT_S = 5.0

# Every transport event the bot relies on. A misspelled name only logs a
# warning in Pipecat, so tests check each of these has a handler.
TRANSPORT_EVENTS = (
    "on_joined",
    "on_left",
    "on_error",
    "on_first_participant_joined",
    "on_participant_left",
    "on_dialin_ready",
    "on_dialin_connected",
    "on_dialin_stopped",
    "on_dialin_error",
    "on_dialin_warning",
    "on_dialout_answered",
    "on_dialout_connected",
    "on_dialout_stopped",
    "on_dialout_error",
    "on_dialout_warning",
)


# ---------------------------------------------------------------------------
# The request
# ---------------------------------------------------------------------------


def parse_request(body: Any) -> tuple[AgentRequest | None, list[str]]:
    """``(request, [])`` or ``(None, names of the fields that are wrong)``.

    The field names are safe to log; pydantic's own messages quote the values
    (patient data), so they are never logged.
    """
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except ValueError:
            return None, ["(body is not JSON)"]
    try:
        return AgentRequest.model_validate(body), []
    except ValidationError as e:
        fields = sorted({".".join(str(p) for p in err.get("loc", ())) or "(body)" for err in e.errors()})
        return None, fields


async def report_invalid_request(body: Any, fields: list[str]) -> bool:
    """Tell the server a start failed on a bad body, when the body says where. True if reported."""
    if not isinstance(body, dict):
        return False
    url, token = body.get("status_url"), body.get("status_token")
    if not (isinstance(url, str) and url and isinstance(token, str) and token):
        return False
    reporter = StatusReporter(url, token)
    reporter.start()
    reporter.send(
        "error",
        {"message": "invalid agent request: " + ", ".join(fields), "fatal": True},
    )
    return await reporter.close(timeout=REPORTER_CLOSE_TIMEOUT_S)


def sensitive_values_of(req: AgentRequest) -> set[str]:
    phones: list[str | None] = []
    if req.dialout_settings:
        phones.append(req.dialout_settings.phone_number)
    if req.dialin_settings:
        phones.append(req.dialin_settings.from_phone)
    return phi.sensitive_values(req.patient_data, phones)


# ---------------------------------------------------------------------------
# Transport
# ---------------------------------------------------------------------------


def create_transport(req: AgentRequest) -> DailyTransport:
    """The Daily transport for this call (dial-in settings when the patient calls us)."""
    api_key = os.environ.get("DAILY_API_KEY", "")
    api_url = os.environ.get("DAILY_API_URL") or DEFAULT_DAILY_API_URL
    dialin_settings = None
    if req.dialin_settings is not None:
        dialin_settings = DailyDialinSettings(
            call_id=req.dialin_settings.call_id,
            call_domain=req.dialin_settings.call_domain,
        )
        if not api_key:
            logger.warning("DAILY_API_KEY is not set: the dial-in caller cannot be connected")
    params = DailyParams(
        api_key=api_key,
        api_url=api_url,
        audio_in_enabled=True,
        audio_out_enabled=True,
        camera_out_enabled=False,
        dialin_settings=dialin_settings,
    )
    bot_name = os.environ.get("BOT_NAME") or (req.workflow.config or {}).get("bot_name") or "MyRobot"
    return DailyTransport(req.room_url, req.token, str(bot_name), params)


# ---------------------------------------------------------------------------
# One call: what the event handlers do, and how it ends
# ---------------------------------------------------------------------------


class Call:
    """The state of one call and the reactions to Daily's and the LLM's events.

    Kept apart from the pipeline so tests can drive it with a real
    ``DailyTransport`` and no audio services. ``worker`` is the
    ``PipelineWorker`` (anything with ``queue_frames`` and ``cancel``), set once
    the pipeline exists.

    Ending: ``end(reason)`` lets a goodbye finish (a ``TTSSpeakFrame`` followed
    by an ``EndFrame``); ``fail(message)`` reports a fatal ``error`` and cancels.
    ``ended {reason}`` is reported by ``finish()``, after the pipeline is done:
    the server deletes the room as soon as the call is final, which would cut
    the goodbye off.
    """

    def __init__(
        self,
        req: AgentRequest,
        reporter: StatusReporter,
        transport: Any,
        *,
        sleep=asyncio.sleep,
        timer_sleep=asyncio.sleep,
        dialout_backoff=DEFAULT_BACKOFF,
    ):
        self.req = req
        self.reporter = reporter
        self.transport = transport
        self.worker: Any = None
        self._timer_sleep = timer_sleep

        self.joined = False
        self.connected = False          # a person is on the line
        self.participant_joined = False
        self.greeted = False
        self.end_reason: str | None = None
        self.ending = False
        self.fatal_error: str | None = None
        self.outcome: dict[str, Any] | None = None
        self._finished = False
        self._timer: asyncio.Task | None = None

        self.dialout: DialoutManager | None = None
        if req.dialout_settings is not None:
            self.dialout = DialoutManager(
                transport,
                reporter,
                phone_number=req.dialout_settings.phone_number,
                caller_id=req.dialout_settings.caller_id,
                max_attempts=req.workflow.max_dialout_attempts,
                on_give_up=self._dialout_gave_up,
                backoff=dialout_backoff,
                sleep=sleep,
            )

    @property
    def is_dialin(self) -> bool:
        return self.req.is_dialin

    def report(self, event: str, data: dict[str, Any] | None = None) -> int:
        return self.reporter.send(event, data or {})

    # -- transport events ---------------------------------------------------

    async def on_joined(self, data: Any = None) -> None:
        self.joined = True
        self.report("joined")
        self._start_timer()
        if self.dialout is not None:
            await self.dialout.start()

    async def on_left(self) -> None:
        # Ours (after an EndFrame) or Daily's (room deleted or expired): either way the call is over.
        if not self.ending:
            logger.info("left the room")
            await self.end(None)

    async def on_error(self, message: Any) -> None:
        text = phi.redact(message)
        if not self.joined:
            await self.fail(f"could not join the room: {text}")
        elif self.is_dialin and not self.connected and "dialin-ready" in text:
            await self.fail(f"could not connect the caller: {text}")
        else:
            logger.warning(f"transport error: {text}")
            self.report("error", {"message": text, "fatal": False})

    async def on_first_participant_joined(self, participant: Any = None) -> None:
        self.participant_joined = True
        await self.maybe_greet()

    async def on_participant_left(self, participant: Any = None, reason: Any = None) -> None:
        self.report("participant_left", {"reason": str(reason or "")})
        if self.is_dialin or (self.dialout is not None and self.dialout.answered):
            await self.end("completed")

    async def on_dialin_ready(self, sip_endpoint: Any) -> None:
        self.report("dialin_ready", {"sip_endpoint": str(sip_endpoint or "")})

    async def on_dialin_connected(self, data: Any) -> None:
        self.connected = True
        self.report("dialin_connected", safe_daily_data(data))

    async def on_dialin_stopped(self, data: Any) -> None:
        self.report("dialin_stopped", safe_daily_data(data))
        await self.end("completed")

    async def on_dialin_error(self, data: Any) -> None:
        info = safe_daily_data(data)
        self.report("dialin_error", {"error": info.get("errorMsg") or info.get("error") or "", **info})
        await self.fail("dial-in failed: " + str(info.get("errorMsg") or info.get("error") or "unknown error"))

    async def on_dialin_warning(self, data: Any) -> None:
        self.report("dialin_warning", safe_daily_data(data))

    async def on_dialout_answered(self, data: Any) -> None:
        self.connected = True
        if self.dialout is not None:
            await self.dialout.handle_answered(data)
        await self.maybe_greet()

    async def on_dialout_connected(self, data: Any) -> None:
        self.report("dialout_connected", safe_daily_data(data))

    async def on_dialout_stopped(self, data: Any) -> None:
        if self.dialout is None:
            self.report("dialout_stopped", safe_daily_data(data))
            return
        answered = self.dialout.answered
        await self.dialout.handle_stopped(data)  # reports, and gives up when never answered
        if answered:
            await self.end("completed")  # the patient hung up

    async def on_dialout_error(self, data: Any) -> None:
        if self.dialout is not None:
            await self.dialout.handle_error(data)
        else:
            self.report("dialout_error", safe_daily_data(data))

    async def on_dialout_warning(self, data: Any) -> None:
        self.report("dialout_warning", safe_daily_data(data))

    async def on_idle_timeout(self) -> None:
        """Nothing said for a while. Ringing (dial-out retries) is not idleness; anything else ends the call."""
        if self.dialout is not None and not self.dialout.answered and not self.dialout.finished:
            logger.info("idle while dialling: keep waiting")
            return
        logger.info("idle timeout: ending the call")
        await self.end(None)

    # -- conversation -------------------------------------------------------

    async def maybe_greet(self) -> None:
        """Open the conversation once someone can hear it (dial-out: answered and joined)."""
        if self.greeted or self.ending or self.worker is None or not self.participant_joined:
            return
        if self.dialout is not None and not self.dialout.answered:
            return
        self.greeted = True
        if self.req.workflow.speaks_first != "bot":
            return
        text = prompt.first_message(self.req)
        if text:
            await self.worker.queue_frames([TTSSpeakFrame(text)])
        else:
            await self.worker.queue_frames([LLMRunFrame()])

    def on_transcript(self, role: str, text: Any) -> None:
        text = str(text or "").strip()
        if text:
            self.report("transcript", {"role": role, "text": text})

    async def record_outcome(self, params: FunctionCallParams) -> None:
        """LLM tool: the call's outcome, one of the workflow's allowed results."""
        args = dict(params.arguments or {})
        result = str(args.get("result") or "").strip()
        allowed = list(self.req.workflow.outcome_results or [])
        if not result or (allowed and result not in allowed):
            await params.result_callback(
                {"recorded": False, "error": "result must be one of: " + ", ".join(allowed)}
                if allowed
                else {"recorded": False, "error": "result is required"}
            )
            return
        data = args.get("data")
        self.outcome = {
            "result": result,
            "notes": str(args.get("notes") or ""),
            "data": data if isinstance(data, dict) else {},
        }
        self.report("outcome", self.outcome)
        logger.info(f"outcome recorded: {result}")
        await params.result_callback({"recorded": True})

    async def end_call(self, params: FunctionCallParams) -> None:
        """LLM tool: say goodbye, then hang up."""
        args = dict(params.arguments or {})
        goodbye = str(args.get("goodbye") or "").strip() or prompt.goodbye(self.req)
        await params.result_callback(
            {"ending": True}, properties=FunctionCallResultProperties(run_llm=False)
        )
        await self.end("completed", goodbye=goodbye)

    # -- ending -------------------------------------------------------------

    def _start_timer(self) -> None:
        if self._timer is None and self.req.workflow.max_duration_s > 0:
            self._timer = asyncio.create_task(self._max_duration())

    async def _max_duration(self) -> None:
        await self._timer_sleep(self.req.workflow.max_duration_s)
        logger.info("max duration reached")
        await self.end("max_duration", goodbye=prompt.MAX_DURATION_GOODBYE if self.connected else None)

    async def _dialout_gave_up(self, reason: str) -> None:
        await self.end(reason)

    async def end(self, reason: str | None, *, goodbye: str | None = None) -> None:
        """End the call gracefully: the goodbye (if any) plays out, then the pipeline ends."""
        if self.ending:
            return
        self.ending = True
        self.end_reason = reason
        if self.dialout is not None:
            self.dialout.stop()
        self._cancel_timer()
        logger.info(f"ending the call ({reason or 'default reason'})")
        if self.worker is not None:
            frames: list[Any] = []
            if goodbye:
                speak = TTSSpeakFrame(goodbye)
                speak.interruptible = False
                frames.append(speak)
            frames.append(EndFrame())
            await self.worker.queue_frames(frames)

    async def fail(self, message: str) -> None:
        """A fatal error: report it and cancel the pipeline at once."""
        if self.fatal_error is not None:
            return
        self.fatal_error = message
        self.ending = True
        if self.dialout is not None:
            self.dialout.stop()
        self._cancel_timer()
        logger.error(f"call failed: {message}")
        self.report("error", {"message": message, "fatal": True})
        if self.worker is not None:
            await self.worker.cancel(reason=message)

    def default_end_reason(self) -> str | None:
        if self.dialout is not None:
            return "completed" if self.dialout.answered else "no_answer"
        return "completed" if self.connected else None

    def finish(self) -> None:
        """After the pipeline is done: report ``ended`` (unless a fatal error was reported)."""
        if self._finished:
            return
        self._finished = True
        self._cancel_timer()
        if self.fatal_error is not None:
            return
        reason = self.end_reason or self.default_end_reason()
        if reason is None:
            self.fatal_error = "the caller never reached the bot"
            self.report("error", {"message": self.fatal_error, "fatal": True})
            return
        self.end_reason = reason
        data: dict[str, Any] = {"reason": reason}
        if reason == "dialout_failed" and self.dialout is not None:
            data["error"] = self.dialout.failure_summary()  # shown to staff on the failed call
        self.report("ended", data)

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and not timer.done() and timer is not asyncio.current_task():
            timer.cancel()


def register_event_handlers(transport: DailyTransport, call: Call) -> None:
    """Daily's events -> the call. Every name here is in ``TRANSPORT_EVENTS``."""

    @transport.event_handler("on_joined")
    async def on_joined(transport, data):
        await call.on_joined(data)

    @transport.event_handler("on_left")
    async def on_left(transport):
        await call.on_left()

    @transport.event_handler("on_error")
    async def on_error(transport, message):
        await call.on_error(message)

    @transport.event_handler("on_first_participant_joined")
    async def on_first_participant_joined(transport, participant):
        await call.on_first_participant_joined(participant)

    @transport.event_handler("on_participant_left")
    async def on_participant_left(transport, participant, reason):
        await call.on_participant_left(participant, reason)

    @transport.event_handler("on_dialin_ready")
    async def on_dialin_ready(transport, sip_endpoint):
        await call.on_dialin_ready(sip_endpoint)

    @transport.event_handler("on_dialin_connected")
    async def on_dialin_connected(transport, data):
        await call.on_dialin_connected(data)

    @transport.event_handler("on_dialin_stopped")
    async def on_dialin_stopped(transport, data):
        await call.on_dialin_stopped(data)

    @transport.event_handler("on_dialin_error")
    async def on_dialin_error(transport, data):
        await call.on_dialin_error(data)

    @transport.event_handler("on_dialin_warning")
    async def on_dialin_warning(transport, data):
        await call.on_dialin_warning(data)

    @transport.event_handler("on_dialout_answered")
    async def on_dialout_answered(transport, data):
        await call.on_dialout_answered(data)

    @transport.event_handler("on_dialout_connected")
    async def on_dialout_connected(transport, data):
        await call.on_dialout_connected(data)

    @transport.event_handler("on_dialout_stopped")
    async def on_dialout_stopped(transport, data):
        await call.on_dialout_stopped(data)

    @transport.event_handler("on_dialout_error")
    async def on_dialout_error(transport, data):
        await call.on_dialout_error(data)

    @transport.event_handler("on_dialout_warning")
    async def on_dialout_warning(transport, data):
        await call.on_dialout_warning(data)


# ---------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------


def _openai_kwargs() -> dict[str, Any]:
    kwargs: dict[str, Any] = {"api_key": os.environ.get("OPENAI_API_KEY")}
    if os.environ.get("OPENAI_BASE_URL"):
        kwargs["base_url"] = os.environ["OPENAI_BASE_URL"]
    return kwargs


def _settings(cls: Any, **values: Any) -> Any:
    """``cls.Settings(...)`` with only the values that are set (unset ones keep the service's defaults)."""
    return cls.Settings(**{k: v for k, v in values.items() if v not in (None, "")})


def build_tools(req: AgentRequest) -> ToolsSchema:
    return ToolsSchema(
        standard_tools=[
            FunctionSchema(
                name="record_outcome",
                description="Record the outcome of this call for the staff.",
                properties=prompt.record_outcome_properties(req.workflow.outcome_results),
                required=["result"],
            ),
            FunctionSchema(
                name="end_call",
                description="Say goodbye and hang up. Call it when the conversation is over.",
                properties=prompt.END_CALL_PROPERTIES,
                required=[],
            ),
        ]
    )


def build_pipeline(transport: DailyTransport, call: Call, runner_args: Any = None) -> PipelineWorker:
    """The pipeline for ``call`` (STT -> LLM -> TTS over Daily), with every handler wired."""
    req = call.req
    wf = req.workflow

    stt = OpenAISTTService(
        **_openai_kwargs(),
        settings=_settings(OpenAISTTService, model=os.environ.get("OPENAI_STT_MODEL")),
    )
    llm = OpenAILLMService(
        **_openai_kwargs(),
        settings=_settings(
            OpenAILLMService,
            model=os.environ.get("OPENAI_LLM_MODEL"),
            system_instruction=prompt.build_system_prompt(req),
        ),
    )
    tts = OpenAITTSService(
        **_openai_kwargs(),
        settings=_settings(
            OpenAITTSService, model=os.environ.get("OPENAI_TTS_MODEL"), voice=wf.voice or None
        ),
    )
    llm.register_function("record_outcome", call.record_outcome)
    llm.register_function("end_call", call.end_call)

    context = LLMContext(tools=build_tools(req))
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(),
            user_turn_strategies=UserTurnStrategies(),
        ),
    )

    pipeline = Pipeline(
        [
            transport.input(),
            stt,
            user_aggregator,
            llm,
            tts,
            transport.output(),
            assistant_aggregator,
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(enable_metrics=False),
        enable_rtvi=False,
        idle_timeout_secs=getattr(runner_args, "pipeline_idle_timeout_secs", 300),
        cancel_on_idle_timeout=False,  # the call decides (see Call.on_idle_timeout)
    )
    call.worker = worker

    @worker.event_handler("on_idle_timeout")
    async def on_idle_timeout(worker):
        await call.on_idle_timeout()

    @user_aggregator.event_handler("on_user_turn_stopped")
    async def on_user_turn_stopped(aggregator, strategy, message):
        call.on_transcript("user", message.content)

    @assistant_aggregator.event_handler("on_assistant_turn_stopped")
    async def on_assistant_turn_stopped(aggregator, message):
        call.on_transcript("assistant", message.content)

    register_event_handlers(transport, call)
    return worker


async def run_bot(transport: DailyTransport, call: Call, runner_args: Any = None) -> None:
    """Build the pipeline for ``call`` and run it until the call ends."""
    worker = build_pipeline(transport, call, runner_args)
    runner = WorkerRunner(handle_sigint=bool(getattr(runner_args, "handle_sigint", False)))
    await runner.add_workers(worker)
    await runner.run()


# ---------------------------------------------------------------------------
# Entry point (Pipecat's development runner and Pipecat Cloud call this)
# ---------------------------------------------------------------------------


async def bot(runner_args: Any) -> None:
    """Run one call described by ``runner_args.body`` (an ``AgentRequest``)."""
    phi.configure_logging()
    body = getattr(runner_args, "body", None)
    req, bad_fields = parse_request(body)
    if req is None:
        session_id = body.get("session_id") if isinstance(body, dict) else None
        logger.error(
            f"invalid agent request for session {session_id if isinstance(session_id, str) else '?'}; "
            f"fields: {', '.join(bad_fields)}"
        )
        reported = await report_invalid_request(body, bad_fields)
        if not reported:
            logger.error("the invalid request could not be reported to the server")
        return

    handle = phi.register(sensitive_values_of(req))
    reporter = StatusReporter(req.status_url, req.status_token)
    reporter.start()
    reporter.send("bot_started", {})
    direction = "dial-in" if req.is_dialin else "dial-out"
    logger.info(f"call {req.session_id}: {direction}, workflow {req.workflow.slug}")
    call: Call | None = None
    try:
        transport = create_transport(req)
        call = Call(req, reporter, transport)
        await run_bot(transport, call, runner_args)
    except asyncio.CancelledError:
        logger.warning(f"call {req.session_id}: bot cancelled")
        raise
    except Exception as e:
        message = f"bot crashed: {type(e).__name__}: {phi.redact(e)}"
        logger.error(f"call {req.session_id}: {message}")
        if call is not None:
            await call.fail(message)
        else:
            reporter.send("error", {"message": message, "fatal": True})
    finally:
        if call is not None:
            call.finish()
        await reporter.close(timeout=REPORTER_CLOSE_TIMEOUT_S)
        phi.unregister(handle)
        logger.info(f"call {req.session_id}: bot done")


def _has_transport_flag(argv: list[str]) -> bool:
    for arg in argv:
        if arg in ("-t", "--transport") or arg.startswith("--transport="):
            return True
        if arg.startswith("-t") and not arg.startswith("--") and len(arg) > 2:
            return True
    return False


def main() -> None:
    """``python bot.py`` -> Pipecat's development runner, Daily transport unless ``-t`` says otherwise."""
    if not _has_transport_flag(sys.argv[1:]):
        sys.argv[1:1] = ["-t", "daily"]
    from pipecat.runner.run import main as runner_main

    runner_main()


if __name__ == "__main__":
    main()
