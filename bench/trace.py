"""Where a start's time goes: timestamps of each step, in the server and the worker.

With ``--trace`` the harness runs ``daphne`` and ``celery`` through this file
(``python bench/trace.py daphne|celery <their arguments>``): it wraps a few
functions of the start path so that each appends ``{"t": time.monotonic(),
"n": <step>, "k": <callId or session id>}`` to ``$BENCH_TRACE``, then runs the
module as usual. ``time.monotonic()`` is the clock the load generator and the
fakes use, so ``analyze()`` can line the steps up with "sent" and "the runner
received the start". The wrappers cost a few microseconds per step.
"""

from __future__ import annotations

import json
import os
import runpy
import statistics
import sys
import threading
import time
from typing import Any

#: the start path, in order (``runner`` comes from the runner fake)
STEPS = [
    ("sent", "request sent by the load generator"),
    ("handler_in", "dial-in view's sync handler entered (daphne, Django ASGI, middleware)"),
    ("committed", "call row inserted, transaction committing (handler's queries)"),
    ("delay_in", "start_call.delay called (commit, on-commit hooks)"),
    ("delay_out", "task published (Celery → Redis)"),
    ("task_in", "worker thread runs the task"),
    ("room_send", "room request handed to aiohttp"),
    ("room_back", "Daily's answer parsed"),
    ("build", "start claimed, AgentRequest built"),
    ("start_send", "start request handed to aiohttp"),
    ("runner", "runner received the start"),
]


def _install(path: str) -> None:
    fh = open(path, "a", buffering=1)
    lock = threading.Lock()

    def mark(name: str, key: Any) -> None:
        line = json.dumps({"t": time.monotonic(), "n": name, "k": str(key)})
        with lock:
            fh.write(line + "\n")

    import django

    django.setup()
    import calls.api as api
    import calls.services as services
    import calls.starting as starting
    import calls.tasks as tasks
    from botrunner import daily

    handle = api._handle_dialin

    def _handle_dialin(org, wf, body, headers):
        try:
            mark("handler_in", json.loads(body).get("callId"))
        except Exception:  # noqa: BLE001 - a bad body is the handler's business
            pass
        return handle(org, wf, body, headers)

    api._handle_dialin = _handle_dialin

    on_commit = services._start_on_commit

    def _start_on_commit(call):
        mark("committed", call.pk)
        return on_commit(call)

    services._start_on_commit = _start_on_commit

    delay = tasks.start_call.delay

    def _delay(session_id, *args, **kwargs):
        mark("delay_in", session_id)
        try:
            return delay(session_id, *args, **kwargs)
        finally:
            mark("delay_out", session_id)

    tasks.start_call.delay = _delay

    start = starting.start_call

    def _start_call(session_id, *args, **kwargs):
        mark("task_in", session_id)
        return start(session_id, *args, **kwargs)

    starting.start_call = _start_call

    create_room = daily.create_room

    async def _create_room(http, *args, session_id, **kwargs):
        mark("room_send", session_id)
        room = await create_room(http, *args, session_id=session_id, **kwargs)
        mark("room_back", session_id)
        return room

    daily.create_room = _create_room

    build = starting.agent_request.build

    def _build(call, *args, **kwargs):
        mark("build", call.pk)
        return build(call, *args, **kwargs)

    starting.agent_request.build = _build

    start_bot = starting.start_bot

    async def _start_bot(req, http):
        mark("start_send", req.session_id)
        return await start_bot(req, http)

    starting.start_bot = _start_bot


def analyze(samples: list[list[Any]], trace_path: str) -> list[dict[str, Any]]:
    """Per step of ``STEPS``: p50/p90 ms from the previous step present.

    ``samples``: [key, sent, answered, session id, runner got start] per request.
    """
    marks: dict[str, dict[str, float]] = {}
    try:
        with open(trace_path) as fh:
            for line in fh:
                e = json.loads(line)
                marks.setdefault(e["k"], {}).setdefault(e["n"], e["t"])
    except FileNotFoundError:
        return []
    per_request = []
    for key, sent, _done, session_id, started in samples:
        m = {"sent": sent, **marks.get(str(key), {}), **marks.get(str(session_id), {})}
        if started:
            m["runner"] = started
        per_request.append(m)
    out = []
    names = [n for n, _ in STEPS]
    for i, (name, what) in enumerate(STEPS[1:], 1):
        values = []
        for m in per_request:
            if name not in m:
                continue
            prev = next((names[j] for j in range(i - 1, -1, -1) if names[j] in m), None)
            if prev is not None:
                values.append((m[name] - m[prev]) * 1000)
        if values:
            values.sort()
            out.append({"step": name, "what": what, "n": len(values), "p50": statistics.median(values),
                        "p90": values[int(len(values) * 0.9)]})
    return out


def main() -> None:
    sys.path.insert(0, os.getcwd())
    which, sys.argv = sys.argv[1], sys.argv[1:]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myrobot.settings")
    _install(os.environ["BENCH_TRACE"])
    runpy.run_module(which, run_name="__main__")


if __name__ == "__main__":
    main()
