"""Holding the LLM back until the voicemail detector has heard a person.

On a dial-out the system prompt carries the patient's details, so nothing the
LLM writes may reach a mailbox. Pipecat's user-mute strategies cannot do this
job: a muted user aggregator drops the input audio before its own VAD, so no
segment is ever transcribed and the detector never decides. Instead the user
aggregator hears everything (VAD, turns, transcripts for the detector) and this
processor, between it and the LLM, drops the turns' context frames until a
person is confirmed. The detector's TTS gate still holds any speech until then.
"""

from __future__ import annotations

from typing import Callable

from pipecat.frames.frames import Frame, LLMContextFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class HoldUntilPerson(FrameProcessor):
    """Drops downstream ``LLMContextFrame``s while ``is_person()`` is false; passes everything else."""

    def __init__(self, is_person: Callable[[], bool], **kwargs):
        super().__init__(**kwargs)
        self._is_person = is_person
        self.held = 0  # user turns that did not reach the LLM

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM and isinstance(frame, LLMContextFrame) and not self._is_person():
            self.held += 1
            return
        await self.push_frame(frame, direction)


class DiscloseBeforeReply(FrameProcessor):
    """Before the first ``LLMContextFrame`` that finds ``take()`` non-empty, pushes that text as a
    ``TTSSpeakFrame``: a caller who speaks first hears the disclosure before the LLM's reply."""

    def __init__(self, take: Callable[[], str], **kwargs):
        super().__init__(**kwargs)
        self._take = take

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM and isinstance(frame, LLMContextFrame):
            text = self._take()
            if text:
                from pipecat.frames.frames import TTSSpeakFrame

                await self.push_frame(TTSSpeakFrame(text), direction)
        await self.push_frame(frame, direction)
