"""Running bot.py's real pipeline in a test: scripted services, a fake transport at the edges.

Everything between the transport's input and output is the bot's own pipeline
(``bot.build_pipeline``): the DTMF aggregator, pipecat's VoicemailDetector and
its TTS gate, the user and assistant aggregators with their idle timeout and
mute strategy, the LLM's function calls, a real ``TTSService``, the latency
observer. Only these stand in for what would reach the network:

* ``FakeTransport`` — ``input()`` injects what Daily would deliver
  (transcriptions, speaking frames, key presses); ``output()`` records what
  would be played and says "bot started/stopped speaking" as Daily's output
  does; an ``EndFrame`` there makes it "leave" the way ``DailyTransport``
  does (``on_before_leave``, then ``on_left``). Its dial-out methods record
  their calls in ``actions``, in order.
* ``ScriptedLLM`` — a real ``LLMService`` that answers each context from a
  script (text, a tool call, or an error) and records the contexts it got.
* ``RecordingTTS`` — a real ``TTSService`` whose synthesis records the text it
  was given (the TTS input) and yields a little silence.
* ``ScriptedClassifier`` — the voicemail detector's classifier, deciding from
  the transcript as an LLM classifier would.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Callable

from pipecat.classifiers.base_classifier import BaseClassifier, ChoiceResult
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    Frame,
    FunctionCallFromLLM,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    StartFrame,
    TTSAudioRawFrame,
)
from pipecat.processors.filters.identity_filter import IdentityFilter
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import LLMService
from pipecat.services.tts_service import TTSService
from pipecat.transports.daily.transport import DailySIPTransferFrame
from pipecat.turns.user_turn_strategies import ExternalUserTurnStrategies

import bot


class Tool:
    def __init__(self, name: str, **arguments: Any):
        self.name, self.arguments = name, arguments


class ScriptedLLM(LLMService):
    """Answers each LLM turn with the next step: a string, a ``Tool``, or an ``Exception``."""

    def __init__(self, script: list[Any] | None = None):
        super().__init__()
        self.script = list(script or [])
        self.contexts: list[list[dict]] = []
        self._ids = itertools.count(1)

    def can_generate_metrics(self) -> bool:
        return True  # as the real services do

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        self.contexts.append(list(frame.context.get_messages()))
        step = self.script.pop(0) if self.script else "Mm-hm."
        if isinstance(step, Exception):
            await self.push_error(error_msg=f"LLM failed: {step}")
            return
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_ttfb_metrics()
        await asyncio.sleep(0.02)  # the model "thinking": a time to first byte to measure
        await self.stop_ttfb_metrics()
        if isinstance(step, Tool):
            await self.run_function_calls(
                [FunctionCallFromLLM(step.name, f"call-{next(self._ids)}", step.arguments, frame.context)]
            )
        else:
            await self.push_frame(LLMTextFrame(str(step)))
        await self.push_frame(LLMFullResponseEndFrame())


class RecordingTTS(TTSService):
    """A real TTS service: records its input text, yields 20 ms of silence per sentence."""

    def __init__(self, **kwargs):
        super().__init__(sample_rate=16000, **kwargs)
        self.spoken: list[str] = []

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str):
        self.spoken.append(text)
        await self.start_ttfb_metrics()
        await asyncio.sleep(0.02)
        await self.stop_ttfb_metrics()
        yield TTSAudioRawFrame(b"\x00" * 640, 16000, 1, context_id=context_id)


class ScriptedClassifier(BaseClassifier):
    """``voicemail`` when the transcript reads like a mailbox greeting, else ``conversation``."""

    def __init__(self, decide: Callable[[str], str] | None = None):
        super().__init__()
        self.seen: list[str] = []
        self._decide = decide or (
            lambda t: "voicemail" if any(w in t.lower() for w in ("leave a message", "voicemail", "reached"))
            else "conversation"
        )

    async def _ask(self, state, questions, images=()):
        self.seen.append(str(state))
        choice = self._decide(str(state))
        other = "conversation" if choice == "voicemail" else "voicemail"
        return {
            name: ChoiceResult(choice=choice, probabilities={choice: 0.95, other: 0.05}, confidence=0.95)
            for name in questions
        }, None


class FakeInput(FrameProcessor):
    """Where Daily's frames would enter the pipeline."""

    def __init__(self):
        super().__init__()
        self.started = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self.started.set()

    async def inject(self, *frames: Frame) -> None:
        for frame in frames:
            await self.push_frame(frame)


class FakeOutput(FrameProcessor):
    """Where audio would leave: says when the bot speaks, runs SIP transfers, leaves on EndFrame."""

    def __init__(self, transport: "FakeTransport"):
        super().__init__()
        self._transport = transport
        self.frames: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
            return
        self.frames.append(frame)
        if isinstance(frame, TTSAudioRawFrame):
            # Each sentence is one short chunk: the bot starts and stops speaking with it,
            # announced both ways as the real output transport does.
            await self.push_frame(frame, direction)
            for speaking in (BotStartedSpeakingFrame, BotStoppedSpeakingFrame):
                await self.push_frame(speaking(), FrameDirection.UPSTREAM)
                await self.push_frame(speaking(), FrameDirection.DOWNSTREAM)
            return
        if isinstance(frame, DailySIPTransferFrame):
            self._transport.actions.append(("sip_call_transfer", dict(frame.settings)))
        elif isinstance(frame, EndFrame):
            await self._transport.leave()
        await self.push_frame(frame, direction)

    def texts(self) -> list[str]:
        """What was played, sentence by sentence (the TTS's text frames after the gate)."""
        from pipecat.frames.frames import TTSTextFrame

        return [f.text for f in self.frames if isinstance(f, TTSTextFrame)]


class FakeTransport:
    """The ``DailyTransport`` surface bot.py uses, with the pipeline's edges."""

    def __init__(self, *, dial_results: list[tuple[Any, Any]] | None = None):
        self.handlers: dict[str, list] = {}
        self.actions: list[tuple[str, Any]] = []
        self.dial_results = list(dial_results or [])
        self._input = FakeInput()
        self._output = FakeOutput(self)
        self._left = False

    def input(self) -> FakeInput:
        return self._input

    def output(self) -> FakeOutput:
        return self._output

    def add_event_handler(self, name: str, handler) -> None:
        self.handlers.setdefault(name, []).append(handler)

    async def fire(self, name: str, *args: Any) -> None:
        for handler in self.handlers.get(name, []):
            await handler(self, *args)

    async def start_dialout(self, settings=None):
        self.actions.append(("start_dialout", settings))
        n = sum(1 for a in self.actions if a[0] == "start_dialout")
        return self.dial_results.pop(0) if self.dial_results else (f"sess-{n}", None)

    async def stop_dialout(self, participant_id):
        self.actions.append(("stop_dialout", participant_id))
        return None

    async def leave(self) -> None:
        if self._left:
            return
        self._left = True
        await self.fire("on_before_leave")
        self.actions.append(("leave", None))
        await self.fire("on_left")


class NoSleep:
    """Injected ``sleep`` for timers a test lets go at once (dial-out backoff, grace periods)."""

    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class BotUnderTest:
    """``bot.Call`` + ``bot.build_pipeline`` with the fakes above, running on a ``WorkerRunner``."""

    def __init__(self, req, reporter, *, script=None, classifier=None, dial_results=None,
                 timer_sleep=None, tts=None, voicemail_detection=None):
        self.transport = FakeTransport(dial_results=dial_results)
        self.llm = ScriptedLLM(script)
        self.tts = tts or RecordingTTS()
        self.classifier = classifier
        self.sleeps = NoSleep()
        kwargs = {}
        if timer_sleep is not None:
            kwargs["timer_sleep"] = timer_sleep
        self.call = bot.Call(req, reporter, self.transport, sleep=self.sleeps, stop_grace_s=0,
                             voicemail_detection=voicemail_detection, **kwargs)
        services = bot.Services(
            stt=IdentityFilter(),  # audio never flows here: the input injects transcriptions
            llm=self.llm,
            tts=self.tts,
            voicemail_classifier=classifier,
            user_turn_strategies=ExternalUserTurnStrategies(),
        )
        self.worker = bot.build_pipeline(self.transport, self.call, services=services)
        self.task: asyncio.Task | None = None

    async def start(self) -> "BotUnderTest":
        from pipecat.workers.runner import WorkerRunner

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(self.worker)
        self.task = asyncio.ensure_future(runner.run())
        await asyncio.wait_for(self.transport.input().started.wait(), 5)
        return self

    async def say(self, text: str) -> None:
        """The other end says ``text`` (a whole user turn, as VAD + STT would deliver it)."""
        from pipecat.frames.frames import (
            TranscriptionFrame,
            UserStartedSpeakingFrame,
            UserStoppedSpeakingFrame,
            VADUserStartedSpeakingFrame,
            VADUserStoppedSpeakingFrame,
        )

        await self.transport.input().inject(
            VADUserStartedSpeakingFrame(),
            UserStartedSpeakingFrame(),
            TranscriptionFrame(text=text, user_id="patient", timestamp="", finalized=True),
            VADUserStoppedSpeakingFrame(),
            UserStoppedSpeakingFrame(),
        )

    async def press(self, *tones: str) -> None:
        """Keys pressed on the phone: Daily's DTMF event, then the frame its input pushes."""
        from pipecat.audio.dtmf.types import KeypadEntry
        from pipecat.frames.frames import InputDTMFFrame

        for tone in tones:
            await self.transport.fire("on_dtmf_event", {"tone": tone, "sessionId": "sess-1"})
            await self.transport.input().inject(InputDTMFFrame(button=KeypadEntry(tone)))

    async def wait_finished(self, timeout: float = 10.0) -> None:
        assert self.task is not None
        await asyncio.wait_for(asyncio.shield(self.task), timeout)
        self.call.finish()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async def poll():
            while not predicate():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(poll(), timeout)
