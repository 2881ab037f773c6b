"""One shared ``aiohttp.ClientSession`` per process, on one long-lived event loop.

Why: a ClientSession belongs to the loop it was made on, and Celery tasks and
sync Django code have no loop of their own (``asyncio.run()`` per task makes a
new loop each time and kills a shared session). So each process runs ONE event
loop in a daemon thread, created lazily under a lock on first use, and every
call to Daily / Pipecat goes through it. Many starts can then be in flight per
process over one connection pool (keep-alive: no TLS handshake per call).

How to call it:

- sync code (Celery task, sync view, ``sync_to_async`` thread)::

      room = botrunner.http.run(lambda: create_room(...))   # or run(coro)

  inside the coroutine, ``http = await botrunner.http.get_session()``.
- async code on another loop (an async Django view, a Channels consumer):
  never call ``run()`` there (it would block that loop; it refuses)::

      result = await asyncio.wrap_future(botrunner.http.submit(coro))

- fire and forget from anywhere: ``submit(coro)`` returns a
  ``concurrent.futures.Future``.

After ``os.fork`` (Celery prefork) the child drops the parent's loop and
session (their thread does not exist in the child; closing the inherited
sockets could corrupt the parent's connections) and builds its own on first
use. The session is closed at process exit (``atexit``).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
from typing import Any, Awaitable, Callable, Union

import aiohttp

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
TOTAL_TIMEOUT_S = 15.0
CONNECTION_LIMIT = 100  # concurrent connections per process, all hosts
KEEPALIVE_S = 30.0  # below the idle timeout of Daily/Pipecat's load balancers

CoroOrFactory = Union[Awaitable[Any], Callable[[], Awaitable[Any]]]

# Counters for tests and diagnostics (per process).
stats = {"loops_created": 0, "sessions_created": 0}


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


class _Runtime:
    """The process's loop, its thread and (lazily) its session."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.session: aiohttp.ClientSession | None = None
        self.closed = False
        ready = threading.Event()
        self.thread = threading.Thread(
            target=self._main, args=(ready,), name="botrunner-http", daemon=True
        )
        self.thread.start()
        ready.wait()
        stats["loops_created"] += 1

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    def session_on_loop(self) -> aiohttp.ClientSession:
        # Runs on self.loop only: no await between check and set, so no race.
        if self.session is None or self.session.closed:
            self.session = new_session()
            stats["sessions_created"] += 1
        return self.session

    async def _shutdown(self) -> None:
        me = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not me]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2)
        if self.session is not None and not self.session.closed:
            await self.session.close()
        await asyncio.sleep(0)

    def close(self, timeout: float = 5.0) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.loop.is_closed() and self.thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout)
            except Exception:  # exit path: never raise
                logger.warning("botrunner.http: shared session did not close cleanly", exc_info=True)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
        if not self.thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


_lock = threading.Lock()
_runtime: _Runtime | None = None
# Runtimes inherited through fork: kept referenced and never touched, so that
# garbage collection does not "close" the parent's sockets from the child.
_orphans: list[_Runtime] = []


def _get_runtime() -> _Runtime:
    global _runtime
    rt = _runtime
    if rt is not None and rt.pid == os.getpid() and not rt.closed:
        return rt
    with _lock:
        rt = _runtime
        if rt is not None and rt.pid != os.getpid():
            _orphans.append(rt)  # forked without our hook having run
            rt = None
        if rt is None or rt.closed:
            rt = _runtime = _Runtime()
        return rt


def _after_fork_in_child() -> None:
    global _runtime, _lock
    if _runtime is not None:
        _orphans.append(_runtime)
    _runtime = None
    _lock = threading.Lock()  # the parent may have held it while forking


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def loop() -> asyncio.AbstractEventLoop:
    """The process's shared loop (started if needed)."""
    return _get_runtime().loop


async def get_session() -> aiohttp.ClientSession:
    """The shared session; only for code already running on the shared loop."""
    rt = _runtime
    if rt is None or rt.pid != os.getpid() or asyncio.get_running_loop() is not rt.loop:
        raise RuntimeError(
            "botrunner.http.get_session() must run on botrunner.http's loop: "
            "wrap the coroutine with botrunner.http.run() or submit()"
        )
    return rt.session_on_loop()


async def _call(factory: Callable[[], Awaitable[Any]]) -> Any:
    return await factory()


def submit(coro: CoroOrFactory) -> concurrent.futures.Future:
    """Schedule on the shared loop without blocking; from async code,
    ``await asyncio.wrap_future(submit(...))``."""
    if not asyncio.iscoroutine(coro):
        if not callable(coro):
            raise TypeError("submit() takes a coroutine or a function returning one")
        coro = _call(coro)
    try:
        rt = _get_runtime()
    except BaseException:
        coro.close()
        raise
    return asyncio.run_coroutine_threadsafe(coro, rt.loop)


def run(coro: CoroOrFactory, timeout: float | None = None) -> Any:
    """Run on the shared loop and block this thread for the result.

    For sync callers only: from a thread that runs an event loop this would
    stall that loop (or deadlock, on the shared loop), so it raises instead.
    On ``timeout`` the coroutine is cancelled and ``TimeoutError`` raised.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        if asyncio.iscoroutine(coro):
            coro.close()
        raise RuntimeError(
            "botrunner.http.run() called from a running event loop; use "
            "`await asyncio.wrap_future(botrunner.http.submit(...))` there, "
            "or call the sync code through sync_to_async"
        )
    future = submit(coro)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        if future.done():
            raise  # the coroutine itself timed out
        future.cancel()
        raise TimeoutError(f"botrunner.http.run(): no result within {timeout} s") from None
    except BaseException:
        future.cancel()
        raise


def close(timeout: float = 5.0) -> None:
    """Close the shared session and stop the loop (at exit; tests may call it)."""
    global _runtime
    with _lock:
        rt, _runtime = _runtime, None
    if rt is not None and rt.pid == os.getpid():
        rt.close(timeout)


atexit.register(close)
