"""Dial-in: signed pinless webhooks → hold time until the bot start reaches the runner.

    python -m bench.dialin [-n 500] [-c 10] [--latency-ms 40] [--embedded] [--no-reference]

Starts the stack (daphne + Celery worker on PostgreSQL/Redis, or ``--embedded``),
the Daily fake with ``--latency-ms`` added to every answer and the fake runner;
creates an organisation with a webhook secret and a dial-in workflow; posts N
signed webhooks at concurrency C. Reports the webhook's response time and the
**hold time** (webhook sent → the runner received the bot's start request,
matched by ``callId``), p50/p95/p99, throughput and errors.

Reference row: the same webhooks against Pipecat's development runner
(``bench/reference_bot.py``: ``/daily-dialin-webhook``, which makes the room
with ``configure()`` and starts the bot in-process), on the same Daily fake;
its hold time ends when ``bot()`` is entered.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import sys
import time
import uuid
from typing import Any

from bench import harness, trace
from bench.harness import Config, Fakes, ReferenceRunner, Result, Stack

ORG_SLUG = "bench-dialin"
WORKFLOW_SLUG = "inbound"
CALL_DOMAIN = "0d6b6c3e-6d8a-4a47-9e0f-1c2b3a4d5e6f"


def sign(secret_b64: str, timestamp: str, raw: bytes) -> str:
    digest = hmac.new(base64.b64decode(secret_b64), timestamp.encode() + b"." + raw, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def prepare(cfg: Config) -> str:
    """The bench organisation and dial-in workflow (calls of earlier runs removed); returns the secret."""
    harness.setup_django(cfg)
    from calls.models import CallSession
    from organizations.models import Organization, Workflow
    from patients.models import Patient

    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    org, _ = Organization.objects.update_or_create(
        slug=ORG_SLUG, defaults={"name": "Bench Dial-in Clinic", "dialin_webhook_secret": secret, "is_active": True}
    )
    Workflow.objects.update_or_create(
        organization=org, slug=WORKFLOW_SLUG,
        defaults={"name": "Inbound", "direction": "dial_in", "is_active": True,
                  "instructions": "Help the caller, {first_name}.", "first_message": "Hello, this is {client_name}."},
    )
    CallSession.objects.filter(organization=org).delete()
    # A few known callers: every tenth webhook comes from a patient's number.
    for i in range(10):
        Patient.objects.get_or_create(
            organization=org, external_id=f"bench-caller-{i}",
            defaults={"first_name": "Caller", "last_name": str(i), "phone": f"+1415666{i:04d}"},
        )
    from django.db import connections

    connections.close_all()
    return secret


def webhook_body(i: int) -> tuple[str, bytes]:
    call_id = str(uuid.uuid4())
    caller = f"+1415666{i % 10:04d}" if i % 10 == 0 else f"+1415777{i % 10000:04d}"
    body = {"From": caller, "To": "+14155559999", "callId": call_id, "callDomain": CALL_DOMAIN}
    return call_id, json.dumps(body).encode()


def ours(url: str, secret: str):
    async def make(session: Any, i: int) -> Result:
        call_id, raw = webhook_body(i)
        ts = str(int(time.time()))
        headers = {"X-Pinless-Signature": sign(secret, ts, raw), "X-Pinless-Timestamp": ts}
        return await harness.post_json(session, url, call_id, raw, headers)

    return make


def reference(url: str):
    async def make(session: Any, i: int) -> Result:
        call_id, raw = webhook_body(i)
        return await harness.post_json(session, url, call_id, raw, {})

    return make


def measure(label: str, make, args, starts, stack: Stack | None = None, name: str = "dialin",
            fakes: Fakes | None = None, extra_procs: dict[str, int] | None = None,
            rooms=None) -> dict[str, Any]:
    """Warm up, run the load, wait for the starts and compute the row.

    ``starts()`` returns {key: monotonic time the start was received}.
    """
    if args.warmup:
        asyncio.run(harness.run_load(make, args.warmup, min(args.concurrency, args.warmup), start_index=10**6))
        if stack is None or stack.want_worker or stack.cfg.embedded:
            harness.wait_until(lambda: len(starts()) >= args.warmup, 30)
    before = set(starts())
    if not getattr(args, "no_wait_quiet", False):
        harness.wait_for_quiet(stack.cfg if stack else None)
    wait_starts = stack is None or stack.want_worker or stack.cfg.embedded
    with harness.Profiler(stack, name) as profiler, harness.CpuMeter(stack, fakes, extra_procs) as cpu:
        if args.rate:
            results, wall = asyncio.run(harness.run_paced(make, args.n, args.rate))
        else:
            results, wall = asyncio.run(harness.run_load(make, args.n, args.concurrency))
        ok = [r for r in results if r.ok]
        keys = {r.key for r in ok}
        if wait_starts:
            harness.wait_until(lambda: keys <= set(starts()), args.settle_s, interval=0.2)
    started = starts()
    holds = [(started[r.key] - r.sent) * 1000 for r in ok if r.key in started and r.key not in before]
    errors = [r for r in results if not r.ok]
    samples = [[r.key, r.sent, r.done, r.body.get("session_id") if isinstance(r.body, dict) else None,
                started.get(r.key)] for r in results]
    phases: dict[str, Any] = {}
    if rooms is not None:
        # Where the hold goes: sent → the room request reached Daily (webhook, queue,
        # task start) and room request → bot start (Daily's answer and what follows).
        room_at = rooms()
        to_room, room_to_start = [], []
        for r in ok:
            sid = r.body.get("session_id") if isinstance(r.body, dict) else None
            if sid and sid in room_at and r.key in started and r.key not in before:
                to_room.append((room_at[sid] - r.sent) * 1000)
                room_to_start.append((started[r.key] - room_at[sid]) * 1000)
        phases = {"to_room_request_ms": harness.summarize(to_room),
                  "room_request_to_start_ms": harness.summarize(room_to_start)}
    return {
        "label": label,
        "n": args.n,
        "concurrency": args.concurrency if not args.rate else None,
        "rate": args.rate or None,
        "latency_ms": args.latency_ms,
        "wall_s": wall,
        "throughput_rps": len(results) / wall if wall else None,
        "response_ms": harness.summarize(r.ms for r in results),
        "hold_ms": harness.summarize(holds),
        "errors": len(errors),
        "missing_starts": len(keys - set(started)) if wait_starts else 0,
        "error_samples": [{"status": r.status, "error": r.error, "body": r.body} for r in errors[:5]],
        "phases": phases,
        "samples": samples if getattr(args, "dump_requests", False) else None,
        "trace": trace.analyze(samples, stack.cfg.trace) if stack is not None and stack.cfg.trace else None,
        "profiles": [str(p) for p in profiler.reports],
        "cpu": cpu.report(),
    }


def room_requests(fakes: Fakes) -> dict[str, float]:
    """{session id: when its POST /rooms reached the Daily fake} (names are mr-<session id>)."""
    out = {}
    for r in fakes.requests("daily")[1]:
        if r["method"] == "POST" and r["path"] == "/rooms" and str(r.get("room", "")).startswith("mr-"):
            out.setdefault(r["room"][3:], r["at"])
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = harness.config_from(args)
    secret = prepare(cfg)
    fakes = Fakes(cfg, args.latency_ms)
    rows = []
    try:
        harness.log(cfg, f"stack: {cfg.label}")
        with Stack(cfg, fakes) as stack:
            url = f"{stack.url}/api/dialin-webhook/{ORG_SLUG}/{WORKFLOW_SLUG}"

            def starts() -> dict[str, float]:
                return {r["call_id"]: r["at"] for r in fakes.requests("runner")[1]
                        if r["path"] == "/start" and r.get("call_id")}

            harness.log(cfg, f"MyRobot: {args.n} webhooks at concurrency {args.concurrency}, "
                             f"Daily latency {args.latency_ms} ms")
            rows.append(measure("MyRobot", ours(url, secret), args, starts, stack, "dialin", fakes,
                                rooms=lambda: room_requests(fakes)))
            rows[-1]["daily_requests"] = fakes.route_counts("daily")
            rows[-1]["stack"] = cfg.describe()
        fakes.reset()
        if args.reference:
            harness.log(cfg, "reference: Pipecat development runner")
            ref = ReferenceRunner(cfg, fakes)
            try:
                def ref_starts() -> dict[str, float]:
                    return {e["key"]: e["at"] for e in ref.entries() if e.get("key")}

                rows.append(measure("Pipecat runner (reference)", reference(ref.url + "/daily-dialin-webhook"),
                                    args, ref_starts, None, "dialin-reference", fakes,
                                    {"runner": ref.proc.popen.pid}))
                rows[-1]["daily_requests"] = fakes.route_counts("daily")
            finally:
                ref.stop()
    finally:
        fakes.stop()
    return {"config": cfg.describe(), "rows": rows}


def render(data: dict[str, Any], what: str = "webhook") -> str:
    rows = data["rows"]
    cols = ["system", f"{what} p50", "p95", "p99", "hold p50", "hold p95", "hold p99", "req/s", "errors"]
    out = []
    for r in rows:
        resp, hold = r["response_ms"], r["hold_ms"]
        out.append([r["label"], resp["p50"], resp["p95"], resp["p99"], hold["p50"], hold["p95"], hold["p99"],
                    r["throughput_rps"], r["errors"] + r["missing_starts"]])
    if len(rows) == 2:
        a, b = rows
        ratio = lambda x, y: (x / y) if (x is not None and y) else None  # noqa: E731
        out.append([
            "ratio (MyRobot / reference)",
            ratio(a["response_ms"]["p50"], b["response_ms"]["p50"]), ratio(a["response_ms"]["p95"], b["response_ms"]["p95"]),
            ratio(a["response_ms"]["p99"], b["response_ms"]["p99"]),
            ratio(a["hold_ms"]["p50"], b["hold_ms"]["p50"]), ratio(a["hold_ms"]["p95"], b["hold_ms"]["p95"]),
            ratio(a["hold_ms"]["p99"], b["hold_ms"]["p99"]),
            ratio(a["throughput_rps"], b["throughput_rps"]), None,
        ])
    text = harness.table(cols, out)
    first = rows[0]
    load = f"rate={first['rate']}/s (open loop)" if first.get("rate") else f"C={first['concurrency']}"
    note = (f"\nN={first['n']}  {load}  Daily latency={first['latency_ms']} ms  "
            f"times in ms; hold = request sent → bot start received (MyRobot) / bot() entered (reference)")
    for r in rows:
        note += f"\nDaily requests ({r['label']}): {r.get('daily_requests')}"
        ph = r.get("phases") or {}
        if ph.get("to_room_request_ms", {}).get("n"):
            a, b = ph["to_room_request_ms"], ph["room_request_to_start_ms"]
            note += (f"\nhold phases ({r['label']}), p50/p99: sent → room request at Daily "
                     f"{harness.fmt(a['p50'])}/{harness.fmt(a['p99'])}; room request → bot start "
                     f"{harness.fmt(b['p50'])}/{harness.fmt(b['p99'])}")
        if r.get("cpu"):
            note += f"\n{harness.cpu_line(r['cpu'])}  (measured window; includes the wait for the last starts)"
        if r.get("trace"):
            note += f"\nwhere the hold goes ({r['label']}, --trace; ms from the previous step):\n"
            note += harness.table(["step", "what", "p50", "p90"],
                                  [[t["step"], t["what"], t["p50"], t["p90"]] for t in r["trace"]])
        for prof in r.get("profiles") or []:
            note += f"\nprofile: {prof}"
        for sample in r["error_samples"]:
            note += f"\n  error sample: {sample}"
    return text + note


def parser(description: str = __doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=description)
    p.add_argument("-n", type=int, default=500, help="requests (default 500)")
    p.add_argument("-c", "--concurrency", type=int, default=10, help="requests in flight (default 10)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="open loop instead: send this many requests per second whatever the answers (0 = off)")
    p.add_argument("--latency-ms", type=float, default=40.0, help="added to every Daily answer (default 40)")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured requests first (default 20)")
    p.add_argument("--settle-s", type=float, default=60.0, help="how long to wait for the last bot starts")
    p.add_argument("--no-reference", dest="reference", action="store_false", help="skip Pipecat's runner row")
    p.add_argument("--dump-requests", action="store_true",
                   help="keep every request's times in the JSON (key, sent, answered, session id, bot start)")
    p.add_argument("--json", default=None, help="write the JSON here (default bench/out/<name>-<time>.json)")
    harness.add_stack_args(p)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    data = run(args)
    path = harness.write_json("dialin", data, args.json)
    print(render(data))
    print(f"JSON: {path}")
    if any(r["errors"] or r["missing_starts"] for r in data["rows"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
