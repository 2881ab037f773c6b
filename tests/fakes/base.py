"""A small aiohttp server on 127.0.0.1 that sync tests can drive.

Each fake runs in its own thread with its own event loop, so sync pytest tests
(and the code under test, on the process's background loop) talk to it over real HTTP.
It records every request, can add latency, and can answer the next matching
requests with canned responses, hang past the client's timeout, or drop the
connection without answering.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Canned:
    """One injected behaviour for requests matching ``route`` ("POST /rooms", globs allowed)."""

    route: str
    times: int = 1
    status: int = 503
    json: Any = None
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # wait ``hang_s`` (or until stop), then answer normally
    disconnect: bool = False  # close the connection without an answer
    passthrough: bool = False  # only delay/record: the real handler answers


class FakeServer:
    """Base class: subclasses add routes in ``setup_routes`` and state in ``reset_state``."""

    #: stripped from recorded paths and route matching (e.g. "/v1" for Daily)
    prefix = ""
    def __init__(self, *, latency_ms: float = 0, hang_s: float = 30.0) -> None:
        self.latency_ms = self._default_latency_ms = latency_ms
        self.hang_s = self._default_hang_s = hang_s
        self.requests: list[dict[str, Any]] = []
        self._canned: list[Canned] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self.port: int | None = None
        self.reset_state()

    # --- lifecycle ------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the server (without ``prefix``)."""
        if self.port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """Base URL including ``prefix``: what the settings point at."""
        return self.url + self.prefix

    def start(self) -> "FakeServer":
        ready = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._astart())
            except BaseException as e:  # surface in start()
                errors.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._astop())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"fake-{type(self).__name__}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    async def _astart(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(middlewares=[self._middleware], client_max_size=8 * 1024 * 1024)
        self.setup_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _astop(self) -> None:
        assert self._stopping is not None
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- test controls --------------------------------------------------------

    def reset(self) -> None:
        """Forget requests, canned answers and state (between tests)."""
        with self._lock:
            self.requests.clear()
            self._canned.clear()
        self.latency_ms = self._default_latency_ms
        self.hang_s = self._default_hang_s
        self.reset_state()

    def reset_state(self) -> None:
        """Subclasses: (re)initialise the fake's state."""

    def fail_next(
        self,
        route: str,
        status: int = 503,
        *,
        json: Any = None,
        body: str | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
        hang: bool = False,
        disconnect: bool = False,
    ) -> None:
        """Answer the next ``times`` requests matching ``route`` with ``status``
        (JSON defaults to the API's own error shape), or hang / disconnect."""
        if json is None and body is None and not hang:
            json = self.default_error(status)
        with self._lock:
            self._canned.append(
                Canned(route=route, times=times, status=status, json=json, body=body,
                       headers=dict(headers or {}), hang=hang, disconnect=disconnect,
                       passthrough=hang and json is None and body is None)
            )

    respond_next = fail_next  # a canned answer needn't be a failure

    def hang_next(self, route: str, times: int = 1) -> None:
        """The next matching requests wait ``hang_s`` (past the client timeout),
        then reach the real handler: a start that happened after all."""
        self.fail_next(route, hang=True, times=times)

    def disconnect_next(self, route: str, times: int = 1) -> None:
        """The next matching requests are read, then the connection is closed."""
        self.fail_next(route, disconnect=True, times=times)

    def requests_to(self, route: str) -> list[dict[str, Any]]:
        """Recorded requests matching ``route`` ("POST /rooms", globs allowed)."""
        return [r for r in self.requests if fnmatch.fnmatchcase(f"{r['method']} {r['path']}", route)]

    @property
    def connections(self) -> set:
        """Distinct client (host, port) pairs seen: keep-alive reuse shows here."""
        return {r["peer"] for r in self.requests}

    # --- internals ------------------------------------------------------------

    def default_error(self, status: int) -> Any:
        """The error JSON ``fail_next`` sends when given no ``json``/``body``."""
        return {"error": f"HTTP {status}"}

    def setup_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _take_canned(self, method: str, path: str) -> Canned | None:
        key = f"{method} {path}"
        with self._lock:
            for canned in self._canned:
                if fnmatch.fnmatchcase(key, canned.route):
                    canned.times -= 1
                    if canned.times <= 0:
                        self._canned.remove(canned)
                    return canned
        return None

    def _relative(self, path: str) -> str:
        if self.prefix and path.startswith(self.prefix):
            return path[len(self.prefix):] or "/"
        return path

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        path = self._relative(request.path)
        record = {
            "method": request.method,
            "path": path,
            "headers": dict(request.headers),
            "json": parsed,
            "body": raw.decode("utf-8", "replace"),
            "peer": request.transport.get_extra_info("peername") if request.transport else None,
            "at": time.monotonic(),
        }
        with self._lock:
            self.requests.append(record)
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        canned = self._take_canned(request.method, path)
        if canned is not None:
            if canned.disconnect:
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError()
            if canned.hang:
                assert self._stopping is not None
                try:
                    await asyncio.wait_for(self._stopping.wait(), self.hang_s)
                except asyncio.TimeoutError:
                    pass
            if not canned.passthrough:
                if canned.body is not None:
                    return web.Response(status=canned.status, text=canned.body, headers=canned.headers)
                return web.json_response(canned.json, status=canned.status, headers=canned.headers)
        return await handler(request)


def error(status: int, payload: Any) -> web.Response:
    return web.json_response(payload, status=status)
