"""Nothing accepted is lost under faults (runs on PostgreSQL + Redis only).

The fault runs themselves live in ``bench/faults.py`` (each builds its own stack
on its own database, Redis port and ports); here each runs once and its counts
must hold: every accepted call started exactly once, or failed with a reason.
The idle-socket test keeps a bot socket and a browser socket open on the Redis
channel layer for a minute of silence.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from channels.db import database_sync_to_async
from django.test import Client

from calls.models import CallSession
from calls.state import transition
from tests import factories

ROOT = Path(__file__).resolve().parent.parent

needs_pg_redis = pytest.mark.skipif(
    not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")),
    reason="fault runs need PostgreSQL and Redis (CI's second pass)",
)


@needs_pg_redis
@pytest.mark.parametrize("scenario, args", [
    ("worker-sigkill", ["--calls", "8"]),
    ("worker-sigterm", ["--calls", "8"]),
    # "calls placed 40 s after" shortened to 5 s here; `python -m bench.faults postgres-terminate` uses 40.
    ("postgres-terminate", ["--calls", "10", "--after", "5"]),
    ("redis-stop", ["--calls", "16"]),
    ("capacity-429", ["--calls", "6", "--busy", "30"]),
    ("capacity-429-too-long", ["--calls", "6", "--busy", "30"]),
    # Daily's HIPAA mode: Daily names the rooms, the start path stores the name it returns.
    ("worker-sigkill", ["--calls", "8", "--hipaa"]),
    ("worker-sigterm", ["--calls", "8", "--hipaa"]),
    ("postgres-terminate", ["--calls", "10", "--after", "5", "--hipaa"]),
    ("redis-stop", ["--calls", "16", "--hipaa"]),
])
def test_fault_run_starts_every_accepted_call_exactly_once(scenario, args):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.faults", scenario, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from {scenario}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    result = json.loads(lines[-1])
    print(json.dumps(result))
    assert result["accepted"] > 0
    assert result["started_twice"] == 0, result
    assert result["lost"] == 0, result
    assert result["html_answers"] == 0, result
    assert result["accepted"] == result["started_once"] + result["failed"], result
    assert result["rooms_no_call_holds"] == 0, result  # HIPAA mode: no room a dead worker made stays
    if scenario == "capacity-429":
        assert result["runner_429"] > 0 and result["started_once"] == result["accepted"], result
    if scenario == "capacity-429-too-long":
        assert result["failed"] == result["accepted"], result
        assert all("capacity" in reason for reason in result["failed_reasons"]), result


IDLE_S = float(os.environ.get("IDLE_SOCKET_TEST_S", "60"))
TOKEN = "idle-status-token"


@database_sync_to_async
def _world():
    org = factories.make_org()
    wf = factories.make_workflow(org, slug="wf")
    patient = factories.make_patient(org)
    call = factories.make_call(org, wf, patient)
    CallSession.objects.filter(pk=call.pk).update(status_token_hash=hashlib.sha256(TOKEN.encode()).hexdigest())
    transition(call.pk, "starting")
    staff = factories.make_user(org=org, role="staff")
    client = Client()
    client.force_login(staff)
    return call, client.cookies["sessionid"].value


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the idle timeout is the Redis channel layer's")
async def test_idle_bot_and_browser_sockets_stay_open_on_redis(asgi_live_server):
    call, session = await _world()
    base = asgi_live_server.ws_url
    async with aiohttp.ClientSession() as http:
        bot = await http.ws_connect(f"{base}/ws/bot/{call.pk}/", headers={"Authorization": f"Bearer {TOKEN}"})
        browser = await http.ws_connect(
            f"{base}/ws/calls/{call.pk}/",
            headers={"Cookie": f"sessionid={session}", "Origin": asgi_live_server.url},
        )
        # A minute of silence: the server must close neither (it sends the bot nothing).
        bot_frames = asyncio.ensure_future(bot.receive())
        deadline = asyncio.get_running_loop().time() + IDLE_S
        browser_frames = []
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                msg = await asyncio.wait_for(browser.receive(), timeout=left)
            except asyncio.TimeoutError:
                break
            browser_frames.append(msg)
            assert msg.type == aiohttp.WSMsgType.TEXT, f"browser socket closed while idle: {msg}"
        assert not bot_frames.done(), f"bot socket closed while idle: {bot_frames.result()}"
        # Both still carry messages: a bot event reaches the browser (the sentinel).
        await bot.send_json({"seq": 1, "event": "transcript", "at": "2026-01-01T12:00:00+00:00",
                             "data": {"role": "assistant", "text": "still here"}})
        while True:
            msg = await browser.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.TEXT, f"browser socket closed: {msg}"
            if "still here" in msg.data:
                break
        bot_frames.cancel()
        await bot.close()
        await browser.close()


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_database_answers_503_in_the_envelope_with_retry_after(client):
    from django.db import connections

    conn = connections["default"]
    saved = dict(conn.settings_dict)
    conn.close()
    if conn.vendor == "sqlite":
        conn.settings_dict["NAME"] = "/nonexistent-dir/unreachable.sqlite3"
    else:
        conn.settings_dict["PORT"] = "1"  # nothing listens there: connection refused
        if hasattr(conn, "close_pool"):
            conn.close_pool()
    try:
        response = client.get("/api/calls", HTTP_AUTHORIZATION="Bearer mr_anything")
    finally:
        conn.close()
        if hasattr(conn, "close_pool"):
            conn.close_pool()
        conn.settings_dict.update(saved)
    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/json")
    assert response["Retry-After"] == "5"
    assert "temporarily unavailable" in response.json()["detail"]
