"""What bot() accepts, how it personalises the prompt, and what it keeps out of logs."""

from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace

import pytest
from loguru import logger

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import bot  # noqa: E402
from botkit import phi, prompt  # noqa: E402
from tests.status_server import StatusServer  # noqa: E402
from botrunner.agent_request import build  # noqa: E402


def fake_call(direction: str):
    org = SimpleNamespace(pk=3, name="Acme Clinic", slug="acme", callback_number="+15550009999")
    workflow = SimpleNamespace(
        slug="reminder",
        name="Appointment reminder",
        instructions="Remind {first_name} about {appointment}. Unknown: {nope}.",
        first_message="Hi {first_name}!",
        voice="alloy",
        speaks_first="bot",
        max_duration_s=300,
        max_dialout_attempts=4,
        outcome_results=["confirmed", "cancelled"],
        config={},
        voicemail_message="This is {clinic}, please call {callback_number}.",
        leave_voicemail=True,
        transfer_number="+15550003333",
        silence_timeout_s=12,
        ring_timeout_s=30,
        language="en",
    )
    patient = SimpleNamespace(
        first_name="Grace",
        last_name="Hopper",
        preferred_language="es",
        timezone="America/New_York",
        data={"appointment": "Tuesday 10:00"},
    )
    return SimpleNamespace(
        pk="6c1f0f3e-9a53-4a43-9e0b-3f5a1c2b7d10",
        organization=org,
        workflow=workflow,
        patient=patient,
        patient_id=42,
        direction=direction,
        daily_call_id="call-1",
        daily_call_domain="domain-1",
        from_number="+15550001111",
        to_number="+15550002222",
    )


@pytest.mark.parametrize("direction", ["dial_in", "dial_out"])
def test_the_body_botrunner_builds_is_what_bot_accepts(direction):
    built = build(fake_call(direction), "https://acme.daily.co/room", "tok", "ws://h/ws/bot/x/", "st")
    # What start_bot sends: model_dump(exclude_none=True), through JSON.
    body = json.loads(json.dumps(built.model_dump(exclude_none=True)))
    req, bad = bot.parse_request(body)
    assert bad == []
    assert req == built
    assert req.is_dialin is (direction == "dial_in")
    # A JSON string body (some hosts pass it raw) works too.
    req2, _ = bot.parse_request(json.dumps(body))
    assert req2 == built


def test_invalid_body_names_fields_but_not_values():
    body = {"room_url": 5, "patient_data": {"first_name": "Grace"}, "surprise": "+15550001111"}
    req, bad = bot.parse_request(body)
    assert req is None
    assert "workflow" in bad and "room_url" in bad
    assert "surprise" not in bad  # unknown fields are ignored: newer servers must not break deployed bots
    assert not any("Grace" in f or "5550001111" in f for f in bad)
    assert bot.parse_request("not json") == (None, ["(body is not JSON)"])
    assert bot.parse_request(None)[0] is None


async def test_bot_reports_an_invalid_body_and_exits_without_logging_phi(monkeypatch):
    monkeypatch.setattr(phi, "_logging_configured", True)  # keep our log sink
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG")
    try:
        async with StatusServer(token="st") as server:
            body = {
                "session_id": "s-9",
                "status_url": server.url("s-9"),
                "status_token": "st",
                "patient_data": {"first_name": "Grace"},
                "dialout_settings": {"phone_number": "+15550001111"},
            }
            await bot.bot(SimpleNamespace(body=body))
            errors = server.event("error")
    finally:
        logger.remove(sink)
    assert len(errors) == 1 and errors[0]["fatal"] is True
    assert "workflow" in errors[0]["message"]
    text = "\n".join(lines)
    assert "invalid agent request for session s-9" in text
    assert "Grace" not in text and "5550001111" not in text


async def test_invalid_body_without_status_url_just_exits(monkeypatch):
    monkeypatch.setattr(phi, "_logging_configured", True)
    await bot.bot(SimpleNamespace(body={"nothing": "useful"}))
    await bot.bot(SimpleNamespace(body=None))


def test_system_prompt_is_personalised():
    req = build(fake_call("dial_out"), "https://r", "t", "ws://s", "st")
    text = prompt.build_system_prompt(req)
    assert "Remind Grace about Tuesday 10:00. Unknown: {nope}." in text
    assert "Acme Clinic" in text
    assert "- last_name: Hopper" in text
    assert "confirmed, cancelled" in text
    assert prompt.first_message(req) == "Hi Grace!"
    assert "'es'" in text  # the patient's language wins over the workflow's
    assert "transfer_to_human" in text


def test_call_control_fields_travel_and_the_voicemail_message_has_no_patient_data():
    req = build(fake_call("dial_out"), "https://r", "t", "ws://s", "st")
    wf = req.workflow
    assert (wf.leave_voicemail, wf.transfer_number, wf.silence_timeout_s, wf.ring_timeout_s, wf.language) == (
        True, "+15550003333", 12, 30, "es")
    assert req.callback_number == "+15550009999"
    assert prompt.voicemail_message(req) == "This is Acme Clinic, please call +15550009999."
    wf.voicemail_message = "Hi {first_name}, {clinic} calling about {appointment}."
    assert prompt.voicemail_message(req) == "Hi {first_name}, Acme Clinic calling about {appointment}."


def test_a_bot_deployed_before_call_control_fields_still_accepts_the_new_body_and_vice_versa():
    from botrunner.agent_request import AgentRequest

    body = build(fake_call("dial_out"), "https://r", "t", "ws://s", "st").model_dump(exclude_none=True)
    for key in ("voicemail_message", "leave_voicemail", "transfer_number", "silence_timeout_s",
                "ring_timeout_s", "language"):
        body["workflow"].pop(key)
    body.pop("callback_number")
    req = AgentRequest.model_validate(body)  # an older server's body: defaults apply
    assert req.workflow.silence_timeout_s == 10 and req.workflow.ring_timeout_s == 45


def test_personalise_survives_broken_templates():
    assert prompt.personalise("Hi {name} {", {"name": "Ann"}) == "Hi Ann {"
    assert prompt.personalise("{0} and {a.b} and {name}", {"name": "Ann"}) == "{0} and {a.b} and Ann"
    assert prompt.personalise("{{literal}} {name}", {"name": "Ann"}) == "{literal} Ann"
    assert prompt.personalise("", {"name": "Ann"}) == ""


def test_redaction_of_registered_values_and_phone_numbers():
    handle = phi.register(phi.sensitive_values({"first_name": "Ann", "dob": "1931-02-03", "lang": "en"},
                                               ["+15550001111"]))
    try:
        out = phi.redact("Ann called from +15550001111 (5550001111), born 1931-02-03; Announcement in en")
        assert "Ann " not in out and "1931-02-03" not in out and "5550001111" not in out
        assert "Announcement" in out and " en" in out  # whole words only; 2-letter values left alone
    finally:
        phi.unregister(handle)
    # Any E.164 number is masked even when not registered.
    assert "5557654321" not in phi.redact("dialing +15557654321")
    assert phi.mask_phone("+15550001111") == "+*********11"
    assert phi.mask_name("Ann") == "A**"


def test_runner_request_log_is_withheld():
    record = {
        "name": "pipecat.runner.run",
        "message": "Received request: {'body': {'patient_data': {'first_name': 'Ann'}}}",
        "level": SimpleNamespace(no=10),
    }
    phi._patch(record)
    assert "Ann" not in record["message"]


def test_transport_flag_detection():
    assert not bot._has_transport_flag([])
    assert not bot._has_transport_flag(["--port", "7861"])
    assert bot._has_transport_flag(["-t", "webrtc"])
    assert bot._has_transport_flag(["-twebrtc"])
    assert bot._has_transport_flag(["--transport=daily"])


def test_bot_and_botkit_import_no_django():
    import subprocess

    code = (
        "import sys, bot, botkit.reporter, botkit.dialout, botkit.prompt, botkit.phi; "
        "assert 'django' not in sys.modules, 'django imported'"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
