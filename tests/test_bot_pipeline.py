"""bot.py's real pipeline with frames flowing: scripted LLM, recording TTS, fake transport edges.

See ``tests/bot_pipeline.py`` for what stands in for the network. Status
events go to a real WebSocket server (``StatusServer``) as they would to ours.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from botkit.reporter import StatusReporter  # noqa: E402
from botrunner.agent_request import AgentRequest  # noqa: E402
from tests.bot_pipeline import BotUnderTest, ScriptedClassifier, Tool  # noqa: E402
from tests.status_server import StatusServer  # noqa: E402

TOKEN = "status-token-1"
PATIENT = {"first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1815-12-10",
           "appointment": "Tuesday 3 PM with Dr Babbage"}
PERSONAL = ("Ada", "Lovelace", "1815", "Babbage", "Tuesday")


def request(direction: str, status_url: str, **workflow) -> AgentRequest:
    body = {
        "room_url": "https://example.daily.co/call-abc",
        "token": "meeting-token",
        "session_id": "abc",
        "patient_id": "7",
        "patient_data": PATIENT,
        "client_name": "Acme Clinic",
        "callback_number": "+15550001111",
        "organization_id": "1",
        "organization_slug": "acme",
        "workflow": {
            "slug": "reminder",
            "name": "Reminder",
            "instructions": "Remind {first_name} of the appointment on {appointment}.",
            "first_message": "Hello {first_name}, this is {client_name} about {appointment}.",
            "outcome_results": ["confirmed", "rescheduled"],
            "max_dialout_attempts": 3,
            **workflow,
        },
        "status_url": status_url,
        "status_token": TOKEN,
    }
    if direction == "dial_in":
        body["dialin_settings"] = {"call_id": "c1", "call_domain": "d1", "from_phone": "+15551230000"}
    else:
        body["dialout_settings"] = {"phone_number": "+15551230000", "caller_id": "+15559990000"}
    return AgentRequest.model_validate(body)


@pytest.fixture
async def status_server():
    async with StatusServer(token=TOKEN) as server:
        server.bots = []
        yield server
        for b in server.bots:  # a failed test must not leave a pipeline running
            if b.task is not None and not b.task.done():
                await b.worker.cancel()
                await asyncio.wait_for(b.task, 5)


async def start_bot(status_server, direction="dial_in", **kwargs) -> BotUnderTest:
    workflow = kwargs.pop("workflow", {})
    req = request(direction, status_server.url("abc"), **workflow)
    reporter = StatusReporter(req.status_url, req.status_token, backoff=(0.01,))
    reporter.start()
    b = BotUnderTest(req, reporter, **kwargs)
    b.reporter = reporter
    status_server.bots.append(b)
    return await b.start()


async def close(b: BotUnderTest) -> None:
    assert await b.reporter.close(timeout=5)


async def dialin_connected(b: BotUnderTest) -> None:
    t = b.transport
    await t.fire("on_joined", {})
    await t.fire("on_dialin_connected", {"sessionId": "sess-1"})
    await t.fire("on_participant_joined", {"id": "caller"})
    await t.fire("on_first_participant_joined", {"id": "caller"})


async def dialout_answered(b: BotUnderTest) -> None:
    t = b.transport
    await t.fire("on_joined", {})
    await t.fire("on_dialout_connected", {"sessionId": "sess-1"})
    await t.fire("on_participant_joined", {"id": "patient-leg"})
    await t.fire("on_dialout_answered", {"sessionId": "sess-1"})
    await t.fire("on_first_participant_joined", {"id": "patient-leg"})


# -- a conversation -------------------------------------------------------------


async def test_outcome_tool_then_end_tool_goodbye_hang_up_ended(status_server):
    b = await start_bot(
        status_server, "dial_out", classifier=ScriptedClassifier(),
        script=[
            Tool("record_outcome", result="confirmed", notes="will come"),
            "Great, see you on Tuesday.",
            Tool("end_call", goodbye="Goodbye Ada!"),
        ],
    )
    await dialout_answered(b)
    await b.say("Hello?")  # a person: the detector lets the greeting through
    await b.wait_until(lambda: b.tts.spoken)
    # The disclosure first (clinic, automated, how to stop the calls), then the personal greeting.
    assert b.tts.spoken[0] == (
        "Hello, this is an automated assistant calling from Acme Clinic. To stop these calls, say stop calling "
        "me at any time. Hello Ada, this is Acme Clinic about Tuesday 3 PM with Dr Babbage."
    )

    await b.say("Yes, I will come.")
    await b.wait_until(lambda: "Great, see you on Tuesday." in " ".join(b.tts.spoken))
    await b.say("Thanks, bye.")
    await b.wait_finished()
    await close(b)

    assert status_server.event("outcome") == [{"result": "confirmed", "notes": "will come", "data": {}}]
    assert b.tts.spoken[-1] == "Goodbye Ada!"
    # goodbye played, then the phone leg hung up, then the room left
    played = b.transport.output().texts()
    assert played and played[-1] == "Goodbye Ada!"
    assert [a for a, _ in b.transport.actions] == ["start_dialout", "stop_dialout", "leave"]
    assert b.transport.actions[1] == ("stop_dialout", "patient-leg")
    assert status_server.event("ended") == [{"reason": "completed"}]
    transcript = status_server.event("transcript")
    assert {"role": "user", "text": "Yes, I will come."} in transcript


async def test_metrics_events_carry_per_turn_latency(status_server):
    b = await start_bot(status_server, "dial_in", script=["Sure.", Tool("end_call")])
    await dialin_connected(b)
    await b.wait_until(lambda: b.tts.spoken)
    await b.say("Can you repeat that?")
    await b.wait_until(lambda: "Sure." in b.tts.spoken)
    await b.say("Bye.")
    await b.wait_finished()
    await close(b)
    metrics = status_server.event("metrics")
    assert metrics, "no metrics event"
    assert all(set(m) <= {"stt_ms", "llm_ttfb_ms", "tts_ttfb_ms", "turn_ms"} for m in metrics)
    assert any("turn_ms" in m for m in metrics)
    assert any("llm_ttfb_ms" in m for m in metrics)


# -- voicemail --------------------------------------------------------------------


async def test_voicemail_leaves_only_the_configured_message(status_server):
    b = await start_bot(
        status_server, "dial_out", classifier=ScriptedClassifier(),
        workflow={"leave_voicemail": True,
                  "voicemail_message": "This is {clinic}. Please call us back on {callback_number}."},
        script=["Hi Ada, about your appointment with Dr Babbage on Tuesday..."],
    )
    await dialout_answered(b)
    await b.say("Hi, you've reached Ada. Please leave a message after the tone.")
    await b.wait_finished(timeout=15)
    await close(b)

    assert b.tts.spoken == ["This is Acme Clinic. Please call us back on +15550001111."]
    tts_input = " ".join(b.tts.spoken)
    for value in PERSONAL:
        assert value not in tts_input
    assert b.llm.contexts == []  # the LLM (whose prompt is personal) never ran
    assert status_server.event("voicemail_detected") == [{}]
    assert status_server.event("ended") == [{"reason": "voicemail", "message_left": True}]
    assert ("stop_dialout", "patient-leg") in b.transport.actions


async def test_voicemail_without_a_message_hangs_up_saying_nothing(status_server):
    b = await start_bot(status_server, "dial_out", classifier=ScriptedClassifier(),
                        workflow={"leave_voicemail": False, "voicemail_message": "Call {clinic}."})
    await dialout_answered(b)
    await b.say("You have reached the voicemail of 555. Leave a message.")
    await b.wait_finished(timeout=15)
    await close(b)
    assert b.tts.spoken == []
    assert status_server.event("ended") == [{"reason": "voicemail", "message_left": False}]


# -- dial-out results -------------------------------------------------------------


async def test_busy_dialout_error_is_not_redialled(status_server):
    b = await start_bot(status_server, "dial_out", classifier=ScriptedClassifier())
    await b.transport.fire("on_joined", {})
    await b.transport.fire("on_dialout_error", {"sessionId": "sess-1", "errorMsg": "SIP 486 Busy Here"})
    await b.wait_finished()
    await close(b)
    assert [a for a, _ in b.transport.actions] == ["start_dialout", "leave"]
    assert status_server.event("dialout_error")[0]["kind"] == "busy"
    assert status_server.event("ended") == [{"reason": "busy"}]
    assert b.tts.spoken == []


async def test_technical_dialout_error_is_redialled_with_backoff(status_server):
    b = await start_bot(status_server, "dial_out", classifier=ScriptedClassifier())
    await b.transport.fire("on_joined", {})
    await b.transport.fire("on_dialout_error", {"sessionId": "sess-1", "errorMsg": "SIP 503 Service Unavailable"})
    await b.wait_until(lambda: sum(1 for a, _ in b.transport.actions if a == "start_dialout") == 2)
    await b.transport.fire("on_dialout_error", {"sessionId": "sess-2", "errorMsg": "call declined (603)"})
    await b.wait_finished()
    await close(b)
    assert b.call.dialout.failures == ["technical", "declined"]
    assert 2.0 in b.sleeps.delays
    assert status_server.event("ended") == [{"reason": "declined"}]


# -- remote end, silence, keypad, transfer, errors ----------------------------------


async def test_remote_end_stops_the_pipeline_within_two_seconds(status_server):
    b = await start_bot(status_server, "dial_in", script=["..."])
    await dialin_connected(b)
    await b.wait_until(lambda: b.tts.spoken)
    started = time.monotonic()
    await b.transport.fire("on_call_state_updated", "left")
    await b.wait_finished(timeout=2)
    assert time.monotonic() - started < 2
    await close(b)
    assert status_server.event("ended") == [{"reason": "remote_ended"}]
    assert ("leave", None) not in b.transport.actions  # cancelled, not a goodbye


async def test_silence_asks_once_then_ends_with_silence(status_server):
    b = await start_bot(status_server, "dial_in", workflow={"silence_timeout_s": 1})
    await dialin_connected(b)
    await b.wait_finished(timeout=10)
    await close(b)
    assert b.tts.spoken[1:] == ["Are you still there?", "I can't hear anyone, so I'll end the call now. Goodbye!"]
    assert status_server.event("ended") == [{"reason": "silence"}]


async def test_keypad_digits_reach_the_llm_and_are_reported(status_server):
    b = await start_bot(status_server, "dial_in", script=["Thank you, confirmed.", Tool("end_call")])
    await dialin_connected(b)
    await b.wait_until(lambda: b.tts.spoken)
    await b.press("1", "#")
    await b.say("That's my answer.")
    await b.wait_until(lambda: "Thank you, confirmed." in b.tts.spoken)
    await b.say("bye")
    await b.wait_finished()
    await close(b)
    assert status_server.event("dtmf") == [{"digits": "1"}, {"digits": "#"}]
    user_lines = [m["content"] for m in b.llm.contexts[0] if m.get("role") == "user"]
    assert any("DTMF: 1#" in str(c) for c in user_lines)



async def test_llm_error_mid_call_apologises_and_ends_with_a_reason(status_server):
    b = await start_bot(status_server, "dial_in", script=[RuntimeError("upstream 500")])
    await dialin_connected(b)
    await b.wait_until(lambda: b.tts.spoken)
    await b.say("What time is it?")
    await b.wait_finished()
    await close(b)
    assert b.tts.spoken[-1].startswith("I'm sorry, I'm having technical trouble")
    (ended,) = status_server.event("ended")
    assert ended["reason"] == "service_error" and "ScriptedLLM" in ended["error"]


async def test_a_voice_the_tts_does_not_have_ends_the_call_instead_of_going_mute(status_server, monkeypatch):
    from pipecat.services.openai.tts import OpenAITTSService

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    tts = OpenAITTSService(api_key="sk-test", base_url="http://127.0.0.1:9/v1",
                           settings=OpenAITTSService.Settings(voice="robot"))
    b = await start_bot(status_server, "dial_in", tts=tts)
    await dialin_connected(b)
    await b.wait_finished()
    await close(b)
    (ended,) = status_server.event("ended")
    assert ended["reason"] == "service_error" and "robot" in ended["error"]
