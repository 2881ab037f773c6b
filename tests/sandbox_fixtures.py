"""The call sandbox (``python -m sandbox``) served from a thread, for tests.

The settings a user's ``make demo`` sets are pointed at it, so the code under
test talks to it over real HTTP exactly as in the demo.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
from aiohttp import web

from sandbox.calls import parse_rates
from sandbox.server import Sandbox


class SandboxThread:
    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()

    def start(self) -> "SandboxThread":
        def main():
            loop = asyncio.new_event_loop()
            self._loop = loop
            runner = web.AppRunner(self.sandbox.app())
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            self._ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=main, name="sandbox", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the sandbox did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def sandbox_settings(settings, server: SandboxThread) -> None:
    from botrunner import daily

    daily.clear_caches()
    settings.ENV = "development"
    settings.DAILY_API_URL = server.url + "/v1"
    settings.DAILY_API_KEY = server.sandbox.api_key
    settings.DAILY_MEETING_TOKEN_MODE = "local"
    settings.LOCAL_SERVER_URL = server.url


@pytest.fixture
def call_sandbox(settings):
    """A sandbox whose calls are all answered; set ``.sandbox.rates`` to change."""
    server = SandboxThread(Sandbox(rates=parse_rates("answered=1"), seed=1)).start()
    sandbox_settings(settings, server)
    try:
        yield server
    finally:
        server.stop()
