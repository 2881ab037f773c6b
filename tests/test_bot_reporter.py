"""The bot's status reporter against a real WebSocket server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import datetime

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from botkit.reporter import StatusReporter  # noqa: E402
from tests.status_server import StatusServer  # noqa: E402

FAST = (0.01, 0.02, 0.05)


class Backoffs:
    """The reporter's sleep between connection attempts, recorded: each call is
    the sentinel of a failed attempt (the reporter is waiting to try again)."""

    def __init__(self):
        self.delays: list[float] = []
        self._changed = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self._changed.set()
        await asyncio.sleep(delay)

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async def _wait() -> None:
            while len(self.delays) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), timeout)


async def until(condition, timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds, for at most ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError(f"not true within {timeout} s")
        await asyncio.sleep(0.005)


@pytest.fixture
async def server():
    async with StatusServer(token="tok-123") as s:
        yield s


async def test_messages_are_numbered_from_one_with_event_time_and_data(server):
    reporter = StatusReporter(server.url("abc"), "tok-123", backoff=FAST)
    reporter.start()
    assert reporter.send("bot_started") == 1
    assert reporter.send("transcript", {"role": "user", "text": "hello"}) == 2
    assert reporter.send("ended", {"reason": "completed"}) == 3
    assert await reporter.close(timeout=5)

    msgs = server.messages
    assert [m["seq"] for m in msgs] == [1, 2, 3]
    assert [m["event"] for m in msgs] == ["bot_started", "transcript", "ended"]
    assert msgs[0]["data"] == {}
    assert msgs[1]["data"] == {"role": "user", "text": "hello"}
    for m in msgs:
        assert set(m) == {"seq", "event", "at", "data"}
        assert datetime.fromisoformat(m["at"]).tzinfo is not None
    assert server.connections[0].session_id == "abc"


async def test_sends_bearer_token_and_no_origin(server):
    reporter = StatusReporter(server.url(), "tok-123", backoff=FAST)
    reporter.start()
    reporter.send("bot_started")
    assert await reporter.close(timeout=5)
    headers = {k.lower(): v for k, v in server.connections[0].headers.items()}
    assert headers["authorization"] == "Bearer tok-123"
    assert "origin" not in headers


async def test_dropped_socket_reconnects_and_resends_everything_since_last_connect(server):
    reporter = StatusReporter(server.url(), "tok-123", backoff=FAST)
    reporter.start()
    reporter.send("bot_started")
    reporter.send("joined")
    await server.wait_for(lambda s: len(s.messages) == 2)

    await server.drop()
    reporter.send("dialout_attempt", {"attempt": 1, "max_attempts": 5})  # may hit the dead socket
    await server.wait_for(lambda s: len(s.connections) == 2 and 3 in s.connections[1].seqs)

    # The second connection carries what the first one may have lost, then the new one.
    assert server.connections[1].seqs == [1, 2, 3]
    assert server.connections[1].headers["Authorization"] == "Bearer tok-123"
    assert reporter.connects == 2

    reporter.send("ended", {"reason": "completed"})
    assert await reporter.close(timeout=5)
    assert server.events() == ["bot_started", "joined", "dialout_attempt", "ended"]
    assert [m["seq"] for m in server.stored()] == [1, 2, 3, 4]


async def test_buffers_while_the_server_is_away_and_delivers_in_order_when_back():
    server = StatusServer(token="tok-123")
    await server.start()
    port = server.port
    await server.stop()  # nobody listening on the port now

    backoffs = Backoffs()
    reporter = StatusReporter(f"ws://127.0.0.1:{port}/ws/bot/s1/", "tok-123", backoff=FAST, sleep=backoffs)
    reporter.start()
    for i in range(5):
        reporter.send("transcript", {"role": "user", "text": f"line {i}"})
    await backoffs.wait_for(2)  # two connection attempts have failed
    assert reporter.pending == 5
    assert not reporter.connected

    server = StatusServer(token="tok-123", port=port)
    await server.start()
    try:
        await server.wait_for(lambda s: len(s.messages) == 5)
        assert [m["seq"] for m in server.messages] == [1, 2, 3, 4, 5]
        assert await reporter.close(timeout=5)
    finally:
        await server.stop()


async def test_reporting_trouble_never_raises_and_close_is_bounded():
    # A port nobody listens on.
    server = StatusServer()
    await server.start()
    url = server.url()
    await server.stop()

    reporter = StatusReporter(url, "tok", backoff=FAST)
    reporter.start()
    assert reporter.send("bot_started", {"weird": object()}) == 1  # not JSON: sent as text
    assert reporter.messages[0]["data"]["weird"].startswith("<object")
    started = time.monotonic()
    assert await reporter.close(timeout=0.3) is False
    assert time.monotonic() - started < 3
    assert reporter.send("late") == 0  # after close: dropped, not raised


async def test_wrong_token_is_refused_and_reporter_gives_up(server):
    reporter = StatusReporter(server.url(), "wrong", backoff=FAST, max_refusals=2)
    reporter.start()
    reporter.send("bot_started")
    await until(lambda: reporter.refused)
    # It stopped at the second refusal (it gives up without another await, so no third try can follow).
    assert len(server.refused) == 2
    assert server.messages == []
    assert await reporter.close(timeout=1) is False


async def test_messages_sent_before_start_are_delivered(server):
    reporter = StatusReporter(server.url(), "tok-123", backoff=FAST)
    reporter.send("bot_started")
    reporter.start()
    reporter.start()  # idempotent
    assert await reporter.close(timeout=5)
    assert len(server.connections) == 1
    assert server.events() == ["bot_started"]
