"""A stand-in for the server's bot status socket, for tests.

``StatusServer`` is a real aiohttp WebSocket server on 127.0.0.1 that records
the headers of every connection and every message a bot sends, can refuse a
wrong token (HTTP 403 before the upgrade, as the real consumer does), and can
drop its sockets or go away and come back, to exercise reconnects.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import WSMsgType, web


@dataclass
class Connection:
    headers: dict[str, str]
    session_id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None

    @property
    def seqs(self) -> list[int]:
        return [m["seq"] for m in self.messages]


class StatusServer:
    def __init__(self, *, token: str | None = None, host: str = "127.0.0.1", port: int = 0):
        self.token = token
        self.host = host
        self.port = port
        self.connections: list[Connection] = []
        self.refused: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> "StatusServer":
        app = web.Application()
        app.router.add_get("/ws/bot/{session_id}/", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Stop listening and close every socket (``start()`` again to come back on the same port)."""
        await self.drop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "StatusServer":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def url(self, session_id: str = "s1") -> str:
        return f"ws://{self.host}:{self.port}/ws/bot/{session_id}/"

    # -- what arrived ---------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message received, resends included, in arrival order."""
        return [m for c in self.connections for m in c.messages]

    def stored(self) -> list[dict[str, Any]]:
        """What the real server would keep: each seq once, in seq order."""
        by_seq: dict[int, dict[str, Any]] = {}
        for m in self.messages:
            by_seq.setdefault(m["seq"], m)
        return [by_seq[s] for s in sorted(by_seq)]

    def events(self) -> list[str]:
        return [m["event"] for m in self.stored()]

    def event(self, name: str) -> list[dict[str, Any]]:
        """The data of each stored ``name`` event."""
        return [m["data"] for m in self.stored() if m["event"] == name]

    async def wait_for(self, predicate: Callable[["StatusServer"], bool], timeout: float = 5.0) -> None:
        async def _wait() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), timeout)

    async def wait_for_event(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        await self.wait_for(lambda s: any(m["event"] == name for m in s.messages), timeout)
        return self.event(name)[-1]

    # -- faults ---------------------------------------------------------------

    async def drop(self) -> None:
        """Close every open socket from the server side."""
        for c in self.connections:
            if c.ws is not None and not c.ws.closed:
                await c.ws.close()

    # -- handler --------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers = dict(request.headers)
        if self.token is not None and headers.get("Authorization") != f"Bearer {self.token}":
            self.refused.append(headers)
            self._changed.set()
            return web.Response(status=403)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = Connection(headers=headers, session_id=request.match_info["session_id"], ws=ws)
        self.connections.append(conn)
        self._changed.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                conn.messages.append(json.loads(msg.data))
                self._changed.set()
        self._changed.set()
        return ws
