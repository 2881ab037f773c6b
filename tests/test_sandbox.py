"""The call sandbox (``make demo``): simulated Daily + runner, and every call made
by the real bot.py in the call simulator, reporting to the server's status
socket, through the same start path as a real call."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from calls import services
from calls.models import CallSession
from sandbox.calls import parse_rates
from sandbox.server import Sandbox, SandboxRefused
from tests import factories
from tests.live import ROOT


def test_the_sandbox_refuses_production(monkeypatch):
    monkeypatch.setenv("ENV", "Production")
    with pytest.raises(SandboxRefused):
        Sandbox()
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "--port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"ENV": "production", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "never runs with ENV=production" in done.stderr


def test_rates_are_checked():
    assert parse_rates("answered=3, busy=1") == {"answered": 3.0, "busy": 1.0}
    for bad in ("", "ringing=1", "answered=0", "busy=-1"):
        with pytest.raises(ValueError):
            parse_rates(bad)


def _wait_final(call_id, timeout=90.0) -> CallSession:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        call = CallSession.objects.get(pk=call_id)
        if call.is_final:
            return call
        time.sleep(0.05)
    raise AssertionError(f"call still {call.status}")


@pytest.fixture
def placed(call_sandbox, asgi_live_server):
    org = factories.make_org("sandbox-clinic", name="Sandbox Clinic")
    wf = factories.make_workflow(
        org, slug="appointment-reminder", outcome_results=["confirmed", "declined"],
        first_message="Hello {first_name}, this is {client_name}.",
    )
    patient = factories.make_patient(org, first_name="Ada", last_name="Lovelace")

    def place(fate: str) -> CallSession:
        call_sandbox.sandbox.rates = parse_rates(f"{fate}=1")
        call = services.place_call(organization=org, workflow=wf, patient=patient)
        return _wait_final(call.pk)

    return place


@pytest.mark.django_db(transaction=True)
def test_an_answered_call_is_made_by_the_real_bot(placed, call_sandbox):
    call = placed("answered")
    assert call.status == "completed" and call.end_reason == "completed"
    said = [(line["role"], line["text"]) for line in call.transcript]
    # The bot waits for the person, says it is an automated assistant and how to opt out
    # (the calling law), greets with the workflow's first message, asks, and hears the
    # answer: what the staff member reads on the live page.
    assert said[0] == ("user", "Hello?")
    role, first = said[1]
    assert role == "assistant" and first.startswith("Hello, this is an automated assistant calling from Sandbox Clinic.")
    assert "press 9" in first and first.endswith("Hello Ada, this is Sandbox Clinic.")
    assert ("user", "Yes, I'll be there.") in said
    assert any(role == "assistant" and "Will you be able to make it?" in text for role, text in said)
    assert call.outcome["result"] == "confirmed"
    kinds = list(call.events.order_by("at", "id").values_list("kind", flat=True))
    for kind in ("bot_start_requested", "dialout_attempt", "dialout_answered", "metrics"):
        assert kind in kinds
    deadline = time.monotonic() + 15  # the ended call's room is deleted after the final move
    while call.daily_room_name in call_sandbox.sandbox.rooms and time.monotonic() < deadline:
        time.sleep(0.05)
    assert call.daily_room_name not in call_sandbox.sandbox.rooms


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fate, status, reason", [
    ("busy", "busy", "busy"), ("no_answer", "no_answer", "no_answer"), ("voicemail", "no_answer", "voicemail"),
])
def test_unanswered_fates(placed, fate, status, reason):
    call = placed(fate)
    assert (call.status, call.end_reason) == (status, reason)
    assert not [line for line in call.transcript if line["role"] == "assistant"]  # the bot said nothing


@pytest.mark.django_db(transaction=True)
def test_cancel_mid_call_ejects_the_bot(call_sandbox, asgi_live_server):
    """Cancel deletes the room: the bot in it is disconnected and the call ends canceled."""
    org = factories.make_org("sandbox-clinic", name="Sandbox Clinic")
    wf = factories.make_workflow(org, slug="appointment-reminder", outcome_results=["confirmed"])
    patient = factories.make_patient(org, first_name="Ada", last_name="Lovelace")
    call = services.place_call(organization=org, workflow=wf, patient=patient)
    deadline = time.monotonic() + 60
    while not call.transcript and time.monotonic() < deadline:  # the patient has spoken
        time.sleep(0.1)
        call.refresh_from_db()
    assert call.transcript, f"no transcript (call {call.status})"
    services.cancel_call(call)
    call = _wait_final(call.pk)
    assert call.status == "canceled"
    deadline = time.monotonic() + 20
    while call_sandbox.sandbox.calls and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not call_sandbox.sandbox.calls  # the bot left; nothing is still playing


def test_a_start_beyond_capacity_is_refused_with_429():
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from botkit.simulate import demo_request

    async def go():
        sandbox = Sandbox(max_calls=1)
        sandbox.calls["busy-room"] = asyncio.get_running_loop().create_future()
        async with TestClient(TestServer(sandbox.app())) as client:
            body = demo_request("dial_out", "ws://127.0.0.1:9/ws/bot/x/", "t" * 20)
            answer = await client.post("/start", json={"createDailyRoom": False, "body": body})
            bad = await client.post("/start", json={"body": {"room_url": 3}})
            return answer.status, await bad.text()

    status, bad = asyncio.run(go())
    assert status == 429
    assert "room_url" in bad


def test_the_sandbox_imports_no_django():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, bot, sandbox.server, sandbox.__main__; "
                               "print([m for m in sys.modules if m.split('.')[0] == 'django'])"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_server_never_imports_the_sandbox():
    """Only `make demo` starts it, as its own process: no server setting can switch it on."""
    import ast

    for package in ("myrobot", "organizations", "patients", "calls", "botrunner", "botkit"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                assert not any(n == "sandbox" or n.startswith("sandbox.") for n in names), path


@pytest.mark.django_db(transaction=True)
def test_in_hipaa_mode_the_sandbox_names_the_room_and_the_call_still_completes(placed, call_sandbox, settings):
    call_sandbox.sandbox.hipaa = True
    settings.DAILY_HIPAA_MODE = True
    try:
        call = placed("answered")
    finally:
        call_sandbox.sandbox.hipaa = False
    assert call.status == "completed" and call.outcome["result"] == "confirmed"
    assert call.daily_room_name and not call.daily_room_name.startswith("mr-")
