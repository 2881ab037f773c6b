"""Query counts and times of the list pages, small organisation vs large.

    python -m bench.queries [--patients 10000 --calls 100000] [--embedded] [--regenerate]

Generates (``bulk_create``, once; reused while the counts match) a large
organisation — 10,000 patients and 100,000 calls by default — and a small one
(10 patients, 20 calls: less than a page, so an N+1 shows as a count
that differs), each with an admin member and an API key. Then,
in this process through Django's test client, for each organisation: the
admin patient and call lists, ``GET /api/calls``, ``GET /api/patients`` and
the live list ``/calls/live/`` and the dashboard (``/calls/dashboard/``, the
default 30 days and a whole year). Reports the SQL queries each one ran and its
time (median of ``--repeat``), small next to large: a count that grows with
the rows is an N+1.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import timedelta
from typing import Any

from bench import harness

PAGES = [
    ("admin patient list", "/admin/patients/patient/", "session"),
    ("admin call list", "/admin/calls/callsession/", "session"),
    ("GET /api/calls", "/api/calls", "key"),
    ("GET /api/patients", "/api/patients", "key"),
    ("live list", "/calls/live/", "session"),
    ("dashboard (last 30 days)", "/calls/dashboard/", "session"),
    ("dashboard (a year)", "/calls/dashboard/?from={year_ago}", "session"),
]

STATUSES_FINAL = ["completed"] * 6 + ["no_answer", "busy", "failed", "canceled"]
STATUSES_ACTIVE = ["queued", "starting", "ringing", "waiting", "in_progress"]
# Each completed call carries this many bot ``metrics`` events (one per turn, with
# ``turn_ms``), so the dashboard's median turn latency reads realistic data.
TURNS_PER_CALL = 4


def generate(slug: str, n_patients: int, n_calls: int, regenerate: bool, log) -> dict[str, Any]:
    """The organisation ``slug`` with exactly that many patients and calls."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from calls.models import CallEvent, CallSession
    from organizations.models import ApiKey, Organization, OrganizationMembership, Role, Workflow
    from patients.models import Patient

    org, _ = Organization.objects.update_or_create(slug=slug, defaults={"name": slug.replace("-", " ").title()})
    wfs = []
    for wslug, direction in (("reminder", "dial_out"), ("inbound", "dial_in"), ("followup", "both")):
        wf, _ = Workflow.objects.update_or_create(
            organization=org, slug=wslug,
            defaults={"name": wslug.title(), "direction": direction, "instructions": "Talk to {first_name}."},
        )
        wfs.append(wf)
    have_p = Patient.objects.filter(organization=org).count()
    have_c = CallSession.objects.filter(organization=org).count()
    have_turns = CallEvent.objects.filter(call__organization=org, kind="metrics").count()
    want_turns = TURNS_PER_CALL * CallSession.objects.filter(organization=org, status="completed").count()
    if regenerate or have_p != n_patients or have_c != n_calls or have_turns != want_turns:
        t0 = time.monotonic()
        log(f"generating {slug}: {n_patients} patients, {n_calls} calls")
        with transaction.atomic():
            CallEvent.objects.filter(call__organization=org).delete()
            CallSession.objects.filter(organization=org).delete()
            Patient.objects.filter(organization=org).delete()
        rng = random.Random(slug)
        patients = [
            Patient(organization=org, external_id=f"{slug}-{i}", first_name=rng.choice(["Ada", "Grace", "Alan", "Edsger", "Barbara"]),
                    last_name=f"Patient{i}", phone=f"+1{rng.randint(2000000000, 9999999999)}",
                    data={"appointment": "Tuesday 10:30", "clinic": "North"}, consent_to_call=rng.random() > 0.05,
                    do_not_call=rng.random() < 0.02)
            for i in range(n_patients)
        ]
        Patient.objects.bulk_create(patients, batch_size=2000)
        pids = list(Patient.objects.filter(organization=org).values_list("pk", "phone"))
        now = timezone.now()
        batch: list[CallSession] = []
        turns: list[CallEvent] = []
        for i in range(n_calls):
            pid, phone = pids[rng.randrange(len(pids))] if pids and rng.random() > 0.1 else (None, "+14155550100")
            wf = wfs[rng.randrange(3)]
            direction = "dial_in" if wf.direction == "dial_in" else "dial_out"
            created = now - timedelta(minutes=i * 3)
            status = rng.choice(STATUSES_ACTIVE) if i < 30 else rng.choice(STATUSES_FINAL)
            final = status not in STATUSES_ACTIVE
            batch.append(CallSession(
                organization=org, workflow=wf, patient_id=pid, direction=direction, status=status,
                from_number=phone if direction == "dial_in" else "+14155559999",
                to_number=phone if direction == "dial_out" else "+14155559999",
                started_at=created + timedelta(seconds=2), answered_at=created + timedelta(seconds=9) if final else None,
                ended_at=created + timedelta(minutes=3) if final else None,
                end_reason="completed" if status == "completed" else "",
                outcome={"result": "confirmed", "notes": "", "data": {}} if status == "completed" else None,
                transcript=[{"role": "assistant", "text": "Hello"}, {"role": "user", "text": "Hi"}] if final else [],
            ))
            if status == "completed":
                call = batch[-1]
                turns.extend(
                    CallEvent(call_id=call.pk, seq=t + 1, at=created + timedelta(seconds=15 + 30 * t), kind="metrics",
                              data={"stt_ms": 180, "llm_ttfb_ms": 420, "tts_ttfb_ms": 210,
                                    "turn_ms": int(rng.lognormvariate(6.8, 0.35))})
                    for t in range(TURNS_PER_CALL)
                )
            if len(batch) >= 5000:
                _insert_calls(batch, turns)
                batch, turns = [], []
        if batch:
            _insert_calls(batch, turns)
        # created_at is auto_now_add (bulk_create overrides it): spread it over time
        # like real history, so ordering and date filters see real data.
        from django.db.models import F

        CallSession.objects.filter(organization=org).update(created_at=F("started_at") - timedelta(seconds=2))
        log(f"generated {slug} in {time.monotonic() - t0:.1f} s")
    _count_for_the_dashboard(org, log)
    User = get_user_model()
    user, _ = User.objects.get_or_create(username=f"{slug}-admin", defaults={"is_staff": True})
    OrganizationMembership.objects.get_or_create(organization=org, user=user, defaults={"role": Role.ADMIN})
    ApiKey.objects.filter(organization=org).delete()
    _key, raw = ApiKey.generate(org, name="bench")
    return {"org": org, "user": user, "api_key": raw, "patients": n_patients, "calls": n_calls}


def _count_for_the_dashboard(org, log) -> None:
    """``bulk_create`` passes by the state machine, like a restore: recount the
    dashboard's roll-up (calls.rollup) when it does not hold every final call."""
    from calls import rollup

    if rollup.totals(org.pk) != rollup.recount(org.pk):
        t0 = time.monotonic()
        rollup.rebuild(org.pk)
        log(f"rolled up {org.slug} in {time.monotonic() - t0:.1f} s: {rollup.totals(org.pk)}")


def _insert_calls(batch, turns) -> None:
    from calls.models import CallEvent, CallSession

    CallSession.objects.bulk_create(batch, batch_size=2500)
    CallEvent.objects.bulk_create(turns, batch_size=5000)


def measure(target: dict[str, Any], repeat: int) -> list[dict[str, Any]]:
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(target["user"])
    rows = []
    from datetime import date

    year_ago = (date.today() - timedelta(days=364)).isoformat()
    for label, path, auth in PAGES:
        path = path.format(year_ago=year_ago)
        headers = {"HTTP_AUTHORIZATION": f"Bearer {target['api_key']}"} if auth == "key" else {}
        resp = client.get(path, **headers)  # warm-up (caches, template loading)
        counts, times, statuses = [], [], []
        for _ in range(repeat):
            reset_queries()
            with CaptureQueriesContext(connection) as ctx:
                t0 = time.perf_counter()
                resp = client.get(path, **headers)
                elapsed = (time.perf_counter() - t0) * 1000
            counts.append(len(ctx.captured_queries))
            sqls = [q["sql"] for q in ctx.captured_queries]
            times.append(elapsed)
            statuses.append(resp.status_code)
        rows.append({
            "page": label, "path": path, "status": statuses[-1], "queries": max(counts),
            "queries_min": min(counts), "ms_median": statistics.median(times), "ms_max": max(times),
            "bytes": len(resp.content), "sql": _grouped(sqls),
        })
    return rows


def _grouped(sqls: list[str]) -> list[dict[str, Any]]:
    """Statements with their literals blanked, counted: an N+1 is one line with a big count."""
    import re

    shapes: dict[str, int] = {}
    for sql in sqls:
        shape = re.sub(r"'[^']*'|\b\d+\b", "?", sql)
        shapes[shape] = shapes.get(shape, 0) + 1
    return [{"count": n, "sql": shape} for shape, n in sorted(shapes.items(), key=lambda kv: -kv[1])]


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = harness.config_from(args)
    harness.setup_django(cfg)
    log = lambda *a: harness.log(cfg, *a)  # noqa: E731
    small = generate("bench-q-small", args.small_patients, args.small_calls, args.regenerate, log)
    large = generate("bench-q-large", args.patients, args.calls, args.regenerate, log)
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("ANALYZE")
    result = {"config": cfg.describe(), "sizes": {
        "small": {"patients": small["patients"], "calls": small["calls"]},
        "large": {"patients": large["patients"], "calls": large["calls"]},
    }}
    if not args.no_wait_quiet:
        harness.wait_for_quiet(cfg)
    s_rows = measure(small, args.repeat)
    l_rows = measure(large, args.repeat)
    rows = []
    for s, l in zip(s_rows, l_rows):
        rows.append({"page": s["page"], "path": s["path"], "small": s, "large": l,
                     "constant": s["queries"] == l["queries"] and s["queries_min"] == l["queries_min"]})
    result["rows"] = rows
    return result


def render(data: dict[str, Any]) -> str:
    sz = data["sizes"]
    cols = ["page", "status", "queries small", "queries large", "constant", "ms small", "ms large"]
    rows = [[r["page"], f"{r['small']['status']}/{r['large']['status']}", r["small"]["queries"], r["large"]["queries"],
             "yes" if r["constant"] else "NO", r["small"]["ms_median"], r["large"]["ms_median"]] for r in data["rows"]]
    return harness.table(cols, rows) + (
        f"\nsmall = {sz['small']['patients']} patients / {sz['small']['calls']} calls; "
        f"large = {sz['large']['patients']} patients / {sz['large']['calls']} calls; "
        f"as the organisation's admin member; time = median of the repeats, in this process ({data['config']['mode']})")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--patients", type=int, default=10_000)
    p.add_argument("--calls", type=int, default=100_000)
    p.add_argument("--small-patients", type=int, default=10,
                   help="fewer rows than a page, so an N+1 shows as a different count (default 10)")
    p.add_argument("--small-calls", type=int, default=20)
    p.add_argument("--show-queries", action="store_true",
                   help="print each page's SQL (repeated statements grouped) for the large organisation")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--regenerate", action="store_true", help="throw the generated data away and make it again")
    p.add_argument("--json", default=None)
    harness.add_stack_args(p)
    args = p.parse_args(argv)
    data = run(args)
    path = harness.write_json("queries", data, args.json)
    print(render(data))
    if args.show_queries:
        for r in data["rows"]:
            print(f"\n## {r['page']} (large): {r['large']['queries']} queries")
            for q in r["large"]["sql"]:
                print(f"  {q['count']:4d} × {q['sql'][:300]}")
    print(f"JSON: {path}")
    bad = [r for r in data["rows"] if not r["constant"] or r["small"]["status"] >= 400 or r["large"]["status"] >= 400]
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
