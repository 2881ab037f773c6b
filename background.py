"""The process's background event loop: one asyncio loop in one daemon thread.

Why: sync code (Celery tasks, sync views, ``sync_to_async`` threads) has no
loop of its own, and what it starts must outlive one call: the shared HTTP
session to Daily / Pipecat (``botrunner.http``) belongs to the loop it was made
on, and browser broadcasts are sent without making a request wait for the
channel layer (``calls.broadcast``). Both run here. The loop is created lazily
under a lock on first use.

How to call it:

- sync code: ``background.run(coro_or_factory)`` blocks for the result;
- async code on another loop (an async view, a Channels consumer): never
  ``run()`` there (it would block that loop; it refuses); use
  ``await asyncio.wrap_future(background.submit(coro))``;
- fire and forget from anywhere: ``submit(coro)`` returns a
  ``concurrent.futures.Future``; ``log_failure(what)`` makes a done-callback
  that logs its exception.

After ``os.fork`` (Celery prefork) the child drops the parent's loop (its
thread does not exist in the child) and builds its own on first use. At
process exit the loop runs the closers registered with ``on_close`` (the HTTP
session) and stops.

Imports nothing of ours: any app and ``botrunner`` may use it.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
from typing import Any, Awaitable, Callable, Union

logger = logging.getLogger(__name__)

CoroOrFactory = Union[Awaitable[Any], Callable[[], Awaitable[Any]]]

# Counters for tests and diagnostics (per process).
stats = {"loops_created": 0}

# Coroutine functions run on the loop before it stops (e.g. closing a session).
_closers: list[Callable[[], Awaitable[None]]] = []


def on_close(closer: Callable[[], Awaitable[None]]) -> None:
    """Run ``closer()`` on the loop when it is closed (at exit or by ``close``)."""
    if closer not in _closers:
        _closers.append(closer)


class _Runtime:
    """The process's loop and its thread."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.closed = False
        ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(ready,), name="background-loop", daemon=True)
        self.thread.start()
        ready.wait()
        stats["loops_created"] += 1

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    async def _shutdown(self) -> None:
        me = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not me]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2)
        for closer in list(_closers):
            try:
                await closer()
            except Exception:  # exit path: never raise
                logger.warning("background loop: a closer failed", exc_info=True)
        await asyncio.sleep(0)

    def close(self, timeout: float = 5.0) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.loop.is_closed() and self.thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout)
            except Exception:  # exit path: never raise
                logger.warning("background loop did not shut down cleanly", exc_info=True)
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
    """The process's background loop (started if needed)."""
    return _get_runtime().loop


def on_loop() -> bool:
    """Whether the caller runs on this process's background loop."""
    rt = _runtime
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return False
    return rt is not None and rt.pid == os.getpid() and running is rt.loop


async def _call(factory: Callable[[], Awaitable[Any]]) -> Any:
    return await factory()


def submit(coro: CoroOrFactory) -> concurrent.futures.Future:
    """Schedule on the background loop without blocking; from async code,
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


def log_failure(what: str, log: logging.Logger | None = None) -> Callable[[concurrent.futures.Future], None]:
    """A done-callback for ``submit(...)`` that logs the job's exception, if any:
    fire-and-forget work must not fail silently."""
    log = log or logger

    def done(future: concurrent.futures.Future) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.warning("%s failed: %s", what, exc, exc_info=exc)

    return done


def run(coro: CoroOrFactory, timeout: float | None = None) -> Any:
    """Run on the background loop and block this thread for the result.

    For sync callers only: from a thread that runs an event loop this would
    stall that loop (or deadlock, on the background loop), so it raises instead.
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
            "background.run() called from a running event loop; use "
            "`await asyncio.wrap_future(background.submit(...))` there, "
            "or call the sync code through sync_to_async"
        )
    future = submit(coro)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        if future.done():
            raise  # the coroutine itself timed out
        future.cancel()
        raise TimeoutError(f"background.run(): no result within {timeout} s") from None
    except BaseException:
        future.cancel()
        raise


def close(timeout: float = 5.0) -> None:
    """Run the closers and stop the loop (at exit; tests may call it)."""
    global _runtime
    with _lock:
        rt, _runtime = _runtime, None
    if rt is not None and rt.pid == os.getpid():
        rt.close(timeout)


atexit.register(close)
