"""The scenario file: who calls whom, what the callee does, what the fake services answer.

Example (a dial-out answered after 2 s by a patient who confirms)::

    {
      "direction": "dial_out",
      "dialout": {"result": "answered", "after_s": 2},
      "callee": [{"say": "Hello?"}, {"wait_for_bot": 0.8}, {"say": "Yes, I'll be there."},
                 {"wait_for_bot": 0.8}],
      "llm": [{"tool": "record_outcome", "args": {"result": "confirmed"}},
              {"tool": "end_call", "args": {}}],
      "timeout_s": 40
    }

Callee steps, one key each: ``say`` (espeak-ng), ``play`` (a WAV file),
``silence_s``, ``dtmf`` (digits), ``hangup``, ``beep``, ``cancel`` (the server
deletes the room), ``wait_for_bot`` (until the bot has spoken and then been
quiet this many seconds), ``while_bot_speaks`` (a step done once the bot is
speaking, ``after_s`` into it: barge-in).
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

DIAL_RESULTS = ("answered", "busy", "declined", "no_answer", "error", "start_error")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Step(Strict):
    say: Optional[str] = None
    play: Optional[str] = None
    silence_s: Optional[float] = Field(default=None, ge=0)
    dtmf: Optional[str] = Field(default=None, pattern=r"^[0-9*#]+$")
    hangup: bool = False
    beep: bool = False
    cancel: bool = False
    wait_for_bot: Optional[float] = Field(default=None, ge=0)
    while_bot_speaks: Optional["Step"] = None
    after_s: float = Field(default=0.5, ge=0)

    @model_validator(mode="after")
    def _one_action(self) -> "Step":
        actions = [k for k in ("say", "play", "silence_s", "dtmf", "wait_for_bot", "while_bot_speaks")
                   if getattr(self, k) is not None]
        actions += [k for k in ("hangup", "beep", "cancel") if getattr(self, k)]
        if len(actions) != 1:
            raise ValueError(f"a callee step does exactly one thing (got {actions or 'nothing'})")
        return self


class Dialout(Strict):
    """How the dial-out goes: ``result`` after ``after_s`` seconds of ringing (None: rings until stopped)."""

    result: Literal["answered", "busy", "declined", "no_answer", "error", "start_error"] = "answered"
    after_s: Optional[float] = Field(default=1.0, ge=0)
    # Earlier attempts, each failing this way before the final one (technical errors are redialled).
    failures_before: list[Literal["error", "start_error"]] = Field(default_factory=list)


class DialPlan(Strict):
    kind: str
    after_s: Optional[float]


class LLMStep(Strict):
    text: Optional[str] = None
    tool: Optional[str] = None
    args: dict[str, Any] = Field(default_factory=dict)
    error: Optional[str] = None
    status: int = 400

    @model_validator(mode="after")
    def _one_answer(self) -> "LLMStep":
        if sum(x is not None for x in (self.text, self.tool, self.error)) != 1:
            raise ValueError("an llm step is one of {text}, {tool, args} or {error}")
        return self


class Latency(Strict):
    stt: float = Field(default=0, ge=0)
    llm: float = Field(default=0, ge=0)       # to the first token
    tts: float = Field(default=0, ge=0)       # to the first byte
    classifier: float = Field(default=0, ge=0)


class Scenario(Strict):
    direction: Literal["dial_out", "dial_in"] = "dial_out"
    agent_request: Optional[dict[str, Any]] = None
    workflow: dict[str, Any] = Field(default_factory=dict)  # merged into the request's workflow
    dialout: Dialout = Field(default_factory=Dialout)
    callee: list[Step] = Field(default_factory=list)
    pickup_s: float = Field(default=0.6, ge=0)  # line noise between the answer and the first step
    llm: Union[Literal["auto"], list[LLMStep]] = "auto"
    stt: Optional[list[str]] = None
    transfer: Literal["succeeds", "fails"] = "succeeds"  # what Daily's SIP transfer does
    latency_ms: Latency = Field(default_factory=Latency)
    status_url: Optional[str] = None
    status_token: Optional[str] = None
    timeout_s: float = Field(default=60, gt=0)
    bot_args: dict[str, Any] = Field(default_factory=dict)

    def dial_plan(self, attempt: int) -> DialPlan:
        if attempt <= len(self.dialout.failures_before):
            return DialPlan(kind=self.dialout.failures_before[attempt - 1], after_s=0.3)
        return DialPlan(kind=self.dialout.result, after_s=self.dialout.after_s)

    def said_texts(self) -> list[str]:
        """The texts the fake STT returns, one per ``say`` step (``stt`` overrides them by position)."""
        texts: list[str] = []

        def walk(step: Step) -> None:
            if step.say is not None:
                texts.append(step.say)
            if step.while_bot_speaks is not None:
                walk(step.while_bot_speaks)

        for step in self.callee:
            walk(step)
        for i, text in enumerate(self.stt or []):
            if i < len(texts):
                texts[i] = text
            else:
                texts.append(text)
        return texts


Step.model_rebuild()
