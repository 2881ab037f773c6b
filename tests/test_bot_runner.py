"""`python bot.py` (Pipecat's development runner): Daily by default, and no patient data in its output.

The runner logs whole /start bodies at DEBUG and resets loguru in its main();
this starts the real runner as a subprocess, POSTs a body carrying a
recognisable name, date of birth and phone number, lets the bot run until its
(deliberately unjoinable) room fails, and reads everything the process printed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile

import aiohttp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.bot_image import python_in_image, stage  # noqa: E402
from tests.status_server import StatusServer  # noqa: E402

FIRST, LAST, DOB = "Zebulon", "Quixotically", "1931-02-03"
PHONE = "+15558675309"
PHI = (FIRST, LAST, DOB, PHONE, PHONE[1:], PHONE[-10:])
SESSION = "phi-1"


def printed(*files) -> str:
    """What the process has written to ``files`` so far (``os.pread``: the process
    writes through the same open files, so their offset must not move)."""
    return "".join(
        os.pread(f.fileno(), os.fstat(f.fileno()).st_size, 0).decode(errors="replace") for f in files
    )


async def until(condition, timeout: float) -> None:
    """Poll ``condition`` until it holds, for at most ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError(f"not true within {timeout} s")
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body(status_url: str) -> dict:
    return {
        # Unparseable on purpose: Daily fails the join at once (a real but
        # unreachable room takes ~19 s), and the bot takes its join-failure path.
        "room_url": "not-a-room-url",
        "token": "meeting-token",
        "session_id": SESSION,
        "patient_id": "1",
        "patient_data": {"first_name": FIRST, "last_name": LAST, "date_of_birth": DOB},
        "client_name": "Acme Clinic",
        "organization_id": "1",
        "organization_slug": "acme",
        "workflow": {
            "slug": "reminder",
            "name": "Reminder",
            "instructions": "Call {first_name} {last_name}, born {date_of_birth}.",
            "first_message": "Hello {first_name}",
        },
        "status_url": status_url,
        "status_token": "st",
        "dialout_settings": {"phone_number": PHONE},
    }


@pytest.mark.parametrize("log_level", [None, "DEBUG"])
async def test_runner_serves_daily_by_default_and_logs_no_patient_data(log_level, tmp_path):
    # Only the image's files (from the Dockerfile), and no Django importable: as on Pipecat Cloud.
    image = str(tmp_path)
    stage(image)
    port = free_port()
    dead = free_port()  # nothing listens here
    env = dict(os.environ)
    env.update(
        DAILY_API_URL=f"http://127.0.0.1:{dead}/v1",
        DAILY_API_KEY="daily-key",
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=f"http://127.0.0.1:{dead}/v1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("DAILY_ROOM_URL", None)  # would make the runner create a room
    env.pop("BOT_LOG_LEVEL", None)
    if log_level:
        env["BOT_LOG_LEVEL"] = log_level

    async with StatusServer(token="st") as server:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            run_bot_py = (
                f"sys.argv = ['bot.py', '--port', '{port}']\n"
                "import runpy; runpy.run_path('bot.py', run_name='__main__')\n"
            )
            proc = await asyncio.create_subprocess_exec(
                *python_in_image(image, run_bot_py), cwd=image, env=env, stdout=out, stderr=err,
            )
            try:
                async with aiohttp.ClientSession() as http:
                    status = None
                    for _ in range(300):
                        if proc.returncode is not None:
                            break
                        try:
                            async with http.get(f"http://localhost:{port}/status") as r:
                                status = await r.json()
                                break
                        except aiohttp.ClientError:
                            await asyncio.sleep(0.1)
                    assert status is not None, "the runner did not start"
                    # No flags given: Daily only (what LOCAL_SERVER_URL expects).
                    assert status["transports"] == ["daily"]

                    payload = {"createDailyRoom": False, "body": body(server.url(SESSION))}
                    async with http.post(f"http://localhost:{port}/start", json=payload) as r:
                        assert r.status == 200

                await server.wait_for_event("bot_started", timeout=20)
                error = await server.wait_for_event("error", timeout=30)
                assert error["fatal"] is True
                # The sentinel: the bot's last line, after its reporter closed. All it
                # logs while finishing is written before it.
                await until(lambda: f"call {SESSION}: bot done" in printed(out, err), timeout=30)
            finally:
                if proc.returncode is None:
                    proc.terminate()
                    try:
                        await asyncio.wait_for(proc.wait(), 10)
                    except asyncio.TimeoutError:
                        proc.kill()
                        await proc.wait()
            out.seek(0)
            err.seek(0)
            output = out.read().decode(errors="replace") + err.read().decode(errors="replace")

    assert "Joining not-a-room-url" in output  # the bot really ran
    leaked = [value for value in PHI if value in output]
    assert leaked == [], f"patient data in the runner's output: {leaked}"
    if log_level == "DEBUG":
        assert "runner message withheld" in output  # the /start body line, masked
