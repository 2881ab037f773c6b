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
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

from loguru import logger  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from botkit import phi  # noqa: E402
from botkit import identity  # noqa: E402
from botkit import prompt  # noqa: E402
from botkit import scheduling  # noqa: E402

# Installed at import, so it is in place before the runner logs a /start body.
phi.install_redaction()

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema  # noqa: E402
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema  # noqa: E402
from pipecat.audio.vad.silero import SileroVADAnalyzer  # noqa: E402
from pipecat.classifiers.base_classifier import BaseClassifier  # noqa: E402
from pipecat.classifiers.llm.classifier import LLMClassifier  # noqa: E402
from pipecat.extensions.voicemail.voicemail_detector import VoicemailDetector  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    EndFrame,
    ErrorFrame,
    Frame,
    FunctionCallResultProperties,
    InterruptionFrame,
    LLMRunFrame,
    TTSSpeakFrame,
)
from pipecat.observers.service_metrics_observer import ServiceLatencyKind, ServiceMetricsObserver  # noqa: E402
from pipecat.observers.user_bot_latency_observer import UserBotLatencyObserver  # noqa: E402
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.aggregators.dtmf_aggregator import DTMFAggregator  # noqa: E402
from pipecat.processors.aggregators.llm_context import LLMContext  # noqa: E402
from pipecat.processors.aggregators.llm_response_universal import (  # noqa: E402
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameProcessor  # noqa: E402
from pipecat.services.llm_service import FunctionCallParams  # noqa: E402
from pipecat.services.openai.llm import OpenAILLMService  # noqa: E402
from pipecat.services.openai.stt import OpenAISTTService  # noqa: E402
from pipecat.services.openai.tts import OpenAITTSService  # noqa: E402
from pipecat.transcriptions.language import Language  # noqa: E402
from pipecat.transports.daily.transport import (  # noqa: E402
    DailyDialinSettings,
    DailyParams,
    DailySIPTransferFrame,
    DailyTransport,
)
from pipecat.turns.user_turn_strategies import UserTurnStrategies  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from botkit.dialout import DEFAULT_BACKOFF, DEFAULT_STOP_GRACE_S, DialoutManager, safe_daily_data  # noqa: E402
from botkit.reporter import StatusReporter  # noqa: E402
from botkit.screening import DiscloseBeforeReply, HoldUntilPerson  # noqa: E402
from botrunner.agent_request import AgentRequest  # noqa: E402

DEFAULT_DAILY_API_URL = "https://api.daily.co/v1"
REPORTER_CLOSE_TIMEOUT_S = 5.0

# Every transport event the bot relies on; each is handled by the ``Call``
# method of the same name (``register_event_handlers``). A misspelled name only
# logs a warning in Pipecat, so tests check each of these has a handler.
TRANSPORT_EVENTS = (
    "on_joined",
    "on_left",
    "on_error",
    "on_call_state_updated",
    "on_before_leave",
    "on_first_participant_joined",
    "on_participant_joined",
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
    "on_dtmf_event",
)

# Text of the error the Daily client raises when the meeting ends under the bot
# (room deleted or expired) rather than through the bot's own leave().
DISCONNECTED_PREFIX = "Disconnected from "

# The LLM and TTS services' errors end the call with this reason (see Call.on_service_error).
SERVICE_ERROR = "service_error"

# What Daily's output transport pushes as an error when a SIP transfer fails.
TRANSFER_ERROR_PREFIX = "Unable to transfer SIP call"
# A transfer that neither fails nor moves the phone leg away within this time is taken as done.
TRANSFER_TIMEOUT_S = 30.0


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
    """The state of one call and the reactions to Daily's, the LLM's and the pipeline's events.

    Kept apart from the pipeline so tests can drive it with a real
    ``DailyTransport``. ``worker`` is the ``PipelineWorker`` (anything with
    ``queue_frames`` and ``cancel``), set once the pipeline exists.

    Ending, three ways:

    * ``end(reason)`` — the normal end: the goodbye (if any) plays out, then an
      ``EndFrame``; when it reaches the output the transport leaves, and just
      before leaving (``on_before_leave``) the bot hangs up the phone leg it
      dialled (``stop_dialout``).
    * ``remote_ended()`` — Daily ended the meeting under the bot (the server's
      Cancel deleted the room, or it expired): cancel at once, nobody is there.
    * ``fail(message)`` — a fatal error: report it and cancel.

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
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
        voicemail_detection: bool | None = None,
    ):
        self.req = req
        self.reporter = reporter
        self.transport = transport
        self.worker: Any = None
        self._timer_sleep = timer_sleep

        self.joined = False
        self.connected = False          # the phone leg is up (answered / dial-in connected)
        self.participant_joined = False
        self.phone_participant_id: str | None = None
        # Dial-out: a person (not a mailbox) must be confirmed before anything
        # personal is said. Dial-in: whoever calls us is a person.
        self.voicemail_detection = (
            (req.dialout_settings is not None) if voicemail_detection is None else voicemail_detection
        )
        self.person_confirmed = not self.voicemail_detection
        self.disclosure_pending = ""  # speaks_first="callee": said when they finish their first words
        self.voicemail_heard = False
        self.greeted = False
        self.asked_still_there = False
        self.end_reason: str | None = None
        self.end_data: dict[str, Any] = {}
        self.ending = False
        self.leaving = False            # our own leave() has begun
        self.remote_end = False
        self.transferring = False
        self.fatal_error: str | None = None
        self.outcome: dict[str, Any] | None = None
        self.turn_latencies_ms: list[int] = []
        self._pending_metrics: dict[str, int] = {}
        self._finished = False
        self._timers: dict[str, asyncio.Task] = {}
        # Calling law: the server's tools (verify_identity), whether the person is verified
        # (the patient's details beyond the first name arrive only then), and opt-out.
        self.tools = identity.ServerTools(req.tools_url, req.status_token) if req.tools_url else None
        self.verified = not identity.verifies(req)
        self.opted_out = False
        self._phi_handles: list[Any] = []

        self.dialout: DialoutManager | None = None
        if req.dialout_settings is not None:
            self.dialout = DialoutManager(
                transport,
                reporter,
                phone_number=req.dialout_settings.phone_number,
                caller_id=req.dialout_settings.caller_id,
                max_attempts=req.workflow.max_dialout_attempts,
                ring_timeout_s=req.workflow.ring_timeout_s,
                on_give_up=self._dialout_gave_up,
                backoff=dialout_backoff,
                stop_grace_s=stop_grace_s,
                sleep=sleep,
                ring_sleep=timer_sleep,
            )

    @property
    def is_dialin(self) -> bool:
        return self.req.is_dialin

    def report(self, event: str, data: dict[str, Any] | None = None) -> int:
        return self.reporter.send(event, data or {})

    # -- transport events (one method per name in TRANSPORT_EVENTS) -----------

    async def on_joined(self, data: Any = None) -> None:
        self.joined = True
        self.report("joined")
        if self.dialout is not None:
            await self.dialout.start()

    async def on_left(self) -> None:
        # After our own leave() the pipeline is ending anyway; otherwise Daily ended the meeting.
        if not self.leaving:
            await self.remote_ended()

    async def on_call_state_updated(self, state: Any) -> None:
        if state == "left" and not self.leaving:
            await self.remote_ended()

    async def on_before_leave(self) -> None:
        """The transport is about to leave (the EndFrame reached it): hang up the phone leg first."""
        self.leaving = True
        await self.hang_up()

    async def on_error(self, message: Any) -> None:
        text = phi.redact(message)
        if str(message).startswith(DISCONNECTED_PREFIX):
            await self.remote_ended()
        elif not self.joined:
            await self.fail(f"could not join the room: {text}")
        elif self.is_dialin and not self.connected and "dialin-ready" in text:
            await self.fail(f"could not connect the caller: {text}")
        else:
            logger.warning(f"transport error: {text}")
            self.report("error", {"message": text, "fatal": False})

    async def on_first_participant_joined(self, participant: Any = None) -> None:
        self.participant_joined = True
        await self.maybe_greet()

    async def on_participant_joined(self, participant: Any = None) -> None:
        if not (isinstance(participant, dict) and participant.get("id")):
            return
        if self.dialout is not None:
            self.dialout.participant_joined(str(participant["id"]))  # this attempt's leg, not an earlier one
        elif self.phone_participant_id is None:
            self.phone_participant_id = str(participant["id"])

    async def on_participant_left(self, participant: Any = None, reason: Any = None) -> None:
        self.report("participant_left", {"reason": str(reason or "")})
        phone = self.dialout.participant_id if self.dialout is not None else self.phone_participant_id
        if isinstance(participant, dict) and participant.get("id") == phone:
            self.connected = False  # that leg is gone: nothing to hang up
        if self.is_dialin or (self.dialout is not None and self.dialout.answered):
            await self.phone_gone()

    async def phone_gone(self) -> None:
        """The phone leg left (hang-up, or a transfer took it): stop talking at once and end."""
        await self.end("transferred" if self.transferring else "completed", interrupt=True)

    async def on_dialin_ready(self, sip_endpoint: Any) -> None:
        self.report("dialin_ready", {"sip_endpoint": str(sip_endpoint or "")})

    async def on_dialin_connected(self, data: Any) -> None:
        self.connected = True
        self.report("dialin_connected", safe_daily_data(data))
        self._start_max_duration()

    async def on_dialin_stopped(self, data: Any) -> None:
        self.connected = False
        self.report("dialin_stopped", safe_daily_data(data))
        await self.phone_gone()

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
        self._start_max_duration()
        if self.voicemail_detection:
            self._start_timer("verdict", self.req.workflow.silence_timeout_s, self._no_verdict)
        await self.maybe_greet()

    async def on_dialout_connected(self, data: Any) -> None:
        self.report("dialout_connected", safe_daily_data(data))

    async def on_dialout_stopped(self, data: Any) -> None:
        if self.dialout is None:
            self.report("dialout_stopped", safe_daily_data(data))
            return
        answered = self.dialout.answered
        await self.dialout.handle_stopped(data)  # reports; before an answer, decides no_answer
        if answered:
            self.connected = False
            await self.phone_gone()  # the patient hung up

    async def on_dialout_error(self, data: Any) -> None:
        if self.dialout is not None:
            await self.dialout.handle_error(data)
        else:
            self.report("dialout_error", safe_daily_data(data))

    async def on_dialout_warning(self, data: Any) -> None:
        self.report("dialout_warning", safe_daily_data(data))

    async def on_dtmf_event(self, data: Any) -> None:
        """A key pressed on the phone (the DTMFAggregator turns the tones into text for the LLM)."""
        tone = data.get("tone") if isinstance(data, dict) else None
        if tone:
            self.report("dtmf", {"digits": str(tone)})
            digit = self.req.workflow.opt_out_digit
            if digit and str(tone) == digit and (self.connected or self.is_dialin):
                await self.opt_out_now("dtmf")

    # -- pipeline events -------------------------------------------------------

    async def on_idle_timeout(self) -> None:
        """The pipeline's own last resort. Ringing (dial-out retries) is not idleness."""
        if self.dialout is not None and not self.dialout.answered and not self.dialout.finished:
            logger.info("idle while dialling: keep waiting")
            return
        logger.info("idle timeout: ending the call")
        await self.end(None)

    async def on_user_turn_started(self) -> None:
        self.asked_still_there = False
        if self.screening:
            self._cancel_timer("verdict")  # someone is talking: the detector decides once they stop

    def take_disclosure(self) -> str:
        """The disclosure still owed to a caller who spoke first ('' once said): spoken before the LLM's reply."""
        if self.ending:
            return ""
        text, self.disclosure_pending = self.disclosure_pending, ""
        return text

    async def on_user_turn_stopped(self, text: Any) -> None:
        self.on_transcript("user", text)
        if self.screening:  # the verdict timer measures silence, not the length of a greeting
            self._cancel_timer("verdict")
            self._start_timer("verdict", self.req.workflow.silence_timeout_s, self._no_verdict)

    @property
    def screening(self) -> bool:
        """Answered, and not yet known to be a person or a mailbox."""
        return self.voicemail_detection and not self.person_confirmed and not self.voicemail_heard and not self.ending

    async def on_user_idle(self) -> None:
        """The user aggregator's idle timeout (``silence_timeout_s`` after the bot stopped): ask once, then end."""
        if self.ending or not self.person_confirmed:
            return  # while screening, the verdict timer decides
        if not self.asked_still_there:
            self.asked_still_there = True
            logger.info("silence: asking whether anyone is there")
            await self.worker.queue_frames([TTSSpeakFrame(prompt.STILL_THERE)])
            return
        logger.info("silence: ending the call")
        await self.end("silence", goodbye=prompt.SILENCE_GOODBYE)

    async def on_conversation_detected(self) -> None:
        """The voicemail detector heard a person: now the personal greeting may play."""
        self._cancel_timer("verdict")
        self.person_confirmed = True
        await self.maybe_greet()

    async def on_voicemail_detected(self, processor: FrameProcessor) -> None:
        """A mailbox answered and its greeting is over: leave only the workflow's message, then hang up."""
        self._cancel_timer("verdict")
        self.voicemail_heard = True
        self.report("voicemail_detected", {})
        message = prompt.voicemail_message(self.req) if self.req.workflow.leave_voicemail else ""
        if message and not self.ending:
            speak = TTSSpeakFrame(message)
            speak.interruptible = False
            # Pushed from the detector: it lets nothing else through once it heard a mailbox.
            await processor.push_frame(speak)
        await self.end("voicemail", data={"message_left": bool(message)})

    async def on_service_error(self, frame: ErrorFrame) -> None:
        """An LLM or TTS error mid-call: a short apology, then end with the reason recorded."""
        if self.ending:
            return
        source = type(getattr(frame, "processor", None)).__name__
        message = phi.redact(getattr(frame, "error", "") or "unknown error")
        logger.error(f"{source} failed: {message}")
        await self.end(
            SERVICE_ERROR,
            goodbye=prompt.APOLOGY if self.person_confirmed else None,
            data={"error": f"{source}: {message}"[:500]},
        )

    def on_service_ttfb(self, processor: str, seconds: float) -> None:
        """A service's time to first byte (pipecat's ServiceMetricsObserver): kept for the turn's event."""
        name = str(processor).upper()
        key = "stt_ms" if "STT" in name else "llm_ttfb_ms" if "LLM" in name else "tts_ttfb_ms" if "TTS" in name else None
        if key and seconds > 0:
            self._pending_metrics[key] = round(seconds * 1000)

    def on_turn_latency(self, seconds: float) -> None:
        """User stopped → bot started speaking (pipecat's UserBotLatencyObserver): one ``metrics`` event."""
        turn_ms = round(seconds * 1000)
        self.turn_latencies_ms.append(turn_ms)
        data, self._pending_metrics = {**self._pending_metrics, "turn_ms": turn_ms}, {}
        self.report("metrics", data)

    # -- conversation -------------------------------------------------------

    async def maybe_greet(self) -> None:
        """Open the conversation once a person can hear it (dial-out: answered, joined, not a mailbox)."""
        if self.greeted or self.ending or self.worker is None or not self.participant_joined:
            return
        if self.dialout is not None and not self.dialout.answered:
            return
        if not self.person_confirmed:
            return
        self.greeted = True
        # First, before anything personal: who is calling, that it is automated, how to stop the calls.
        disclosure = identity.disclosure(self.req)
        if not self.verified:
            # Nothing personal until the server confirms who this is: the disclosure and the question.
            await self.worker.queue_frames([TTSSpeakFrame(f"{disclosure} {identity.verification_question(self.req)}")])
            return
        if self.req.workflow.speaks_first != "bot":
            if not self.voicemail_detection:
                # They speak first: say nothing over them; the disclosure answers their first words.
                self.disclosure_pending = disclosure
                return
            frames: list[Frame] = [TTSSpeakFrame(disclosure)] if disclosure else []
            frames.append(LLMRunFrame())  # they already spoke ("Hello?")
            await self.worker.queue_frames(frames)
            return
        first = prompt.first_message(self.req)
        if first:
            text = " ".join(t for t in (disclosure, first) if t)
            await self.worker.queue_frames([TTSSpeakFrame(text)])
        else:
            # No first message: the disclosure, then the LLM opens (the greeting is not lost).
            frames = [TTSSpeakFrame(disclosure)] if disclosure else []
            await self.worker.queue_frames([*frames, LLMRunFrame()])

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

    async def opt_out_now(self, via: str) -> None:
        """The person asked not to be called again: tell the server at once, say so, end ``opted_out``."""
        if self.opted_out or self.ending:
            return
        self.opted_out = True
        logger.info(f"the person opted out ({via})")
        self.report("opt_out", {"via": via})
        await self.end("opted_out", goodbye=identity.opt_out_goodbye(self.req))

    async def opt_out(self, params: FunctionCallParams) -> None:
        """LLM tool: "stop calling me", "take me off your list"."""
        await params.result_callback({"opted_out": True}, properties=FunctionCallResultProperties(run_llm=False))
        await self.opt_out_now("voice")

    async def verify_identity(self, params: FunctionCallParams) -> None:
        """LLM tool: what the person said, checked by the server; the rest of the details only if it matches."""
        args = {k: str(v) for k, v in dict(params.arguments or {}).items() if k in ("date_of_birth", "postal_code")}
        if self.verified:
            await params.result_callback({"verified": True, "note": "already verified"})
            return
        if self.tools is None:
            await params.result_callback({"verified": False, "error": "verification is not available"})
            return
        try:
            answer = await self.tools.call("verify_identity", args)
        except identity.ToolCallError as e:
            if e.status == 422:  # not understood (no date, no ZIP): counts for nothing, ask again
                await params.result_callback({"verified": False, "ask_again": True, "error": e.detail})
                return
            logger.warning(f"verify_identity failed: {phi.redact(e.detail)}")
            await params.result_callback({"verified": False, "error": "verification is not available"},
                                         properties=FunctionCallResultProperties(run_llm=False))
            await self.end("unverified", goodbye=identity.unverified_goodbye(self.req))
            return
        if answer.get("verified"):
            self.verified = True
            details = answer.get("patient_data") if isinstance(answer.get("patient_data"), dict) else {}
            self._phi_handles.append(phi.register(phi.sensitive_values(details, [])))
            await params.result_callback({"verified": True, "patient_data": details})
            return
        if answer.get("end_call"):
            await params.result_callback({"verified": False}, properties=FunctionCallResultProperties(run_llm=False))
            await self.end("unverified", goodbye=identity.unverified_goodbye(self.req))
            return
        await params.result_callback({
            "verified": False, "attempts_left": answer.get("attempts_left"),
            "instruction": "Say that it did not match and ask once more. Say nothing else about the patient.",
        })

    async def transfer_to_human(self, params: FunctionCallParams) -> None:
        """LLM tool: say so, then hand the phone leg to the workflow's number (Daily SIP call transfer)."""
        number = self.req.workflow.transfer_number
        if not number or self.ending:
            await params.result_callback({"transferred": False, "error": "no transfer is possible on this call"})
            return
        await params.result_callback(
            {"transferring": True}, properties=FunctionCallResultProperties(run_llm=False)
        )
        self.transferring = True
        self.report("transfer_started", {})
        logger.info("transferring the call to a person")
        speak = TTSSpeakFrame(prompt.TRANSFER_MESSAGE)
        speak.interruptible = False
        # The transport transfers once the sentence before it has played. It worked when the
        # phone leg leaves the room (on_participant_left -> "transferred"); it failed when the
        # transport pushes "Unable to transfer SIP call" (on_transfer_failed).
        await self.worker.queue_frames([speak, DailySIPTransferFrame(settings={"toEndPoint": number})])
        self._start_timer("transfer", TRANSFER_TIMEOUT_S, self._transfer_timed_out)

    async def on_transfer_failed(self, message: Any) -> None:
        """The SIP transfer failed: the caller is still ours. Say so, promise a call-back, end ``transfer_failed``."""
        if not self.transferring or self.ending:
            return
        self.transferring = False
        self._cancel_timer("transfer")
        text = phi.redact(message)
        logger.warning(f"transfer failed: {text}")
        await self.end("transfer_failed", goodbye=prompt.TRANSFER_FAILED, data={"error": text[:500]})

    async def _transfer_timed_out(self) -> None:
        await self.end("transferred")

    # -- ending -------------------------------------------------------------

    def _start_timer(self, name: str, seconds: float, action) -> None:
        if name in self._timers or not seconds or seconds <= 0:
            return

        async def run():
            await self._timer_sleep(seconds)
            self._timers.pop(name, None)
            await action()

        self._timers[name] = asyncio.ensure_future(run())

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and not timer.done() and timer is not asyncio.current_task():
            timer.cancel()

    def _cancel_timers(self) -> None:
        for name in list(self._timers):
            self._cancel_timer(name)

    def _start_max_duration(self) -> None:
        """``max_duration_s`` counts from the answer, not from the join."""
        self._start_timer("max_duration", self.req.workflow.max_duration_s, self._max_duration)

    async def _max_duration(self) -> None:
        logger.info("max duration reached")
        await self.end("max_duration", goodbye=prompt.MAX_DURATION_GOODBYE if self.person_confirmed else None)

    async def _no_verdict(self) -> None:
        """Answered, but nothing was heard that tells a person from a mailbox."""
        if not self.person_confirmed:
            logger.info("answered, but nobody spoke: ending the call")
            await self.end("silence")

    async def _dialout_gave_up(self, reason: str) -> None:
        await self.end(reason)

    async def end(
        self,
        reason: str | None,
        *,
        goodbye: str | None = None,
        frames: list[Frame] | None = None,
        data: dict[str, Any] | None = None,
        interrupt: bool = False,
    ) -> None:
        """End the call gracefully: what is left to say plays out, then the pipeline ends.

        ``interrupt``: nobody is listening any more, so what is still being said is cut first.
        """
        if self.ending:
            return
        self.ending = True
        self.end_reason = reason
        self.end_data = dict(data or {})
        if self.dialout is not None:
            self.dialout.stop()
        self._cancel_timers()
        logger.info(f"ending the call ({reason or 'default reason'})")
        if self.worker is not None:
            out: list[Frame] = [InterruptionFrame()] if interrupt else []
            out += list(frames or [])
            if goodbye:
                speak = TTSSpeakFrame(goodbye)
                speak.interruptible = False
                out.append(speak)
            out.append(EndFrame())
            await self.worker.queue_frames(out)

    async def hang_up(self) -> None:
        """Hang up the phone leg the bot dialled (not after a transfer: that leg is someone else's now).

        A leg still ringing is stopped too, or the patient's phone rings on into an empty room.
        """
        if self.dialout is None or self.transferring:
            return
        if not self.connected:
            await self.dialout.stop_ringing()
            return
        self.connected = False
        participant = self.dialout.participant_id
        if not participant:
            logger.warning("no phone participant to hang up; leaving the room ends the leg")
            return
        try:
            error = await self.transport.stop_dialout(participant)
        except Exception as e:  # leaving still ends the leg
            error = f"{type(e).__name__}"
        if error:
            logger.warning(f"stop_dialout failed: {phi.redact(error)}")

    async def remote_ended(self) -> None:
        """Daily ended the meeting under the bot: stop at once (nobody is left to hear a goodbye)."""
        if self.remote_end or self.leaving or self.fatal_error is not None:
            return
        self.remote_end = True
        if self.end_reason is None:
            self.end_reason = "remote_ended"
        self.ending = True
        self.connected = False
        if self.dialout is not None:
            self.dialout.stop()
        self._cancel_timers()
        logger.info("the meeting ended under the bot: stopping")
        if self.worker is not None:
            await self.worker.cancel(reason="the meeting ended")

    async def fail(self, message: str) -> None:
        """A fatal error: report it and cancel the pipeline at once."""
        if self.fatal_error is not None:
            return
        self.fatal_error = message
        self.ending = True
        if self.dialout is not None:
            self.dialout.stop()
        self._cancel_timers()
        logger.error(f"call failed: {message}")
        self.report("error", {"message": message, "fatal": True})
        if self.worker is not None:
            await self.worker.cancel(reason=message)

    def default_end_reason(self) -> str | None:
        if self.dialout is not None:
            return "completed" if self.dialout.answered else "no_answer"
        return "completed" if self.greeted or self.connected else None

    def finish(self) -> None:
        """After the pipeline is done: report ``ended`` (unless a fatal error was reported)."""
        if self._finished:
            return
        self._finished = True
        for handle in self._phi_handles:  # the details learnt after verification
            phi.unregister(handle)
        self._phi_handles = []
        self._cancel_timers()
        if self.dialout is not None:
            self.dialout.stop()
        if self._pending_metrics:  # measured after the last turn's event
            self.report("metrics", self._pending_metrics)
            self._pending_metrics = {}
        if self.fatal_error is not None:
            return
        reason = self.end_reason or self.default_end_reason()
        if reason is None:
            self.fatal_error = "the caller never reached the bot"
            self.report("error", {"message": self.fatal_error, "fatal": True})
            return
        self.end_reason = reason
        data: dict[str, Any] = {"reason": reason, **self.end_data}
        if reason == "dialout_failed" and self.dialout is not None:
            data["error"] = self.dialout.failure_summary()  # shown to staff on the failed call
        self.report("ended", data)


def register_event_handlers(transport: DailyTransport, call: Call) -> None:
    """Daily's events -> the ``Call`` method of the same name (the transport argument dropped)."""
    for name in TRANSPORT_EVENTS:
        method = getattr(call, name)

        async def handler(_transport, *args, _method=method):
            await _method(*args)

        transport.add_event_handler(name, handler)


# ---------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------


def _openai_kwargs(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"api_key": os.environ.get("OPENAI_API_KEY")}
    if os.environ.get("OPENAI_BASE_URL"):
        kwargs["base_url"] = os.environ["OPENAI_BASE_URL"]
    kwargs.update(overrides or {})
    return kwargs


def _settings(cls: Any, **values: Any) -> Any:
    """``cls.Settings(...)`` with only the values that are set (unset ones keep the service's defaults)."""
    return cls.Settings(**{k: v for k, v in values.items() if v not in (None, "")})


def stt_language(code: str) -> Language | None:
    """A BCP-47 code as pipecat's ``Language`` (``es-MX`` falls back to ``es``); None when unknown."""
    code = (code or "").strip()
    for candidate in (code, code.split("-")[0]):
        try:
            return Language(candidate)
        except ValueError:
            continue
    return None


@dataclass
class Services:
    """The pipeline's speech and language services (tests hand in scripted ones)."""

    stt: FrameProcessor
    llm: Any
    tts: FrameProcessor
    voicemail_classifier: BaseClassifier | None = None
    vad_analyzer: Any = None
    user_turn_strategies: Any = None


def create_services(req: AgentRequest, openai: dict[str, Any] | None = None) -> Services:
    """OpenAI speech-to-text, LLM and text-to-speech, in the call's language and the workflow's voice.

    ``openai`` overrides the client settings from the environment (``api_key``, ``base_url``).
    """
    wf = req.workflow
    stt = OpenAISTTService(
        **_openai_kwargs(openai),
        settings=_settings(
            OpenAISTTService, model=os.environ.get("OPENAI_STT_MODEL"), language=stt_language(wf.language)
        ),
    )
    llm = OpenAILLMService(
        **_openai_kwargs(openai),
        settings=_settings(
            OpenAILLMService,
            model=os.environ.get("OPENAI_LLM_MODEL"),
            system_instruction=identity.system_prompt(req, prompt.build_system_prompt(req)) + scheduling.prompt_addition(req),
        ),
    )
    tts = OpenAITTSService(
        **_openai_kwargs(openai),
        settings=_settings(
            OpenAITTSService, model=os.environ.get("OPENAI_TTS_MODEL"), voice=wf.voice or None
        ),
    )
    classifier = None
    if req.dialout_settings is not None:
        # Its own LLM, without the system prompt: it only ever sees what the other end said.
        classifier = LLMClassifier(
            llm=OpenAILLMService(
                **_openai_kwargs(openai),
                settings=_settings(OpenAILLMService, model=os.environ.get("OPENAI_CLASSIFIER_MODEL")),
            )
        )
    return Services(
        stt=stt,
        llm=llm,
        tts=tts,
        voicemail_classifier=classifier,
        vad_analyzer=SileroVADAnalyzer(),
        user_turn_strategies=UserTurnStrategies(),
    )


@dataclass
class Tool:
    """One LLM tool: what the model is told (``schema``) and the ``Call`` method that runs it."""

    schema: FunctionSchema
    handler: Any  # async (FunctionCallParams) -> None


def call_tools(call: "Call") -> list[Tool]:
    """The tools this call offers the LLM. To add one: append a ``Tool`` here (a schema and a handler)."""
    req = call.req
    tools = [
        Tool(
            FunctionSchema(
                name="record_outcome",
                description="Record the outcome of this call for the staff.",
                properties=prompt.record_outcome_properties(req.workflow.outcome_results),
                required=["result"],
            ),
            call.record_outcome,
        ),
        Tool(
            FunctionSchema(
                name="end_call",
                description="Say goodbye and hang up. Call it when the conversation is over.",
                properties=prompt.END_CALL_PROPERTIES,
                required=[],
            ),
            call.end_call,
        ),
    ]
    tools.append(
        Tool(
            FunctionSchema(
                name="opt_out",
                description="The person asked not to be called again: stop all calls from the clinic and end the call.",
                properties=identity.OPT_OUT_PROPERTIES,
                required=[],
            ),
            call.opt_out,
        )
    )
    if identity.verifies(req):
        tools.append(
            Tool(
                FunctionSchema(
                    name="verify_identity",
                    description="Check the date of birth (and ZIP code) the person said against the clinic's record.",
                    properties=identity.VERIFY_IDENTITY_PROPERTIES,
                    required=["date_of_birth"],
                ),
                call.verify_identity,
            )
        )
    if req.workflow.transfer_number:
        tools.append(
            Tool(
                FunctionSchema(
                    name="transfer_to_human",
                    description="Transfer the call to a member of staff when the person asks for a human.",
                    properties=prompt.TRANSFER_PROPERTIES,
                    required=[],
                ),
                call.transfer_to_human,
            )
        )
    # confirm / cancel / find_slots / book_slot, run by the server
    tools += [Tool(schema, handler) for schema, handler in scheduling.tools(req)]
    return tools


def build_pipeline(
    transport: Any, call: Call, runner_args: Any = None, services: Services | None = None
) -> PipelineWorker:
    """The pipeline for ``call`` (keypad + STT -> [voicemail] -> LLM -> TTS -> [gate] over Daily), wired."""
    req = call.req
    services = services or create_services(req)
    llm, tts = services.llm, services.tts

    tools = call_tools(call)
    for tool in tools:
        llm.register_function(tool.schema.name, tool.handler)

    detector = None
    if services.voicemail_classifier is not None and call.voicemail_detection:
        detector = VoicemailDetector(classifier=services.voicemail_classifier)

        async def on_conversation_detected(_processor):
            await call.on_conversation_detected()

        detector.add_event_handler("on_conversation_detected", on_conversation_detected)
        detector.add_event_handler("on_voicemail_detected", call.on_voicemail_detected)
    else:
        call.voicemail_detection = False
        call.person_confirmed = True

    user_params = LLMUserAggregatorParams(
        vad_analyzer=services.vad_analyzer,
        user_idle_timeout=float(req.workflow.silence_timeout_s or 0),
    )
    if services.user_turn_strategies is not None:
        user_params.user_turn_strategies = services.user_turn_strategies
    context = LLMContext(tools=ToolsSchema(standard_tools=[t.schema for t in tools]))
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(context, user_params=user_params)

    processors: list[FrameProcessor] = [
        transport.input(),
        services.stt,
        DTMFAggregator(),  # "press 1": key presses become text the LLM reads
    ]
    if detector is not None:
        processors.append(detector.detector())
    processors.append(user_aggregator)
    if detector is not None:
        # Not a mute strategy: a muted user aggregator drops audio before its VAD, so nothing
        # would be transcribed and the detector would never decide. Everything is heard;
        # only the LLM is held back until a person is confirmed.
        processors.append(HoldUntilPerson(lambda: call.person_confirmed))
    processors.append(DiscloseBeforeReply(call.take_disclosure))
    processors += [llm, tts]
    if detector is not None:
        processors.append(detector.gate())
    processors += [transport.output(), assistant_aggregator]

    latency, service_metrics = UserBotLatencyObserver(), ServiceMetricsObserver()
    worker = PipelineWorker(
        Pipeline(processors),
        params=PipelineParams(enable_metrics=True, enable_usage_metrics=True),
        observers=[latency, service_metrics],
        enable_rtvi=False,
        idle_timeout_secs=getattr(runner_args, "pipeline_idle_timeout_secs", 300),
        cancel_on_idle_timeout=False,  # the call decides (see Call.on_idle_timeout)
    )
    call.worker = worker
    services_that_end_the_call = (llm, tts)

    @worker.event_handler("on_idle_timeout")
    async def on_idle_timeout(worker):
        await call.on_idle_timeout()

    @worker.event_handler("on_pipeline_error")
    async def on_pipeline_error(worker, frame):
        if str(getattr(frame, "error", "")).startswith(TRANSFER_ERROR_PREFIX):
            await call.on_transfer_failed(frame.error)
        elif getattr(frame, "processor", None) in services_that_end_the_call:
            await call.on_service_error(frame)

    @latency.event_handler("on_latency_measured")
    async def on_latency_measured(observer, seconds):
        call.on_turn_latency(seconds)

    @service_metrics.event_handler("on_service_latency")
    async def on_service_latency(observer, record):
        if record.kind == ServiceLatencyKind.TTFB:
            call.on_service_ttfb(record.processor, record.seconds)

    @user_aggregator.event_handler("on_user_turn_started")
    async def on_user_turn_started(aggregator, strategy):
        await call.on_user_turn_started()

    @user_aggregator.event_handler("on_user_turn_idle")
    async def on_user_turn_idle(aggregator):
        await call.on_user_idle()

    @user_aggregator.event_handler("on_user_turn_stopped")
    async def on_user_turn_stopped(aggregator, strategy, message):
        await call.on_user_turn_stopped(message.content)

    @assistant_aggregator.event_handler("on_assistant_turn_stopped")
    async def on_assistant_turn_stopped(aggregator, message):
        call.on_transcript("assistant", message.content)

    register_event_handlers(transport, call)
    return worker


async def run_bot(
    transport: Any,
    req: AgentRequest,
    reporter: StatusReporter,
    *,
    runner_args: Any = None,
    services: Services | None = None,
    call_options: dict[str, Any] | None = None,
) -> Call:
    """Run the call ``req`` describes on ``transport`` until it ends, then report ``ended``.

    ``transport`` is a ``DailyTransport`` in production, the call simulator's
    stand-in in ``botkit.simulate``; the handlers are the same.
    """
    call = Call(req, reporter, transport, **(call_options or {}))
    try:
        worker = build_pipeline(transport, call, runner_args, services)
        runner = WorkerRunner(handle_sigint=bool(getattr(runner_args, "handle_sigint", False)))
        await runner.add_workers(worker)
        await runner.run()
    except asyncio.CancelledError:
        logger.warning(f"call {req.session_id}: bot cancelled")
        raise
    except Exception as e:
        message = f"bot crashed: {type(e).__name__}: {phi.redact(e)}"
        logger.error(f"call {req.session_id}: {message}")
        await call.fail(message)
    finally:
        call.finish()
    return call


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
        if not await report_invalid_request(body, bad_fields):
            logger.error("the invalid request could not be reported to the server")
        return

    handle = phi.register(sensitive_values_of(req))
    reporter = StatusReporter(req.status_url, req.status_token)
    reporter.start()
    reporter.send("bot_started", {})
    logger.info(f"call {req.session_id}: {'dial-in' if req.is_dialin else 'dial-out'}, workflow {req.workflow.slug}")
    try:
        await run_bot(create_transport(req), req, reporter, runner_args=runner_args)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # the transport could not even be made
        reporter.send("error", {"message": f"bot crashed: {type(e).__name__}: {phi.redact(e)}", "fatal": True})
    finally:
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
