"""A stand-in for ``DailyTransport``: the room, the phone leg and the callee, in one process.

``SimTransport`` raises the events ``DailyTransport`` raises, with the same
names, argument shapes and order, from its own ``BaseTransport`` machinery (so
handlers run as tasks, ``on_before_leave`` synchronously, as with Daily). Its
input and output are Pipecat's ``BaseInputTransport`` / ``BaseOutputTransport``:
the callee's audio goes in as 20 ms ``InputAudioRawFrame`` chunks in real time,
and what the bot says comes out through the base output's own chunking, pacing
(one chunk per its duration, as a call plays it) and bot-speaking frames.

The outgoing calls bot.py makes (``start_dialout``, ``stop_dialout``, SIP
transfer, leaving) are answered as Daily would, per the scenario, and recorded.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from loguru import logger
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StartFrame,
    TTSStartedFrame,
    TTSTextFrame,
    UserAudioRawFrame,
)
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams
from pipecat.transports.daily.transport import DailySIPReferFrame, DailySIPTransferFrame

from . import audio
from .scenario import Scenario, Step

CHUNK_S = 0.02
DISCONNECTED = "Disconnected from meeting: the room was deleted"
# Daily's events, in the order DailyTransport registers them (bot.py's names must be among them).
EVENTS = (
    "on_joined", "on_left", "on_error", "on_app_message", "on_call_state_updated",
    "on_client_connected", "on_client_disconnected", "on_dialin_connected", "on_dialin_ready",
    "on_dialin_stopped", "on_dialin_error", "on_dialin_warning", "on_dialout_answered",
    "on_dialout_connected", "on_dialout_stopped", "on_dialout_error", "on_dialout_warning",
    "on_dtmf_event", "on_network_connection_status_updated", "on_first_participant_joined",
    "on_participant_joined", "on_participant_left", "on_participant_updated",
)
# What Daily's dial-out errors say for each way a call is not answered.
DIALOUT_ERRORS = {
    "busy": {"errorMsg": "SIP error: 486 Busy Here", "sipCode": 486},
    "declined": {"errorMsg": "SIP error: 603 Decline", "sipCode": 603},
    "no_answer": {"errorMsg": "SIP error: 480 Temporarily Unavailable", "sipCode": 480},
    "error": {"errorMsg": "SIP error: 503 Service Unavailable", "sipCode": 503},
}


class Clock:
    """Seconds since the simulated call began."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3)


class Ear:
    """What the patient hears: each sentence the bot spoke, from the time its sound began.

    The output transport hands over the TTS's text frames behind their audio, so
    a sentence's text arrives after its sound: its time is that of the first
    loud chunk played since the previous sentence.
    """

    def __init__(self, clock: Clock):
        self._clock = clock
        self.spoken_texts: list[str] = []     # what the TTS was asked to say, in order (the fake's record)
        self.heard: list[dict[str, Any]] = []
        self.audio_starts: list[float] = []   # times a loud bot chunk followed a quiet one
        self.loud_until = -1.0                # when the last loud chunk written stops sounding
        self._sentence_start: float | None = None
        self.changed = asyncio.Event()

    def tts_started(self) -> None:
        self._sentence_start = None

    def tts_text(self, text: str) -> None:
        text = text.strip()
        if text:
            at = self._sentence_start if self._sentence_start is not None else self._clock.now()
            self.heard.append({"at_s": at, "text": text})
        self._sentence_start = None
        self._notify()

    def cut(self) -> None:
        """The bot's sound stopped mid-sentence (interrupted, or the call ended): that sentence was heard in part."""
        if self._sentence_start is None or not self.speaking():
            return
        index = len(self.heard)
        if index < len(self.spoken_texts):  # else the sound was the tail of a sentence already heard
            self.heard.append({"at_s": self._sentence_start, "text": self.spoken_texts[index], "cut": True})
        self._sentence_start = None
        self.loud_until = -1.0

    def speaking(self) -> bool:
        return self._clock.now() < self.loud_until + 0.05

    def played(self, at: float, pcm: bytes, duration: float) -> None:
        if audio.rms_dbfs(pcm) <= -50.0:
            return
        if at > self.loud_until + 0.05:
            self.audio_starts.append(at)
            self._notify()
        if self._sentence_start is None:
            self._sentence_start = at
        self.loud_until = at + duration

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class SimInput(BaseInputTransport):
    """The callee's microphone: 20 ms chunks of the current step's sound, or line noise, in real time."""

    def __init__(self, transport: "SimTransport", params: TransportParams):
        super().__init__(params, name="SimInputTransport")
        self._sim = transport

    async def setup(self, setup: FrameProcessorSetup):
        await super().setup(setup)
        await self._sim.join()

    async def start(self, frame: StartFrame):
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._sim.input_ready(self.sample_rate)

    async def stop(self, frame: EndFrame):
        await super().stop(frame)
        self._sim.stop_media()

    async def cancel(self, frame):
        await super().cancel(frame)
        self._sim.stop_media()

    async def push_dtmf(self, tone: str) -> None:
        await self.push_frame(InputDTMFFrame(button=KeypadEntry(tone)))


class SimOutput(BaseOutputTransport):
    """The callee's earpiece: paces the bot's audio in real time and tells the ``Ear`` what played."""

    def __init__(self, transport: "SimTransport", params: TransportParams):
        super().__init__(params, name="SimOutputTransport")
        self._sim = transport
        self._next_play = 0.0

    async def start(self, frame: StartFrame):
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def stop(self, frame: EndFrame):
        await super().stop(frame)
        await self._sim.leave()

    async def cancel(self, frame):
        await super().cancel(frame)
        await self._sim.leave()

    async def process_frame(self, frame: Frame, direction):
        if isinstance(frame, InterruptionFrame):
            self._sim.ear.cut()
            self._next_play = 0.0
        await super().process_frame(frame, direction)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        now = time.monotonic()
        start = max(now, self._next_play)
        duration = len(frame.audio) / (2 * frame.sample_rate * frame.num_channels)
        self._next_play = start + duration
        if start > now:
            await asyncio.sleep(start - now)
        self._sim.ear.played(round(start - self._sim.clock.t0, 3), frame.audio, duration)
        return True

    async def write_transport_frame(self, frame: Frame):
        # Frames queued behind the audio reach the transport once what came before has played.
        if isinstance(frame, TTSStartedFrame):
            self._sim.ear.tts_started()
        elif isinstance(frame, TTSTextFrame):
            self._sim.ear.tts_text(frame.text)
        elif isinstance(frame, DailySIPTransferFrame):
            error = await self._sim.sip_call_transfer(frame.settings)
            if error:
                await self.push_error(f"Unable to transfer SIP call: {error}")
        elif isinstance(frame, DailySIPReferFrame):
            error = await self._sim.sip_call_transfer(frame.settings, refer=True)
            if error:
                await self.push_error(f"Unable to perform SIP REFER: {error}")


class SimTransport(BaseTransport):
    """``DailyTransport``'s surface for bot.py, driven by a ``Scenario``."""

    def __init__(self, scenario: Scenario, clock: Clock | None = None, *, params: TransportParams | None = None):
        super().__init__(name="SimTransport")
        self.scenario = scenario
        self.clock = clock or Clock()
        self.ear = Ear(self.clock)
        self.calls: list[dict[str, Any]] = []      # what the bot asked of the transport
        self.events: list[dict[str, Any]] = []     # what the transport told the bot
        self.callee_log: list[dict[str, Any]] = []  # what the callee did, when
        self.sayings: list[dict[str, Any]] = []     # the callee's ``say`` steps, in order
        self._transcribed: set[int] = set()
        params = params or TransportParams(audio_in_enabled=True, audio_out_enabled=True)
        self._input = SimInput(self, params)
        self._output = SimOutput(self, params)
        for name in EVENTS:
            self._register_event_handler(name)
        self._register_event_handler("on_before_leave", sync=True)

        self.in_rate = 16000
        self.connected = False          # the phone leg carries audio
        self.ringing = False            # a dial-out rings the patient's phone
        self.ended = False              # the room is gone for the bot (left or deleted)
        self._left = False
        self._dial_count = 0
        self.session_id: str | None = None
        self.participant: dict[str, Any] | None = None
        self._first_joined = False
        self._source = bytearray()       # callee sound waiting to be sent
        self._source_done = asyncio.Event()
        self._ready = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self.done = asyncio.Event()     # the bot left, or the room is gone

    # -- BaseTransport ---------------------------------------------------------------

    def input(self) -> SimInput:
        return self._input

    def output(self) -> SimOutput:
        return self._output

    def get_client_id(self, client: Any) -> str:
        return client["id"]

    # -- recording ---------------------------------------------------------------

    def _record_call(self, name: str, args: Any = None) -> None:
        self.calls.append({"at_s": self.clock.now(), "call": name, "args": args})

    async def _emit(self, name: str, *args: Any) -> None:
        self.events.append({"at_s": self.clock.now(), "event": name})
        await self._call_event_handler(name, *args)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def stop_media(self) -> None:
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    # -- the room ------------------------------------------------------------------

    async def join(self) -> None:
        """The bot joins the room (at its input's setup, like Daily)."""
        self._spawn(self._joined())

    async def _joined(self) -> None:
        await asyncio.sleep(0.05)
        await self._emit("on_joined", {"participants": {"local": {"id": "bot"}}})
        await self._emit("on_call_state_updated", "joined")
        if self.scenario.direction == "dial_in":
            await self._emit("on_dialin_ready", "sip:sim@sandbox.sip.invalid")
            await asyncio.sleep(0.2)
            await self._connect_phone(dialin=True)

    def input_ready(self, rate: int) -> None:
        self.in_rate = rate
        self._ready.set()
        self._spawn(self._microphone())

    async def leave(self) -> None:
        if self._left:
            return
        self._left = True
        await self._call_event_handler("on_before_leave")
        self._record_call("leave")
        self.ear.cut()
        if self.ringing:  # nobody stopped the dial-out: the phone rings on into an empty room
            self._log_callee("rings_into_empty_room")
        was_connected = self.connected
        self.connected = False
        if was_connected:
            self._log_callee("bot_left")
        await self._emit("on_call_state_updated", "left")
        await self._emit("on_left")
        self.ended = True
        self.done.set()

    async def delete_room(self) -> None:
        """The server's Cancel: Daily ejects everyone; the client reports an error and the left state."""
        if self.ended:
            return
        self.ended = True
        self.connected = False
        self._left = True
        self.ear.cut()
        await self._emit("on_error", DISCONNECTED)
        await self._emit("on_call_state_updated", "left")
        self.done.set()

    # -- the phone leg -------------------------------------------------------------

    def _participant(self) -> dict[str, Any]:
        n = self._dial_count or 1
        return {"id": f"phone-participant-{n}", "info": {"userName": "Phone", "isLocal": False},
                "sessionId": self.session_id}

    async def _participant_joins(self) -> None:
        """The phone leg appears in the room (a dial-out's while it rings, as Daily's SIP participant does)."""
        self.participant = self._participant()
        if not self._first_joined:
            self._first_joined = True
            await self._emit("on_first_participant_joined", self.participant)
        await self._emit("on_participant_joined", self.participant)
        await self._emit("on_client_connected", self.participant)

    async def _connect_phone(self, *, dialin: bool) -> None:
        if dialin:
            await self._participant_joins()
        self.connected = True
        self._log_callee("answered" if not dialin else "connected")
        if dialin:
            await self._emit("on_dialin_connected", {"sessionId": "dialin-session-1",
                                                     "sipFrom": "sip:+15550000000@sim"})
        else:  # Daily's answered event names the session, not the participant
            await self._emit("on_dialout_answered", {"sessionId": self.session_id})
        self._spawn(self._callee())

    async def _phone_gone(self, reason: str) -> None:
        """The phone leg ended (hang-up, transfer, stop_dialout): participant left, then stopped."""
        if not self.connected:
            return
        self.connected = False
        participant = self.participant or self._participant()
        await self._emit("on_participant_left", participant, reason)
        await self._emit("on_client_disconnected", participant)
        data = {"sessionId": self.session_id or "dialin-session-1"}
        if self.scenario.direction == "dial_in":
            await self._emit("on_dialin_stopped", data)
        else:
            await self._emit("on_dialout_stopped", data)

    async def start_dialout(self, settings: dict[str, Any] | None = None) -> tuple[str | None, Any]:
        self._dial_count += 1
        self._record_call("start_dialout", dict(settings or {}))
        self.session_id = f"dialout-session-{self._dial_count}"
        plan = self.scenario.dial_plan(self._dial_count)
        if plan.kind == "start_error":
            return None, "dial-out could not start: rate limited"
        self._spawn(self._ring(self.session_id, plan.kind, plan.after_s))
        return self.session_id, None

    async def _ring(self, session_id: str, kind: str, after_s: float | None) -> None:
        await asyncio.sleep(0.1)
        await self._emit("on_dialout_connected", {"sessionId": session_id})
        await self._participant_joins()
        self.ringing = True
        if after_s is None:  # rings until someone stops it
            return
        await asyncio.sleep(after_s)
        if self.ended or self.session_id != session_id:
            return
        self.ringing = False
        if kind == "answered":
            await self._connect_phone(dialin=False)
            return
        if self.participant is not None:
            await self._emit("on_participant_left", self.participant, "hangup")
        await self._emit("on_dialout_error", {"sessionId": session_id, **DIALOUT_ERRORS[kind]})
        await asyncio.sleep(0.05)
        await self._emit("on_dialout_stopped", {"sessionId": session_id})

    async def stop_dialout(self, participant_id: str) -> Any:
        self._record_call("stop_dialout", participant_id)
        known = {self.session_id, (self.participant or {}).get("id")}
        if participant_id not in known:
            return f"no dial-out with id {participant_id}"
        if self.connected:
            self._log_callee("hung_up_by_bot")
            self._spawn(self._phone_gone("hangup"))
        elif self.ringing:  # still ringing: the ringing stops
            self.ringing = False
            self._log_callee("ringing_stopped")
            session_id = self.session_id
            self.session_id = f"{session_id}-stopped"
            self._spawn(self._emit("on_dialout_stopped", {"sessionId": session_id}))
        return None

    async def sip_call_transfer(self, settings: dict[str, Any], *, refer: bool = False) -> Any:
        self._record_call("sip_refer" if refer else "sip_call_transfer", dict(settings or {}))
        if self.scenario.transfer == "fails":
            return "SIP transfer failed: 404 Not Found"
        self._log_callee("transferred")
        self._spawn(self._transferred())
        return None

    async def _transferred(self) -> None:
        await asyncio.sleep(0.3)
        await self._phone_gone("transferred")

    # -- the callee ----------------------------------------------------------------

    def _log_callee(self, what: str, **extra: Any) -> None:
        self.callee_log.append({"at_s": self.clock.now(), "what": what, **extra})

    async def _microphone(self) -> None:
        """20 ms chunks on an absolute schedule while the leg is up: the step's sound, else quiet line noise."""
        rate = self.in_rate
        chunk_bytes = int(rate * CHUNK_S) * 2
        noise = audio.line_noise(CHUNK_S, rate)
        start = time.monotonic()
        n = 0
        while not self.ended:
            n += 1
            delay = start + n * CHUNK_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self.connected:
                if self._source:
                    self._source.clear()
                    self._source_done.set()
                continue
            if self._source:
                chunk = bytes(self._source[:chunk_bytes])
                del self._source[:chunk_bytes]
                if len(chunk) < chunk_bytes:
                    chunk += noise[: chunk_bytes - len(chunk)]
                if not self._source:
                    self._source_done.set()
            else:
                chunk = noise
            frame = UserAudioRawFrame(user_id=(self.participant or {}).get("id", ""), audio=chunk,
                                      sample_rate=rate, num_channels=1)
            await self._input.push_audio_frame(frame)

    async def _play(self, pcm: bytes) -> tuple[float, float]:
        """Send ``pcm`` through the microphone; ``(start, end)`` times of its sound."""
        self._source_done = asyncio.Event()
        start = self.clock.now()
        self._source.extend(pcm)
        await self._source_done.wait()
        return start, self.clock.now()

    async def _callee(self) -> None:
        try:
            await self._ready.wait()
            await asyncio.sleep(self.scenario.pickup_s)  # the phone reaches an ear before anyone speaks
            for step in self.scenario.callee:
                if self.ended or not self.connected:
                    break
                await self._do(step)
            self._log_callee("script_done")
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a broken step must not hang the call
            logger.exception("simulated callee failed")

    async def _do(self, step: Step) -> None:
        rate = self.in_rate
        if step.say is not None:
            pcm = audio.speak(step.say, rate)
            lead = audio.first_loud_sample(pcm, rate=rate) or 0
            trail = audio.last_loud_sample(pcm, rate=rate)
            entry = {"at_s": self.clock.now(), "what": "say", "index": len(self.sayings), "text": step.say,
                     "start_s": None, "end_s": None}
            self.sayings.append(entry)
            self.callee_log.append(entry)
            start, _ = await self._play(pcm)
            entry["start_s"] = round(start + lead / rate, 3)
            entry["end_s"] = round(start + (trail if trail is not None else len(pcm) // 2) / rate, 3)
        elif step.play is not None:
            pcm = audio.load_wav(step.play, rate)
            start, end = await self._play(pcm)
            self._log_callee("played", path=step.play, start_s=start, end_s=end)
        elif step.silence_s is not None:
            await asyncio.sleep(step.silence_s)
        elif step.beep:
            start, end = await self._play(audio.tone(0.5, rate))
            self._log_callee("beep", start_s=start, end_s=end)
        elif step.dtmf is not None:
            for tone in step.dtmf:
                self._log_callee("dtmf", tone=tone)
                await self._emit("on_dtmf_event", {"tone": tone, "sessionId": self.session_id,
                                                   "participantId": (self.participant or {}).get("id")})
                await self._input.push_dtmf(tone)
                await asyncio.sleep(0.25)
        elif step.hangup:
            self._log_callee("hung_up")
            await self._phone_gone("hangup")
        elif step.cancel:
            self._log_callee("room_deleted")
            await self.delete_room()
        elif step.wait_for_bot is not None:
            await self._wait_for_bot(step.wait_for_bot)
        elif step.while_bot_speaks is not None:
            await self._until_bot_speaks(timeout=30)
            await asyncio.sleep(step.after_s)
            self._log_callee("barge_in")
            await self._do(step.while_bot_speaks)

    def segment_of(self, at: float) -> int | None:
        """Which ``say`` step a speech segment sent to STT at ``at`` holds (None: none, or already sent).

        The latest say that began before it and ended at most 3 s before; a
        say split into several segments is transcribed once, on its first.
        """
        for entry in reversed(self.sayings):
            if entry["at_s"] > at:
                continue
            if entry["end_s"] is not None and at - entry["end_s"] > 3.0:
                return None
            if entry["index"] in self._transcribed:
                return None
            self._transcribed.add(entry["index"])
            return entry["index"]
        return None

    async def _until_bot_speaks(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ear.speaking() and time.monotonic() < deadline and not self.ended:
            await asyncio.sleep(0.02)

    async def _wait_for_bot(self, quiet_s: float) -> None:
        """Until the bot has spoken and then been quiet for ``quiet_s`` (as a person waits for a reply)."""
        await self._until_bot_speaks(timeout=30)
        quiet_since = time.monotonic()
        while not self.ended:
            if self.ear.speaking():
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return
            await asyncio.sleep(0.02)
