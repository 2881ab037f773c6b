"""A 5,000-patient campaign: creation time and memory, the dispatcher's cost per started call, page costs.

    python -m bench.campaigns [--patients 5000 --pace 600] [--embedded]

In this process, on the benchmark database (bench/harness.py):

1. creation — ``campaigns.services.create_campaign`` for N patients (one in
   twenty marked do-not-call), started at once: wall time, SQL queries, and
   the Python memory it allocated at its peak (tracemalloc) and the process's
   RSS growth.
2. dispatcher — the calls' dispatcher tick (``calls.dispatcher.dispatch``:
   the campaigns' release step, then promoting due calls and handing them out)
   every 2 s of simulated time at ``--pace`` per minute until every call has
   been handed out; the hand-off records the call, and after the timed tick
   each handed call is marked started and completed as a worker and a short
   call would (the bot start itself is not measured here: bench/dialout.py
   does that). Reports the tick's time and queries per started call and per
   tick, and checks the pace held in every 60-second span.
3. reads — the admin campaign page and ``GET /api/campaigns/{id}`` on the
   finished campaign: queries (the same as for a 10-patient campaign) and time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
import tracemalloc

from bench import harness


def _queries():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    connection.queries_log.clear()  # it keeps 9,000 at most: a full log would count nothing
    return CaptureQueriesContext(connection)


def _rss_kb() -> int:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss // 1024


def make_patients(org, n: int):
    from patients.models import Patient

    Patient.objects.filter(organization=org).delete()
    rows = [
        Patient(organization=org, external_id=f"B{i:06d}", first_name="Pat", last_name=f"Bench{i}",
                phone=f"+1415{2000000 + i:07d}", do_not_call=(i % 20 == 0))
        for i in range(n)
    ]
    Patient.objects.bulk_create(rows, batch_size=2000)
    return list(Patient.objects.filter(organization=org).order_by("pk"))


def run(args) -> dict:
    cfg = harness.config_from(args)
    harness.setup_django(cfg)
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from calls import dispatcher
    from calls.models import CallSession
    from campaigns import selectors, services
    from campaigns.models import Campaign
    from organizations.models import ApiKey, Organization, OrganizationMembership, Role, Workflow

    org, _ = Organization.objects.update_or_create(
        slug="bench-campaigns", defaults={"name": "Bench Campaigns", "max_concurrent_calls": 1000}
    )
    workflow, _ = Workflow.objects.update_or_create(
        organization=org, slug="reminder",
        defaults={"name": "Reminder", "instructions": "Remind {first_name}.", "window_start": dt.time(0, 0),
                  "window_end": dt.time.max, "window_days": [1, 2, 3, 4, 5, 6, 7]},
    )
    old = list(Campaign.objects.filter(organization=org).values_list("pk", flat=True))
    CallSession.objects.filter(campaign_id__in=old).delete()
    Campaign.objects.filter(pk__in=old).delete()
    harness.log(cfg, f"making {args.patients} patients")
    patients = make_patients(org, args.patients)
    small_patients = patients[:10]

    # 1. creation: timed on its own, then once more under tracemalloc for the memory
    rss0 = _rss_kb()
    with _queries() as q:
        t0 = time.perf_counter()
        campaign = services.create_campaign(organization=org, workflow=workflow, name="Bench", patients=patients,
                                            pace_per_minute=args.pace)
        create_s = time.perf_counter() - t0
    create_queries = len(q.captured_queries)
    rss_growth = _rss_kb() - rss0
    tracemalloc.start()
    twin = services.create_campaign(organization=org, workflow=workflow, name="Twin", patients=patients, start=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    CallSession.objects.filter(campaign_id=twin.pk).delete()
    twin.delete()
    created_calls = CallSession.objects.filter(campaign_id=campaign.pk).count()
    harness.log(cfg, f"created in {create_s:.2f} s, {len(q.captured_queries)} queries, {created_calls} calls")

    # 2. dispatcher at the pace, simulated clock
    now = timezone.now()
    started: list[dt.datetime] = []

    handed: list[str] = []

    def hand(session_id, room):  # enqueueing costs nothing here; the worker's start is applied after timing
        handed.append(session_id)

    clock = [now]
    tick_times, tick_queries, per_tick = [], [], []
    while len(started) < created_calls and len(tick_times) < 10_000:
        with _queries() as q:
            t0 = time.perf_counter()
            result = dispatcher.dispatch(hand, clock[0], reap=False)
            tick_times.append(time.perf_counter() - t0)
        tick_queries.append(len(q.captured_queries))
        per_tick.append(result.handed)
        # The workers start what was handed, and the calls end (as far as the pace and the slots are concerned).
        CallSession.objects.filter(pk__in=handed).update(status="completed", started_at=clock[0], ended_at=clock[0])
        started.extend([clock[0]] * len(handed))
        handed.clear()
        clock[0] += dt.timedelta(seconds=2)
    worst_span = 0
    j = 0
    for i, t in enumerate(started):
        while started[j] <= t - dt.timedelta(seconds=60):
            j += 1
        worst_span = max(worst_span, i - j + 1)
    busy = [t for t, n in zip(tick_times, per_tick) if n]
    idle = [t for t, n in zip(tick_times, per_tick) if not n]

    # 3. reads, big and small
    User = get_user_model()
    user, _ = User.objects.get_or_create(username="bench-campaigns-admin", defaults={"is_staff": True})
    OrganizationMembership.objects.get_or_create(organization=org, user=user, defaults={"role": Role.ADMIN})
    key, raw = ApiKey.generate(org, name="bench campaigns")
    small = services.create_campaign(organization=org, workflow=workflow, name="Small", patients=small_patients)
    client, api = Client(HTTP_HOST="127.0.0.1"), Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    reads = []
    for label, url, c, headers in [
        ("admin campaign page", "/admin/campaigns/campaign/{}/change/", client, {}),
        ("GET /api/campaigns/{id}", "/api/campaigns/{}", api, {"HTTP_AUTHORIZATION": f"Bearer {raw}"}),
    ]:
        row = {"page": label}
        for size, obj in (("small", small), ("large", campaign)):
            c.get(url.format(obj.pk), **headers)
            times = []
            for _ in range(args.repeat):
                with _queries() as q:
                    t0 = time.perf_counter()
                    resp = c.get(url.format(obj.pk), **headers)
                    times.append(time.perf_counter() - t0)
                assert resp.status_code == 200, (label, resp.status_code)
            row[size] = {"queries": len(q.captured_queries), "ms": statistics.median(times) * 1000}
        row["constant"] = row["small"]["queries"] == row["large"]["queries"]
        reads.append(row)
    key.revoke()
    counts, _ = selectors.progress(campaign)
    return {
        "stack": cfg.describe(),
        "machine": harness.machine(),
        "patients": args.patients,
        "pace_per_minute": args.pace,
        "create": {"seconds": create_s, "calls": created_calls, "skipped": counts["skipped"],
                   "queries": create_queries, "python_peak_mb": peak / 1e6, "rss_growth_mb": rss_growth / 1024},
        "dispatcher": {
            "ticks": len(tick_times), "busy_ticks": len(busy),
            "ms_per_started_call": 1000 * sum(tick_times) / max(1, len(started)),
            "busy_tick_ms_median": 1000 * statistics.median(busy) if busy else None,
            "idle_tick_ms_median": 1000 * statistics.median(idle) if idle else None,
            "queries_per_busy_tick_median": statistics.median(
                [qn for qn, n in zip(tick_queries, per_tick) if n]) if busy else None,
            "released_per_busy_tick_max": max(per_tick) if per_tick else 0,
            "most_starts_in_60s": worst_span,
            "simulated_minutes": len(tick_times) * 2 / 60,
        },
        "reads": reads,
    }


def render(data: dict) -> str:
    c, d = data["create"], data["dispatcher"]
    lines = [
        f"Campaign of {data['patients']} patients ({data['stack'].get('mode')}, {data['stack'].get('database')})",
        f"creation: {c['seconds']:.2f} s, {c['queries']} queries, for {c['calls']} calls + {c['skipped']} skipped; "
        f"Python peak {c['python_peak_mb']:.1f} MB, RSS +{c['rss_growth_mb']:.1f} MB",
        f"dispatcher at {data['pace_per_minute']}/min: {d['ms_per_started_call']:.2f} ms per started call "
        f"({d['ticks']} ticks over {d['simulated_minutes']:.1f} simulated min; busy tick median "
        f"{harness.fmt(d['busy_tick_ms_median'])} ms / {harness.fmt(d['queries_per_busy_tick_median'], 0)} queries, "
        f"idle tick {harness.fmt(d['idle_tick_ms_median'])} ms); most starts in any 60 s: {d['most_starts_in_60s']}",
        harness.table(
            ["page", "queries (10)", f"queries ({data['patients']})", "ms (10)", f"ms ({data['patients']})", "constant"],
            [[r["page"], r["small"]["queries"], r["large"]["queries"], harness.fmt(r["small"]["ms"]),
              harness.fmt(r["large"]["ms"]), "yes" if r["constant"] else "NO"] for r in data["reads"]],
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--patients", type=int, default=5000)
    p.add_argument("--pace", type=int, default=600)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", default=None)
    harness.add_stack_args(p)
    args = p.parse_args(argv)
    data = run(args)
    path = harness.write_json("campaigns", data, args.json)
    print(render(data))
    print(f"JSON: {path}")
    bad = [r for r in data["reads"] if not r["constant"]]
    if bad or data["dispatcher"]["most_starts_in_60s"] > data["pace_per_minute"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
