"""One shared ``aiohttp.ClientSession`` per process, on the background loop.

Why: a ClientSession belongs to the loop it was made on, and Celery tasks and
sync Django code have no loop of their own (``asyncio.run()`` per task makes a
new loop each time and kills a shared session). So every call to Daily /
Pipecat runs on the process's background loop (``background``), over one
connection pool (keep-alive: no TLS handshake per call), and many starts can
be in flight per process.

How to call it: from sync code ``background.run(lambda: fn(...))`` where the
coroutine takes ``http = await botrunner.http.get_session()``; from async code
on another loop, ``await asyncio.wrap_future(background.submit(...))``.

After a fork the child's background loop is new, and so is its session (the
parent's is never touched). The session is closed when the loop is (at exit).
"""

from __future__ import annotations

import asyncio

import aiohttp

import background

CONNECT_TIMEOUT_S = 5.0
TOTAL_TIMEOUT_S = 15.0
CONNECTION_LIMIT = 100  # concurrent connections per process, all hosts
KEEPALIVE_S = 30.0  # below the idle timeout of Daily/Pipecat's load balancers

# Counters for tests and diagnostics (per process).
stats = {"sessions_created": 0}

# The session and the loop it belongs to (a new background loop gets a new one).
_session: aiohttp.ClientSession | None = None
_session_loop: asyncio.AbstractEventLoop | None = None
# Sessions of a loop that is gone (inherited through fork): kept referenced and
# never touched, so that garbage collection does not close the parent's sockets.
_orphans: list[aiohttp.ClientSession] = []


def default_timeout() -> aiohttp.ClientTimeout:
    """Connect fast or fail (a refused start is safe to retry); bound the whole call."""
    return aiohttp.ClientTimeout(
        total=TOTAL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S
    )


def new_session(timeout: aiohttp.ClientTimeout | None = None) -> aiohttp.ClientSession:
    """A session configured like the shared one; must be called on a running loop."""
    connector = aiohttp.TCPConnector(
        limit=CONNECTION_LIMIT, ttl_dns_cache=300, keepalive_timeout=KEEPALIVE_S
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout or default_timeout(),
        headers={"User-Agent": "myrobot-botrunner"},
        raise_for_status=False,
    )


async def _close_session() -> None:
    global _session, _session_loop
    session, _session, _session_loop = _session, None, None
    if session is not None and not session.closed:
        await session.close()


async def get_session() -> aiohttp.ClientSession:
    """The shared session; only for code already running on the background loop."""
    global _session, _session_loop
    if not background.on_loop():
        raise RuntimeError(
            "botrunner.http.get_session() must run on the background loop: "
            "wrap the coroutine with background.run() or submit()"
        )
    running = asyncio.get_running_loop()
    # Runs on the one loop only: no await between check and set, so no race.
    if _session is None or _session.closed or _session_loop is not running:
        if _session is not None and not _session.closed:
            _orphans.append(_session)
        _session, _session_loop = new_session(), running
        stats["sessions_created"] += 1
        background.on_close(_close_session)
    return _session
