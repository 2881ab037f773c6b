"""Run botrunner coroutines from sync tests, the way sync production code does."""

from __future__ import annotations

import socket
from typing import Any, Awaitable, Callable

import aiohttp

import background
from botrunner import http


def run_shared(fn: Callable[[aiohttp.ClientSession], Awaitable[Any]], timeout: float = 30) -> Any:
    """``fn(session)`` on the background loop with the process's shared session."""

    async def go() -> Any:
        return await fn(await http.get_session())

    return background.run(go, timeout=timeout)


def run_with_session(fn: Callable[[aiohttp.ClientSession], Awaitable[Any]], *, total: float = 0.5,
                     connect: float | None = None) -> Any:
    """``fn(session)`` with a throwaway session of short timeouts (timeout tests)."""

    async def go() -> Any:
        timeout = aiohttp.ClientTimeout(total=total, connect=connect, sock_connect=connect)
        async with http.new_session(timeout) as session:
            return await fn(session)

    return background.run(go, timeout=30)


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
