"""OpenAI's HTTP API, locally: what the bot's real OpenAI services talk to in a simulated call.

Three endpoints under ``/v1``, in OpenAI's wire format, each recording what it got:

* ``POST /audio/transcriptions`` (multipart, a WAV segment): the scripted text
  of the callee's ``say`` step the segment holds — only if the audio holds
  speech by energy over its noise floor; otherwise an empty text.
* ``POST /chat/completions``: streamed (server-sent events) answers for the
  conversation — the scenario's ``llm`` steps in order (text, a tool call, or
  an HTTP error), then the ``auto`` policy; unstreamed JSON answers for the
  voicemail classifier, from the words a mailbox greeting uses.
* ``POST /audio/speech``: 24 kHz 16-bit PCM, as long as the text would take to say.

``latency_ms`` delays the transcription's answer, the first token and the
first byte of speech.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from typing import Any, Callable

from aiohttp import web

from .audio import has_speech, read_wav, voice_like
from .scenario import LLMStep, Scenario

TTS_RATE = 24000
MAILBOX_WORDS = re.compile(
    r"leave (me )?a message|after the (tone|beep)|voice ?mail|mailbox|not available|can'?t take your call|"
    r"you'?ve reached|unable to answer|record your message", re.I)
ANSWER_WORDS = re.compile(r"\b(yes|yeah|yep|sure|will|i'll|can|no|not|won't|can't|cannot|okay|ok|fine)\b", re.I)
PERSON_WORDS = re.compile(r"\b(a person|a human|someone|somebody|staff|real person|operator|receptionist)\b", re.I)


def _tool_names(body: dict[str, Any]) -> list[str]:
    return [t.get("function", {}).get("name", "") for t in body.get("tools") or [] if isinstance(t, dict)]


def _outcome_choices(body: dict[str, Any]) -> list[str]:
    for tool in body.get("tools") or []:
        fn = tool.get("function", {})
        if fn.get("name") == "record_outcome":
            return list(fn.get("parameters", {}).get("properties", {}).get("result", {}).get("enum") or [])
    return []


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def auto_answer(body: dict[str, Any]) -> LLMStep:
    """A small policy: answer a request for a person with a transfer, else ask once, record an outcome, end."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    tools = _tool_names(body)
    called = [c.get("function", {}).get("name") for m in messages if m.get("role") == "assistant"
              for c in (m.get("tool_calls") or [])]
    if messages and messages[-1].get("role") == "tool":
        if "record_outcome" in called and "end_call" in tools:
            return LLMStep(tool="end_call", args={})
        return LLMStep(text="Thank you.")
    users = [_text_of(m) for m in messages if m.get("role") == "user"]
    if users and PERSON_WORDS.search(users[-1]) and "transfer_to_human" in tools:
        return LLMStep(tool="transfer_to_human", args={})
    answered = bool(users) and len(users) > 1 and ANSWER_WORDS.search(users[-1])
    if not answered and "record_outcome" not in called:
        return LLMStep(text="Thank you. I'm calling about your upcoming appointment. Will you be able to make it?")
    if "record_outcome" in tools and "record_outcome" not in called:
        choices = _outcome_choices(body)
        return LLMStep(tool="record_outcome", args={"result": choices[0] if choices else "completed",
                                                    "notes": "recorded by the simulator's auto policy"})
    if "end_call" in tools:
        return LLMStep(tool="end_call", args={})
    return LLMStep(text="Thank you, goodbye.")


class FakeOpenAI:
    """The local server; ``segment_of(at)`` (the simulated transport's) maps a speech segment to a ``say`` step."""

    def __init__(self, scenario: Scenario, clock: Callable[[], float], segment_of: Callable[[float], int | None]):
        self.scenario = scenario
        self._clock = clock
        self._segment_of = segment_of
        self._said = scenario.said_texts()
        self._script = list(scenario.llm) if isinstance(scenario.llm, list) else []
        self._ids = itertools.count(1)
        self.llm_requests: list[dict[str, Any]] = []
        self.stt_requests: list[dict[str, Any]] = []
        self.tts_requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.on_speech: Callable[[str], Any] | None = None  # told each text the TTS is asked to say

    # -- the server ------------------------------------------------------------------

    async def start(self) -> "FakeOpenAI":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)
        app.router.add_post("/v1/audio/speech", self._speech)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _wait(self, ms: float) -> None:
        if ms > 0:
            await asyncio.sleep(ms / 1000)

    # -- speech to text ----------------------------------------------------------------

    async def _transcribe(self, request: web.Request) -> web.Response:
        received = self._clock()
        wav = b""
        fields: dict[str, str] = {}
        async for part in await request.multipart():
            if part.name == "file":
                wav = await part.read()
            elif part.name:
                fields[part.name] = await part.text()
        try:
            pcm, rate = read_wav(wav)
        except Exception:  # noqa: BLE001 - answer as OpenAI does
            return web.json_response({"error": {"message": "Invalid file format.", "type": "invalid_request_error"}},
                                     status=400)
        speech = has_speech(pcm, rate)
        text = ""
        index = self._segment_of(received) if speech else None
        if index is not None and index < len(self._said):
            text = self._said[index]
        self.stt_requests.append({"at_s": received, "duration_s": round(len(pcm) / 2 / rate, 3),
                                  "speech": speech, "text": text, "model": fields.get("model", ""),
                                  "language": fields.get("language", "")})
        await self._wait(self.scenario.latency_ms.stt)
        return web.json_response({"text": text, "usage": {"type": "duration", "seconds": len(pcm) // 2 // rate}})

    # -- chat ----------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return await self._classify(body)
        self.llm_requests.append({"at_s": self._clock(), "kind": "chat", "messages": body.get("messages"),
                                  "tools": _tool_names(body)})
        step = self._script.pop(0) if self._script else auto_answer(body)
        if step.error is not None:
            await self._wait(self.scenario.latency_ms.llm)
            return web.json_response({"error": {"message": step.error, "type": "server_error", "code": None}},
                                     status=step.status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await self._wait(self.scenario.latency_ms.llm)
        chunk_id = f"chatcmpl-sim{next(self._ids)}"

        async def send(delta: dict[str, Any], finish: str | None = None, usage: dict | None = None) -> None:
            chunk: dict[str, Any] = {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()),
                                     "model": body.get("model", "sim"),
                                     "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage:
                chunk["usage"] = usage
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        if step.tool is not None:
            await send({"tool_calls": [{"index": 0, "id": f"call_sim{next(self._ids)}", "type": "function",
                                        "function": {"name": step.tool, "arguments": json.dumps(step.args)}}]})
            await send({}, finish="tool_calls")
        else:
            for word in re.findall(r"\S+\s*", step.text or ""):
                await send({"content": word})
            await send({}, finish="stop")
        await send({}, usage={"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _classify(self, body: dict[str, Any]) -> web.Response:
        """The voicemail classifier's one JSON answer (pipecat's LLMClassifier asks for one object)."""
        messages = body.get("messages") or []
        prompt = _text_of(messages[-1]) if messages else ""
        # pipecat's LLMClassifier writes "Input:\n<what was heard>\n\nQuestion ...": judge only the input.
        heard = prompt.split("Input:\n", 1)[-1].split("\n\nQuestion ", 1)[0]
        self.llm_requests.append({"at_s": self._clock(), "kind": "classifier", "messages": messages, "tools": []})
        await self._wait(self.scenario.latency_ms.classifier)
        choice = "voicemail" if MAILBOX_WORDS.search(heard) else "conversation"
        other = "conversation" if choice == "voicemail" else "voicemail"
        answer = {"voicemail": {"choice": choice, "probabilities": {choice: 0.95, other: 0.05}}}
        return web.json_response({
            "id": f"chatcmpl-sim{next(self._ids)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "sim"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": json.dumps(answer)}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
        })

    # -- text to speech --------------------------------------------------------------

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        text = str(body.get("input") or "")
        self.tts_requests.append({"at_s": self._clock(), "text": text, "voice": body.get("voice")})
        if self.on_speech is not None:
            self.on_speech(text)
        seconds = max(0.5, 0.065 * len(text))
        pcm = voice_like(seconds, TTS_RATE)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        await self._wait(self.scenario.latency_ms.tts)
        step = TTS_RATE * 2 // 10  # 100 ms a chunk, as fast as the network takes it
        for i in range(0, len(pcm), step):
            await response.write(pcm[i:i + step])
        await response.write_eof()
        return response
