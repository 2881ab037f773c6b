"""The Daily and runner fakes of ``tests/fakes``, served from their own process.

``python -m bench.fakes --daily-latency-ms 40`` starts ``FakeDaily`` and
``FakeRunner`` (each on its own loop and thread, as in the tests), prints one
JSON line with their URLs, and serves until stdin closes or it is killed.

Why a separate process: the load generator measures milliseconds; sharing a
GIL with two busy fake servers would add the interpreter's thread switch
interval (5 ms) to the numbers we are trying to measure.

Each fake also answers ``GET /_bench/requests`` (what it recorded, with the
``time.monotonic()`` at which each request arrived; CLOCK_MONOTONIC is the
same clock in every process on Linux) and ``POST /_bench/reset``. These
control routes are not recorded and get no added latency.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from aiohttp import web

from tests.fakes import FakeDaily, FakeRunner
from tests.fakes import daily as _fake_daily

CONTROL = "/_bench/"

# Room properties Daily accepts that Pipecat's ``DailyRoomProperties`` always
# sends (the reference row); the test fake refuses properties our code does
# not send, to catch typos. Only this process's copy is widened.
_fake_daily.KNOWN_PROPERTIES.update({"enable_emoji_reactions"})


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    body = record.get("json")
    out = {"method": record["method"], "path": record["path"], "at": record["at"], "status": record.get("status")}
    if isinstance(body, dict) and isinstance(body.get("name"), str):
        out["room"] = body["name"]  # POST /rooms
    inner = body.get("body") if isinstance(body, dict) else None
    if isinstance(inner, dict):
        out["session_id"] = inner.get("session_id")
        dialin = inner.get("dialin_settings")
        if isinstance(dialin, dict):
            out["call_id"] = dialin.get("call_id")
    return out


class _Controlled:
    """Mixin: control routes, and no latency/recording for them."""

    def setup_routes(self, app: web.Application) -> None:  # type: ignore[override]
        super().setup_routes(app)  # type: ignore[misc]
        app.router.add_get(CONTROL + "requests", self._bench_requests)
        app.router.add_post(CONTROL + "reset", self._bench_reset)

    async def _bench_requests(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        with self._lock:  # type: ignore[attr-defined]
            records = list(self.requests[since:])  # type: ignore[attr-defined]
        return web.json_response({"total": since + len(records), "requests": [_summary(r) for r in records]})

    async def _bench_reset(self, request: web.Request) -> web.Response:
        latency = self.latency_ms  # type: ignore[attr-defined]
        self.reset()  # type: ignore[attr-defined]
        self.latency_ms = latency
        return web.json_response({"ok": True})

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(CONTROL):
            return await handler(request)
        response = await super()._middleware(request, handler)  # type: ignore[misc]
        # Note the answer on this request's record (the newest of its kind without one).
        raw = (await request.read()).decode("utf-8", "replace")
        with self._lock:  # type: ignore[attr-defined]
            for record in reversed(self.requests):  # type: ignore[attr-defined]
                if record.get("status") is None and record["method"] == request.method and record["body"] == raw:
                    record["status"] = response.status
                    break
        return response


class BenchDaily(_Controlled, FakeDaily):
    """``GET /_bench/rooms``: the names of the rooms that exist now."""

    def setup_routes(self, app: web.Application) -> None:
        super().setup_routes(app)
        app.router.add_get(CONTROL + "rooms", self._bench_rooms)

    async def _bench_rooms(self, request: web.Request) -> web.Response:
        return web.json_response({"rooms": sorted(self.rooms)})


class BenchRunner(_Controlled, FakeRunner):
    """The dev runner; ``POST /_bench/busy?seconds=N`` makes it answer 429 (at capacity) for N s."""

    busy_until = 0.0

    def setup_routes(self, app: web.Application) -> None:
        super().setup_routes(app)
        app.router.add_post(CONTROL + "busy", self._bench_busy)

    async def _bench_busy(self, request: web.Request) -> web.Response:
        self.busy_until = time.monotonic() + float(request.query.get("seconds", "0"))
        return web.json_response({"ok": True})

    async def _start(self, request: web.Request) -> web.Response:
        if time.monotonic() < self.busy_until:
            return web.json_response({"error": "Agent pool at capacity, try again later",
                                      "code": "PCC-AGENT-AT-CAPACITY"}, status=429)
        return await super()._start(request)


# E.164 → Daily phone-number id; bench.dialout's clinic dials from the first.
BENCH_PURCHASED_NUMBERS = {"+14155550000": "5b1c2d3e-0000-4000-8000-000000000001"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--daily-latency-ms", type=float, default=40.0)
    parser.add_argument("--runner-latency-ms", type=float, default=0.0)
    parser.add_argument("--hipaa", action="store_true", help="Daily's HIPAA mode: rooms get random names")
    args = parser.parse_args(argv)
    # The bench organisations' caller ids are numbers bought on the fake domain
    # (start-call checks a dial-out's caller id against Daily's purchased numbers).
    daily = BenchDaily(latency_ms=args.daily_latency_ms, hipaa=args.hipaa,
                       purchased_numbers=BENCH_PURCHASED_NUMBERS).start()
    runner = BenchRunner(latency_ms=args.runner_latency_ms).start()
    print(json.dumps({
        "daily_url": daily.url,
        "daily_api_url": daily.api_url,
        "daily_api_key": daily.api_key,
        "domain_id": daily.domain_id,
        "runner_url": runner.url,
    }), flush=True)
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()  # returns when the parent closes our stdin (or dies)
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    daily.stop()
    runner.stop()


if __name__ == "__main__":
    main()
