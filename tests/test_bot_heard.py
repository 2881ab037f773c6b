"""The bot, heard: whole calls played as audio through the real bot.py (``botkit.simulate``).

Each scenario is a callee who speaks (espeak-ng), stays silent, presses keys,
hangs up or talks over the bot, and each test asserts what that person would
hear and what the server would be told. All scenarios of this module run at
once (each call is mostly waiting on real-time audio) before the first test
looks at its report; see ``SCENARIOS``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from botkit import prompt  # noqa: E402

PERSONAL = ("Ada", "Lovelace", "1815", "Babbage", "Tuesday", "+15551230000")
FIRST_MESSAGE = "Hello Ada, this is Sunrise Family Clinic about your appointment."
# Calling law: what the patient hears first, once a person is confirmed (then the greeting).
DIALOUT_DISCLOSURE = (
    "Hello, this is an automated assistant calling from Sunrise Family Clinic. "
    "To stop these calls, say stop calling me at any time."
)
DIALIN_DISCLOSURE = "Hello, you have reached the automated assistant of Sunrise Family Clinic."
VOICEMAIL_TEXT = "This is Sunrise Family Clinic. Please call us back at +15550001111."
TRANSFER = {"transfer_number": "+15557654321"}

SHORT_GREETING = "Hi, you've reached Ada. Please leave a message after the tone."
LONG_GREETING = (
    "Hello, you have reached the voicemail of Ada Lovelace. I am sorry I cannot take your call right now. "
    "I am probably out in the garden, or on the other line, or maybe I am just avoiding the phone today. "
    "Please leave your name, your number and a short message after the tone, and I will call you back."
)
HELLO = [{"say": "Hello?"}, {"wait_for_bot": 0.8}]

SCENARIOS: dict[str, dict] = {
    "person_answers": {
        "pickup_s": 2.5,  # line noise before "Hello?": the bot must stay silent through it
        "callee": HELLO + [{"say": "Yes, I will be there."}, {"wait_for_bot": 0.8}],
    },
    "voicemail_short_message": {
        "workflow": {"leave_voicemail": True},
        "callee": [{"say": SHORT_GREETING}, {"silence_s": 0.3}, {"beep": True}, {"silence_s": 9}],
    },
    "voicemail_short_no_message": {
        "callee": [{"say": SHORT_GREETING}, {"silence_s": 0.3}, {"beep": True}, {"silence_s": 6}],
    },
    "voicemail_long_message": {
        "workflow": {"leave_voicemail": True},
        "callee": [{"say": LONG_GREETING}, {"silence_s": 0.3}, {"beep": True}, {"silence_s": 9}],
    },
    "voicemail_long_no_message": {
        "callee": [{"say": LONG_GREETING}, {"silence_s": 0.3}, {"beep": True}, {"silence_s": 6}],
    },
    "nobody_speaks": {"workflow": {"silence_timeout_s": 4}, "callee": []},
    "busy": {"dialout": {"result": "busy", "after_s": 0.5}},
    "declined": {"dialout": {"result": "declined", "after_s": 1}},
    "no_answer": {"dialout": {"result": "no_answer", "after_s": None}, "workflow": {"ring_timeout_s": 3}},
    "retried_then_answered": {
        "dialout": {"result": "answered", "after_s": 0.5, "failures_before": ["error"]},
        "bot_args": {"dialout_backoff": [0.2]},
        "callee": HELLO + [{"hangup": True}],
    },
    "hangs_up_mid_sentence": {"callee": [{"say": "Hello?"}, {"while_bot_speaks": {"hangup": True}, "after_s": 1.0}]},
    "canceled_mid_sentence": {"callee": [{"say": "Hello?"}, {"while_bot_speaks": {"cancel": True}, "after_s": 1.0}]},
    "dialout_transfer": {
        "workflow": TRANSFER,
        "callee": HELLO + [{"say": "Can I talk to a person, please?"}, {"wait_for_bot": 3}],
    },
    "dialout_transfer_fails": {
        "workflow": TRANSFER, "transfer": "fails",
        "callee": HELLO + [{"say": "Can I talk to a person, please?"}, {"wait_for_bot": 3}],
    },
    "dialin_transfer": {
        "direction": "dial_in", "workflow": TRANSFER,
        "callee": [{"wait_for_bot": 0.6}, {"say": "Can I talk to a person, please?"}, {"wait_for_bot": 3}],
    },
    "dialin_transfer_fails": {
        "direction": "dial_in", "workflow": TRANSFER, "transfer": "fails",
        "callee": [{"wait_for_bot": 0.6}, {"say": "Can I talk to a person, please?"}, {"wait_for_bot": 3}],
    },
    "dtmf": {
        "direction": "dial_in",
        "llm": [{"text": "You pressed one. Thank you."}, {"tool": "end_call", "args": {}}],
        "callee": [{"wait_for_bot": 0.6}, {"dtmf": "1#"}, {"wait_for_bot": 0.8}, {"say": "Okay, bye."},
                   {"wait_for_bot": 2}],
    },
    "llm_error": {
        "direction": "dial_in",
        "llm": [{"error": "The server had an error while processing your request.", "status": 400}],
        "callee": [{"wait_for_bot": 0.6}, {"say": "Hi, I have a question about my bill."}, {"wait_for_bot": 2}],
    },
    "silence_prompt_then_end": {"direction": "dial_in", "workflow": {"silence_timeout_s": 3}, "callee": []},
    "dialin_caller_speaks_first": {
        "direction": "dial_in", "workflow": {"speaks_first": "callee"}, "pickup_s": 1.5,
        "llm": [{"text": "Of course, I can help with that."}, {"tool": "end_call", "args": {}}],
        "callee": [{"say": "Hi, I'd like to check my appointment."}, {"wait_for_bot": 0.8},
                   {"say": "Thank you."}, {"wait_for_bot": 2}],
    },
    "barge_in": {
        "direction": "dial_in",
        "llm": [{"text": "Let me tell you about all our opening hours. We open at eight on Monday. "
                         "We open at nine on Tuesday. We open at ten on Wednesday. Thursday is a late day."},
                {"tool": "end_call", "args": {}}],
        "callee": [{"wait_for_bot": 0.6}, {"say": "When are you open?"},
                   {"while_bot_speaks": {"say": "Sorry, I only need Monday."}, "after_s": 1.5},
                   {"wait_for_bot": 2}],
    },
}


def _run_all() -> dict[str, dict]:
    from botkit.simulate import quiet_logs, simulate

    quiet_logs("ERROR")
    reports: dict[str, dict] = {}

    async def main():
        gate = asyncio.Semaphore(int(os.environ.get("SIM_PARALLEL", "7")))

        async def one(name, scenario):
            async with gate:
                reports[name] = await simulate({"timeout_s": 60, **scenario})

        # The call whose latency is asserted plays alone first, as each real bot has its
        # own process; the others then share the machine.
        await one("person_answers", SCENARIOS["person_answers"])
        await asyncio.gather(*(one(n, s) for n, s in SCENARIOS.items() if n != "person_answers"))

    # Its own thread and event loop: the calls run concurrently, apart from pytest-asyncio's loop.
    errors: list[BaseException] = []

    def target():
        try:
            asyncio.run(main())
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    thread = threading.Thread(target=target, name="scenarios")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return reports


@pytest.fixture(scope="module")
def calls():
    return _run_all()


def heard(report) -> list[str]:
    return [h["text"] for h in report["heard"]]


def spoken(report) -> str:
    """All the patient heard, as one text (the TTS splits what it says into sentences)."""
    return " ".join(heard(report))


def said(report, index=0) -> dict:
    return [c for c in report["callee"] if c["what"] == "say"][index]


def events(report, name) -> list[dict]:
    return [m for m in report["status"] if m["event"] == name]


def ended(report) -> dict:
    (message,) = events(report, "ended")
    return message["data"]


def calls_named(report, name) -> list[dict]:
    return [c for c in report["transport"] if c["call"] == name]


def nothing_personal(report) -> None:
    for line in heard(report):
        assert not any(p in line for p in PERSONAL), line


# -- a person answers ---------------------------------------------------------------


def test_a_person_answers_and_the_call_reaches_an_outcome(calls):
    r = calls["person_answers"]
    assert heard(r)[0] == f"{DIALOUT_DISCLOSURE} {FIRST_MESSAGE}"
    assert events(r, "outcome")[0]["data"]["result"] == "confirmed"
    assert spoken(r).endswith(prompt.DEFAULT_GOODBYE)
    assert ended(r) == {"reason": "completed"}
    assert [m["data"]["text"] for m in events(r, "transcript") if m["data"]["role"] == "user"] == [
        "Hello?", "Yes, I will be there."]
    # the bot hung up the leg it dialled, then left
    assert [c["call"] for c in r["transport"]][-2:] == ["stop_dialout", "leave"]
    assert "hung_up_by_bot" in [c["what"] for c in r["callee"]]


def test_on_a_dialout_the_bot_is_silent_until_the_person_speaks_then_greets_within_2s(calls):
    r = calls["person_answers"]
    hello = said(r)
    assert r["heard"][0]["at_s"] > hello["end_s"]  # nothing through 2.5 s of an open, silent line
    # the bot's first words (the disclosure, then the greeting) begin within 2 s of the person's "Hello?"
    assert r["heard"][0]["text"].startswith(DIALOUT_DISCLOSURE)
    assert r["heard"][0]["at_s"] - hello["end_s"] < 2.0
    assert r["turns"][0]["latency_ms"] < 2000


def test_the_fake_stt_only_transcribed_speech(calls):
    r = calls["person_answers"]
    texts = [s["text"] for s in r["stt_requests"]["requests"] if s["text"]]
    assert texts == ["Hello?", "Yes, I will be there."]
    assert all(s["speech"] for s in r["stt_requests"]["requests"] if s["text"])


# -- mailboxes ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["voicemail_short_message", "voicemail_long_message"])
def test_a_mailbox_hears_only_the_phi_free_message_after_the_beep(calls, name):
    r = calls[name]
    assert spoken(r) == VOICEMAIL_TEXT
    beep = next(c for c in r["callee"] if c["what"] == "beep")
    assert r["heard"][0]["at_s"] >= beep["end_s"]
    assert ended(r) == {"reason": "voicemail", "message_left": True}
    assert events(r, "voicemail_detected")
    nothing_personal(r)
    # no LLM turn ran on the greeting (the prompt carries the patient's details)
    assert r["llm_requests"]["count"] == 0


@pytest.mark.parametrize("name", ["voicemail_short_no_message", "voicemail_long_no_message"])
def test_without_leave_voicemail_a_mailbox_hears_nothing(calls, name):
    r = calls[name]
    assert heard(r) == []
    assert ended(r) == {"reason": "voicemail", "message_left": False}
    assert r["llm_requests"]["count"] == 0
    assert [c["call"] for c in r["transport"]][-2:] == ["stop_dialout", "leave"]


def test_nobody_speaks_means_silence_and_not_a_word(calls):
    r = calls["nobody_speaks"]
    assert heard(r) == []
    assert ended(r) == {"reason": "silence"}
    assert r["stt_requests"]["count"] == 0


# -- unanswered dial-outs -----------------------------------------------------------


@pytest.mark.parametrize("name", ["busy", "declined"])
def test_busy_and_declined_are_reported_and_not_redialled(calls, name):
    r = calls[name]
    assert ended(r)["reason"] == name
    assert len(calls_named(r, "start_dialout")) == 1
    assert heard(r) == []


def test_no_answer_stops_the_ringing_leg_after_the_ring_timeout(calls):
    r = calls["no_answer"]
    assert ended(r)["reason"] == "no_answer"
    (stop,) = calls_named(r, "stop_dialout")
    assert stop["args"] == "phone-participant-1"  # the ringing leg's participant
    assert stop["at_s"] < 5
    whats = [c["what"] for c in r["callee"]]
    assert "ringing_stopped" in whats and "rings_into_empty_room" not in whats


def test_after_a_retry_the_bot_hangs_up_the_current_attempts_leg(calls):
    r = calls["retried_then_answered"]
    assert len(calls_named(r, "start_dialout")) == 2
    assert heard(r)[0] == f"{DIALOUT_DISCLOSURE} {FIRST_MESSAGE}"
    assert ended(r) == {"reason": "completed"}
    # the patient hung up: nothing left to stop (and never the first attempt's id)
    assert all(c["args"] != "phone-participant-1" for c in calls_named(r, "stop_dialout"))


# -- the call ends under the bot --------------------------------------------------------


def test_the_patient_hangs_up_mid_sentence(calls):
    r = calls["hangs_up_mid_sentence"]
    hangup = next(c for c in r["callee"] if c["what"] == "hung_up")
    assert ended(r) == {"reason": "completed"}
    assert calls_named(r, "stop_dialout") == []  # the leg is gone already
    (leave,) = calls_named(r, "leave")
    assert leave["at_s"] - hangup["at_s"] < 3.0


def test_cancel_mid_sentence_stops_the_bot_at_once(calls):
    r = calls["canceled_mid_sentence"]
    deleted = next(c for c in r["callee"] if c["what"] == "room_deleted")
    assert ended(r) == {"reason": "remote_ended"}
    assert calls_named(r, "stop_dialout") == []
    assert r["duration_s"] - deleted["at_s"] < 3.0
    assert not [h for h in r["heard"] if h["at_s"] > deleted["at_s"]]


# -- "can I talk to a person" -----------------------------------------------------------


@pytest.mark.parametrize("name", ["dialout_transfer", "dialin_transfer"])
def test_a_transfer_that_works(calls, name):
    r = calls[name]
    assert spoken(r).endswith(prompt.TRANSFER_MESSAGE)
    (transfer,) = calls_named(r, "sip_call_transfer")
    assert transfer["args"] == {"toEndPoint": "+15557654321"}
    assert events(r, "transfer_started")
    assert ended(r) == {"reason": "transferred"}
    assert calls_named(r, "stop_dialout") == []  # the transferred leg is not ours to hang up


@pytest.mark.parametrize("name", ["dialout_transfer_fails", "dialin_transfer_fails"])
def test_a_failed_transfer_tells_the_caller_and_promises_a_call_back(calls, name):
    r = calls[name]
    assert spoken(r).endswith(prompt.TRANSFER_MESSAGE + " " + prompt.TRANSFER_FAILED)
    assert "call you back" in prompt.TRANSFER_FAILED
    data = ended(r)
    assert data["reason"] == "transfer_failed" and "Unable to transfer SIP call" in data["error"]
    callee_did = [c["what"] for c in r["callee"]]
    assert "transferred" not in callee_did


# -- keypad, errors, silence ------------------------------------------------------------


def test_keypad_digits_reach_the_llm_and_are_reported(calls):
    r = calls["dtmf"]
    assert [m["data"]["digits"] for m in events(r, "dtmf")] == ["1", "#"]
    first = r["llm_requests"]["requests"][0]
    assert "1" in json.dumps(first["messages"][-1])
    assert "You pressed one. Thank you." in spoken(r)


def test_an_llm_error_is_an_apology_then_the_end(calls):
    r = calls["llm_error"]
    assert spoken(r).endswith(prompt.APOLOGY)
    data = ended(r)
    assert data["reason"] == "service_error" and "server had an error" in data["error"]


def test_silence_gets_one_prompt_then_the_end(calls):
    r = calls["silence_prompt_then_end"]
    assert spoken(r) == f"{DIALIN_DISCLOSURE} {FIRST_MESSAGE} {prompt.STILL_THERE} {prompt.SILENCE_GOODBYE}"
    assert ended(r) == {"reason": "silence"}


def test_a_dialin_caller_who_speaks_first_is_answered_not_greeted_over(calls):
    r = calls["dialin_caller_speaks_first"]
    first = said(r)
    assert r["heard"][0]["at_s"] > first["end_s"]
    # their first words are answered: the disclosure, then the LLM's reply
    assert spoken(r).startswith(f"{DIALIN_DISCLOSURE} Of course, I can help with that.")
    assert "check my appointment" in json.dumps(r["llm_requests"]["requests"][0]["messages"])
    assert ended(r) == {"reason": "completed"}


def test_barge_in_stops_the_bot_and_the_llm_hears_the_interruption(calls):
    r = calls["barge_in"]
    barge = next(c for c in r["callee"] if c["what"] == "barge_in")
    assert "Thursday is a late day." not in heard(r)  # the rest of the long answer was cut
    second = r["llm_requests"]["requests"][1]
    assert "only need Monday" in json.dumps(second["messages"])
    assert ended(r) == {"reason": "completed"}
    assert barge["at_s"] > r["heard"][0]["at_s"]


# -- the command --------------------------------------------------------------------


def test_the_command_plays_a_scenario_file_and_prints_the_report(tmp_path):
    path = tmp_path / "busy.json"
    path.write_text(json.dumps({"dialout": {"result": "busy", "after_s": 0.2}, "timeout_s": 20}))
    done = subprocess.run([sys.executable, "-m", "botkit.simulate", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["end_reason"] == "busy"
    assert [c["call"] for c in report["transport"]][0] == "start_dialout"

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"callee": [{"say": "hi", "hangup": True}]}))
    done = subprocess.run([sys.executable, "-m", "botkit.simulate", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "callee.0" in done.stderr
