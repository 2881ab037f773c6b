"""The bot's status channel: one WebSocket to the server, for the whole call.

Protocol (DESIGN.md, "Bot <-> server status protocol"): connect to ``status_url``
with ``Authorization: Bearer <status_token>`` and no ``Origin`` header; send one
JSON object per event, ``{"seq", "event", "at", "data"}``, ``seq`` counting from 1
for the call. The server sends nothing back, so the reporter cannot know what
arrived: after a reconnect it resends every message it wrote since its previous
connect (the server drops a ``seq`` it already has). While the socket is down,
messages wait in order in a buffer.

Reporting trouble never reaches the call: ``send()`` never raises and never
blocks; connecting happens in a background task; ``close()`` waits a bounded time
for the buffer to drain, so ``ended`` gets out before the process goes away.
"""

from __future__ import annotations

import asyncio
import collections
import json
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Sequence

import aiohttp
from loguru import logger

DEFAULT_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON with ``str`` for what JSON cannot hold (Daily error objects...)."""
    return json.loads(json.dumps(value, default=str))


class StatusReporter:
    """Numbered status events to ``status_url``, surviving dropped sockets.

    Usage::

        reporter = StatusReporter(req.status_url, req.status_token)
        reporter.start()                      # needs a running event loop
        reporter.send("bot_started")          # -> seq 1, returns at once
        ...
        await reporter.close(timeout=5.0)     # drains what it can, then closes

    ``messages`` holds every message made (the dicts sent on the wire), for
    inspection; ``connects`` counts successful connections.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        connect_timeout: float = 10.0,
        heartbeat: float | None = 20.0,
        max_refusals: int = 3,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        session: aiohttp.ClientSession | None = None,
    ):
        self.url = url
        self._token = token
        self._backoff = tuple(backoff) or (1.0,)
        self._connect_timeout = connect_timeout
        self._heartbeat = heartbeat
        self._max_refusals = max_refusals
        self._sleep = sleep
        self._session = session
        self._own_session = session is None

        self._seq = 0
        self.messages: list[dict[str, Any]] = []
        # Waiting to be written, in seq order.
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        # Written on the current connection: what a reconnect resends.
        self._since_connect: list[dict[str, Any]] = []

        self.connects = 0
        self.refused = False
        self._closing = False
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    # -- public API ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    @property
    def pending(self) -> int:
        """Messages not yet written to any socket."""
        return len(self._pending)

    def start(self) -> None:
        """Start connecting in the background (idempotent). Needs a running loop."""
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"status-reporter-{id(self):x}"
            )

    def send(self, event: str, data: dict[str, Any] | None = None) -> int:
        """Queue one event; returns its ``seq`` (0 if it could not even be queued). Never raises."""
        try:
            if self._closing:
                logger.warning(f"status reporter closed; event {event!r} not sent")
                return 0
            self._seq += 1
            message = {
                "seq": self._seq,
                "event": event,
                "at": _now_iso(),
                "data": _jsonable(data or {}),
            }
            self.messages.append(message)
            self._pending.append(message)
            self._wakeup.set()
            return self._seq
        except Exception as e:  # never into the call
            logger.warning(f"status reporter could not queue {event!r}: {type(e).__name__}")
            return 0

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued message is written (or ``timeout``); True if it was."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while self._pending:
            if self._task is None or self._task.done() or self.refused:
                return False
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(0.02, remaining))
        return True

    async def close(self, timeout: float = 5.0) -> bool:
        """Flush within ``timeout``, then close the socket and stop. True if nothing was lost."""
        try:
            drained = await self.flush(timeout)
            self._closing = True
            self._wakeup.set()
            task = self._task
            if task is not None and not task.done():
                try:
                    await asyncio.wait_for(asyncio.shield(task), timeout=1.0)
                except (asyncio.TimeoutError, Exception):
                    task.cancel()
                    try:
                        await task
                    except BaseException:
                        pass
            await self._close_ws()
            if self._own_session and self._session is not None:
                await self._session.close()
                self._session = None
            if not drained and self._pending:
                logger.warning(f"status reporter closed with {len(self._pending)} unsent event(s)")
            return drained and not self._pending
        except Exception as e:
            logger.warning(f"status reporter close failed: {type(e).__name__}")
            return False

    # -- the connection loop ------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        refusals = 0
        while not self._closing:
            try:
                ws = await self._connect()
            except aiohttp.WSServerHandshakeError as e:
                failures += 1
                if e.status in (401, 403):
                    refusals += 1
                    if refusals >= self._max_refusals:
                        self.refused = True
                        logger.error(
                            f"status socket refused ({e.status}) {refusals} times; "
                            "giving up reporting for this call"
                        )
                        return
                logger.warning(f"status socket handshake failed ({e.status}); retrying")
                await self._backoff_sleep(failures)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 1
                logger.warning(f"status socket unreachable ({type(e).__name__}); retrying")
                await self._backoff_sleep(failures)
                continue

            failures = 0
            refusals = 0
            self._ws = ws
            self.connects += 1
            # Everything written on the previous connection may have been lost
            # with it: put it back in front of what is still waiting.
            if self._since_connect:
                self._pending.extendleft(reversed(self._since_connect))
                self._since_connect = []
            try:
                await self._pump(ws)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                logger.warning(f"status socket dropped ({type(e).__name__}); reconnecting")
            finally:
                self._ws = None
                if not ws.closed:
                    try:
                        await ws.close()
                    except Exception:
                        pass
            if not self._closing:
                await self._backoff_sleep(1)

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        # aiohttp sends no Origin header unless asked: the bot is not a browser,
        # and the server checks Origin on browser routes only.
        return await asyncio.wait_for(
            self._session.ws_connect(
                self.url,
                headers={"Authorization": f"Bearer {self._token}"},
                heartbeat=self._heartbeat,
                autoping=True,
            ),
            timeout=self._connect_timeout,
        )

    async def _pump(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Write pending messages as they come; return when the socket closes or we are closing."""
        reader = asyncio.ensure_future(self._read_until_closed(ws))
        try:
            while True:
                while self._pending:
                    if reader.done():
                        raise ConnectionResetError("status socket closed by the server")
                    message = self._pending[0]
                    await ws.send_str(json.dumps(message))
                    self._pending.popleft()
                    self._since_connect.append(message)
                if self._closing:
                    return
                self._wakeup.clear()
                if self._pending:
                    continue
                waiter = asyncio.ensure_future(self._wakeup.wait())
                try:
                    await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not waiter.done():
                        waiter.cancel()
                if reader.done():
                    raise ConnectionResetError("status socket closed by the server")
        finally:
            if not reader.done():
                reader.cancel()
                try:
                    await reader
                except BaseException:
                    pass

    @staticmethod
    async def _read_until_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
        # The server sends nothing; reading is how a closed socket is noticed.
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                return

    async def _close_ws(self) -> None:
        ws = self._ws
        self._ws = None
        if ws is not None and not ws.closed:
            try:
                await asyncio.wait_for(ws.close(), timeout=2.0)
            except Exception:
                pass

    async def _backoff_sleep(self, failures: int) -> None:
        delay = self._backoff[min(max(failures, 1), len(self._backoff)) - 1]
        try:
            waiter = asyncio.ensure_future(self._wakeup_on_close())
            sleeper = asyncio.ensure_future(self._sleep(delay))
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            for t in (waiter, sleeper):
                if not t.done():
                    t.cancel()
        except asyncio.CancelledError:
            raise

    async def _wakeup_on_close(self) -> None:
        while not self._closing:
            self._wakeup.clear()
            await self._wakeup.wait()
