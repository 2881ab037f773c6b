"""The call sandbox (``make demo``): simulated Daily + runner + a scripted bot
speaking the real status protocol, through the same start path as a real call."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from calls import services
from calls.models import CallSession
from sandbox.script import parse_rates
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


def _wait_final(call_id, timeout=30.0) -> CallSession:
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
def test_an_answered_call_runs_to_completed_with_transcript_and_outcome(placed, call_sandbox):
    call = placed("answered")
    assert call.status == "completed" and call.end_reason == "completed"
    assert call.transcript[0]["text"] == "Hello Ada, this is Sandbox Clinic."
    assert call.outcome["result"] == "confirmed"
    kinds = list(call.events.order_by("at", "id").values_list("kind", flat=True))
    assert "bot_start_requested" in kinds and "dialout_attempt" in kinds and "metrics" in kinds
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
    assert not call.transcript


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
