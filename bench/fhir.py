"""The FHIR loop: a sync of 5,000 appointments, and the scheduling tools' round trip as the bot sees it.

    python -m bench.fhir [--appointments 5000 --tool-calls 200] [--embedded]

1. sync — ``fhir.sync.sync_connection`` over the fake EHR (tests/fakes/fhir.py,
   real HTTP on 127.0.0.1, 100 appointments a page with their patients
   included): N booked appointments over the next days, one patient each,
   every one a scheduled reminder call. Wall time, SQL queries, RSS growth;
   then the same sync again (nothing to place: the idempotency check's cost);
   then, on a clean slate, once more under tracemalloc for the Python peak.
2. tools — the server as it runs (daphne, and a Celery worker unless
   --embedded; bench/harness.py) and a bot's HTTP client in this process:
   ``POST /api/bot/<session>/tools/find_slots`` and ``…/confirm_appointment``
   for calls in progress, one at a time, against the fake EHR. Reports p50 /
   p95 / max of each tool's round trip as the bot sees it (the EHR's own
   answer time is the fake's: well under a millisecond plus the HTTP hop).

The fake EHR runs on a thread of this process, so the sync's time includes
the fake's JSON work (about the share a real EHR's network time would take).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import os
import statistics
import sys
import time
import tracemalloc

from bench import harness


def _rss_mb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 2**20


class QueryCounter:
    def __init__(self):
        self.n = 0

    def __call__(self, execute, sql, params, many, context):
        self.n += 1
        return execute(sql, params, many, context)


def fill_ehr(fake, n: int, now: dt.datetime) -> None:
    for i in range(n):
        pid = f"bp{i}"
        fake.add_patient(pid, given="Pat", family=f"Bench{i}", phone=f"+1415{3000000 + i:07d}", mrn=f"BM{i:06d}")
        start = now + dt.timedelta(days=2 + i % 3, minutes=15 * (i % 32))
        fake.add_appointment(f"ba{i}", pid, start.isoformat())
        fake.add_slot(f"bs{i}", (start + dt.timedelta(days=7)).isoformat(),
                      (start + dt.timedelta(days=7, minutes=15)).isoformat())


def clean(org) -> None:
    from calls.models import CallSession
    from fhir.models import FhirAppointment
    from patients.models import Patient

    FhirAppointment.objects.filter(organization=org).delete()
    CallSession.objects.filter(organization=org).delete()
    Patient.objects.filter(organization=org).delete()


def timed_sync(connection, start, end) -> dict:
    from django.db import connection as db

    from fhir.sync import sync_connection

    counter = QueryCounter()
    rss0 = _rss_mb()
    with db.execute_wrapper(counter):
        t0 = time.perf_counter()
        result = sync_connection(connection, start, end)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "queries": counter.n, "rss_growth_mb": _rss_mb() - rss0, **result.as_dict()}


async def tool_round_trips(url: str, calls: list, token: str, name: str, body: dict) -> list[float]:
    import aiohttp

    out = []
    async with aiohttp.ClientSession() as session:
        for call_id in calls:
            t0 = time.perf_counter()
            async with session.post(f"{url}/api/bot/{call_id}/tools/{name}", json=body,
                                    headers={"Authorization": f"Bearer {token}"}) as response:
                answer = await response.json()
            out.append((time.perf_counter() - t0) * 1000)
            if response.status != 200 or not answer.get("ok"):
                raise SystemExit(f"{name} answered {response.status}: {answer}")
    return out


def run(args) -> dict:
    cfg = harness.config_from(args)
    harness.setup_django(cfg)
    from django.conf import settings
    from django.utils import timezone

    settings.DAILY_API_KEY = "bench-daily-key"  # calls are placed (scheduled), never started here

    from calls.models import CallSession
    from fhir import client as fhir_client
    from fhir.models import FhirAppointment, FhirConnection
    from organizations.models import Organization, Workflow
    from tests.fakes.fhir import FakeFhir, new_key_pair

    fake = FakeFhir().start()
    fake.max_page = 100
    private, public = new_key_pair("ES384")
    fake.register_client("bench", public, "ES384")
    org, _ = Organization.objects.update_or_create(slug="bench-fhir", defaults={"name": "Bench FHIR"})
    workflow, _ = Workflow.objects.update_or_create(
        organization=org, slug="reminder",
        defaults={"name": "Reminder", "instructions": "Remind {first_name}.", "window_start": dt.time(0, 0),
                  "window_end": dt.time.max, "window_days": [1, 2, 3, 4, 5, 6, 7]},
    )
    FhirConnection.objects.filter(organization=org).delete()
    clean(org)
    connection = FhirConnection.objects.create(
        organization=org, base_url=fake.api_url, client_id="bench", algorithm="ES384", key_id="bench-key",
        private_key=private, workflow=workflow, allow_writes=True, schedule_reference="Schedule/dr-rivera",
    )
    now = timezone.now()
    harness.log(cfg, f"filling the fake EHR with {args.appointments} appointments")
    fill_ehr(fake, args.appointments, now)
    start, end = now, now + dt.timedelta(days=6)

    harness.log(cfg, "sync 1 (everything new)")
    first = timed_sync(connection, start, end)
    harness.log(cfg, "sync 2 (nothing new)")
    again = timed_sync(connection, start, end)
    harness.log(cfg, "sync 3 (new again, under tracemalloc)")
    clean(org)
    fhir_client.forget_tokens()
    tracemalloc.start()
    timed_sync(connection, start, end)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # 2. the tools, through the running server
    token = "bench-tool-token-0123456789abcdef"
    links = list(FhirAppointment.objects.filter(organization=org).order_by("pk")[: args.tool_calls])
    CallSession.objects.filter(pk__in=[link.call_id for link in links]).update(
        status="in_progress", status_token_hash=hashlib.sha256(token.encode()).hexdigest())
    call_ids = [str(link.call_id) for link in links]
    from django.db import connections

    connections.close_all()
    fakes = harness.Fakes(cfg, 0)
    try:
        with harness.Stack(cfg, fakes) as stack:
            harness.log(cfg, f"{len(call_ids)} find_slots and confirm_appointment round trips via {stack.url}")
            asyncio.run(tool_round_trips(stack.url, call_ids[:5], token, "find_slots", {}))  # warm-up
            slots = asyncio.run(tool_round_trips(stack.url, call_ids, token, "find_slots",
                                                 {"after": (now + dt.timedelta(days=8)).date().isoformat()}))
            confirms = asyncio.run(tool_round_trips(stack.url, call_ids, token, "confirm_appointment", {}))
    finally:
        fakes.stop()
        fake.stop()

    def stats(values):
        ordered = sorted(values)
        return {"n": len(values), "p50_ms": statistics.median(ordered),
                "p95_ms": ordered[max(0, int(len(ordered) * 0.95) - 1)], "max_ms": ordered[-1]}

    return {
        "stack": cfg.describe(),
        "machine": harness.machine(),
        "appointments": args.appointments,
        "sync": first,
        "resync": again,
        "python_peak_mb": peak / 1e6,
        "tools": {"find_slots": stats(slots), "confirm_appointment": stats(confirms)},
        "rows": [{"tool": "find_slots", **stats(slots)}, {"tool": "confirm_appointment", **stats(confirms)}],
    }


def render(data: dict) -> str:
    s, r, t = data["sync"], data["resync"], data["tools"]
    return "\n".join([
        f"FHIR sync of {data['appointments']} appointments ({data['stack'].get('mode')}, {data['stack'].get('database')})",
        f"first sync: {s['seconds']:.1f} s, {s['pages']} pages, {s['queries']} queries "
        f"({s['queries'] / max(1, s['appointments']):.1f} per appointment), {s['calls_placed']} calls placed; "
        f"RSS +{s['rss_growth_mb']:.1f} MB, Python peak {data['python_peak_mb']:.1f} MB",
        f"re-sync: {r['seconds']:.1f} s, {r['queries']} queries, {r['calls_placed']} calls placed",
        harness.table(
            ["tool (as the bot sees it)", "n", "p50 ms", "p95 ms", "max ms"],
            [[name, v["n"], harness.fmt(v["p50_ms"]), harness.fmt(v["p95_ms"]), harness.fmt(v["max_ms"])]
             for name, v in t.items()],
        ),
    ])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--appointments", type=int, default=5000)
    p.add_argument("--tool-calls", type=int, default=200)
    p.add_argument("--json", default=None)
    harness.add_stack_args(p)
    args = p.parse_args(argv)
    data = run(args)
    path = harness.write_json("fhir", data, args.json)
    print(render(data))
    print(f"JSON: {path}")
    if data["sync"]["calls_placed"] != args.appointments or data["resync"]["calls_placed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
