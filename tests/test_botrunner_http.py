"""background + botrunner.http: one long-lived loop and one ClientSession per process."""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
import sys
import time
import uuid

import pytest

import background
from botrunner import daily, http, start
from tests.fakes.aio import run_shared
from tests.fakes.samples import agent_request


def test_one_session_reused_across_many_calls(fake_daily, fake_runner):
    session_ids = set()
    created_before = http.stats["sessions_created"]
    for _ in range(10):
        session_ids.add(run_shared(lambda s: asyncio.sleep(0, result=id(s))))
        sid = str(uuid.uuid4())
        run_shared(lambda s: daily.create_room(s, session_id=sid, dialin=False, max_duration_s=60))
        run_shared(lambda s: start.start_bot(agent_request(), s))
    assert len(session_ids) == 1
    assert http.stats["sessions_created"] - created_before <= 1  # at most the first use
    # keep-alive: sequential calls ride one connection per fake (Daily: two,
    # as the domain-id fetch runs alongside the first room's request)
    assert len(fake_daily.requests) == 11 and len(fake_daily.connections) <= 2
    assert len(fake_runner.connections) == 1
    assert len(fake_runner.started) == 10


def test_many_starts_in_flight_on_one_loop(fake_runner):
    fake_runner.latency_ms = 200
    n = 20
    t0 = time.monotonic()
    futures = [background.submit(lambda: _start_one()) for _ in range(n)]
    for f in futures:
        f.result(10)
    elapsed = time.monotonic() - t0
    assert len(fake_runner.started) == n
    assert elapsed < 2.0, f"{n} starts at 200 ms each took {elapsed:.2f}s: they did not overlap"


async def _start_one():
    return await start.start_bot(agent_request(), await http.get_session())


def test_run_accepts_coroutine_or_factory_and_returns_result():
    async def answer():
        return 42

    assert background.run(answer()) == 42
    assert background.run(answer) == 42
    with pytest.raises(ZeroDivisionError):
        background.run(lambda: _divide())


async def _divide():
    return 1 / 0


def test_run_timeout_cancels_the_coroutine():
    cancelled = []

    async def slow():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(TimeoutError):
        background.run(slow, timeout=0.1)
    deadline = time.monotonic() + 2
    while not cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cancelled == [True]


def test_get_session_refuses_other_loops():
    with pytest.raises(RuntimeError, match="run\\(\\) or submit\\(\\)"):
        asyncio.run(http.get_session())


async def test_from_async_code_use_submit_not_run():
    async def answer():
        return "ok"

    with pytest.raises(RuntimeError, match="wrap_future"):
        background.run(answer())
    assert await asyncio.wrap_future(background.submit(answer())) == "ok"


def test_close_then_reuse_builds_a_new_loop():
    first = background.loop()
    background.run(_session_id)
    background.close()
    assert first.is_closed()
    second = background.loop()
    assert second is not first and not second.is_closed()
    assert background.run(_session_id)  # a fresh session on the fresh loop


async def _session_id():
    return id(await http.get_session())


def _child(queue, api_url, api_key, session_id):
    from django.conf import settings

    settings.DAILY_API_URL, settings.DAILY_API_KEY = api_url, api_key
    try:
        loop = background.loop()
        room = run_shared(lambda s: daily.create_room(s, session_id=session_id, dialin=False, max_duration_s=60))
        queue.put(("ok", id(loop), room.name))
    except BaseException as e:  # report, don't hang the parent
        queue.put(("error", repr(e), None))


def test_forked_child_builds_its_own_loop(fake_daily):
    parent_loop = background.loop()
    parent_session = background.run(_session_id)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    sid = str(uuid.uuid4())
    proc = ctx.Process(target=_child, args=(queue, fake_daily.api_url, fake_daily.api_key, sid))
    proc.start()
    status, child_loop_id, room_name = queue.get(timeout=20)
    proc.join(10)
    assert status == "ok", child_loop_id
    assert room_name == daily.room_name_for(sid) and room_name in fake_daily.rooms
    # the parent's loop and session are untouched and still work
    assert not parent_loop.is_closed() and background.loop() is parent_loop
    assert background.run(_session_id) == parent_session
    assert run_shared(daily.get_domain_id) == fake_daily.domain_id


def test_session_is_closed_at_process_exit():
    # atexit runs handlers last-registered-first: this check runs after background.close.
    code = (
        "import atexit\n"
        "seen = {}\n"
        "atexit.register(lambda: print('closed' if seen['s'].closed else 'OPEN', seen['loop'].is_closed()))\n"
        "import background, botrunner.http as h\n"
        "async def f():\n"
        "    seen['s'] = await h.get_session()\n"
        "    seen['loop'] = background.loop()\n"
        "background.run(f)\n"
    )
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["closed", "True"], out.stdout + out.stderr
    assert "Unclosed" not in out.stderr and "Task was destroyed" not in out.stderr, out.stderr
