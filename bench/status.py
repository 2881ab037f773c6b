"""Status fan-out: bot events through /ws/bot/… to staff sockets on /ws/calls/….

    python -m bench.status [-k 20] [-m 10] [-e 100] [--rate 2] [--embedded]

Starts the stack (daphne + worker on PostgreSQL and the Redis channel layer,
or ``--embedded`` with the in-memory layer); makes K calls with status
tokens and M staff members. M browser sockets (session cookie, ``Origin``)
watch the organisation's list socket ``/ws/calls/`` (and ``--detail`` sockets
per call watch ``/ws/calls/<id>/``); K bot sockets each send E events of
DESIGN.md's protocol (bot_started, joined, dialout_attempt, dialout_answered,
transcript lines, outcome) at ``--rate`` events/s per bot (0 = as fast as
the socket takes them).

Reports event → browser latency (bot's send → a browser socket received the
``call.event``; same clock, this process) p50/p95/p99/max, events/s sent,
messages/s delivered, and losses.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import secrets
import sys
import time
from datetime import datetime, timezone
from typing import Any

from bench import harness
from bench.harness import Config, Fakes, Stack

ORG_SLUG = "bench-status"


def prepare(cfg: Config, k: int, m: int) -> tuple[list[tuple[str, str]], list[str]]:
    """K calls in ``starting`` with status tokens, M staff sessions.

    Returns ([(session_id, raw token)], [session cookie values]).
    """
    harness.setup_django(cfg)
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connections
    from django.utils import timezone as dj_tz

    from calls.models import CallSession
    from organizations.models import Organization, OrganizationMembership, Role, Workflow
    from patients.models import Patient

    org, _ = Organization.objects.update_or_create(slug=ORG_SLUG, defaults={"name": "Bench Status Clinic", "is_active": True})
    wf, _ = Workflow.objects.update_or_create(
        organization=org, slug="reminder",
        defaults={"name": "Reminder", "direction": "dial_out", "instructions": "Remind {first_name}.", "is_active": True},
    )
    CallSession.objects.filter(organization=org).delete()
    patients = []
    for i in range(k):
        p, _ = Patient.objects.get_or_create(
            organization=org, external_id=f"bench-status-{i}",
            defaults={"first_name": "Stat", "last_name": f"Us{i}", "phone": f"+1415999{i % 10000:04d}"},
        )
        patients.append(p)
    calls = []
    now = dj_tz.now()
    for i, p in enumerate(patients):
        raw = secrets.token_urlsafe(32)
        call = CallSession.objects.create(
            organization=org, workflow=wf, patient=p, direction="dial_out", status="starting", to_number=p.phone,
            status_token_hash=hashlib.sha256(raw.encode()).hexdigest(), started_at=now, bot_start_requested_at=now,
            daily_room_name=f"bench-status-{i}",
        )
        calls.append((str(call.pk), raw))
    User = get_user_model()
    cookies = []
    for i in range(m):
        user, _ = User.objects.get_or_create(username=f"bench-staff-{i}", defaults={"is_staff": True})
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        OrganizationMembership.objects.get_or_create(organization=org, user=user, defaults={"role": Role.STAFF})
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        # The backend that loads users (django-axes' comes first and only checks lockouts).
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        cookies.append(store.session_key)
    connections.close_all()
    return calls, cookies


def events_for(e: int) -> list[tuple[str, dict]]:
    head = [("bot_started", {}), ("joined", {}), ("dialout_attempt", {"attempt": 1, "max_attempts": 5}),
            ("dialout_answered", {"sessionId": "bench"})]
    out = head[: max(0, min(len(head), e - 1))]
    while len(out) < e - 1:
        role = "assistant" if len(out) % 2 else "user"
        out.append(("transcript", {"role": role, "text": f"line {len(out)} of the conversation, as it was said."}))
    if e >= 1:
        out.append(("outcome", {"result": "confirmed", "notes": "bench", "data": {}}))
    return out[:e]


class Watcher:
    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: list[float] = []
        self.seen: set[str] = set()
        self.updates = 0
        self.messages = 0
        self.last = 0.0


async def watch(session: Any, url: str, cookie: str, origin: str, watcher: Watcher, ready: asyncio.Event,
                stop: asyncio.Event) -> None:
    async with session.ws_connect(url, headers={"Cookie": f"sessionid={cookie}", "Origin": origin},
                                  heartbeat=None, max_msg_size=0) as ws:
        ready.set()
        while not stop.is_set():
            try:
                msg = await asyncio.wait_for(ws.receive(), 0.5)
            except asyncio.TimeoutError:
                continue
            if msg.type.name != "TEXT":
                if msg.type.name in ("CLOSE", "CLOSED", "CLOSING", "ERROR"):
                    return
                continue
            now = time.monotonic()
            data = json.loads(msg.data)
            watcher.messages += 1
            watcher.last = now
            if data.get("type") == "call.event":
                ev = (data.get("event") or {}).get("data") or {}
                sent = ev.get("bench_t")
                if sent is not None and ev.get("bench_id") not in watcher.seen:
                    watcher.seen.add(ev["bench_id"])
                    watcher.latencies.append((now - sent) * 1000)
            elif data.get("type") == "call.update":
                watcher.updates += 1


async def bot(session: Any, url: str, token: str, idx: int, events: list[tuple[str, dict]], rate: float,
              sent_log: list[float]) -> None:
    async with session.ws_connect(url, headers={"Authorization": f"Bearer {token}"}, heartbeat=None) as ws:
        if rate:
            await asyncio.sleep(random.random() / rate)  # spread the bots' phases
        start = time.monotonic()
        for seq, (name, data) in enumerate(events, 1):
            if rate:
                due = start + (seq - 1) / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            payload = dict(data, bench_t=time.monotonic(), bench_id=f"{idx}:{seq}")
            msg = {"seq": seq, "event": name, "at": datetime.now(timezone.utc).isoformat(), "data": payload}
            sent_log.append(payload["bench_t"])
            await ws.send_str(json.dumps(msg))
        # keep the socket open until the server has read everything
        await asyncio.sleep(0.5)


async def drive(stack: Stack, calls: list[tuple[str, str]], cookies: list[str], args: argparse.Namespace) -> dict:
    import aiohttp

    events = events_for(args.e)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop = asyncio.Event()
        watchers: list[Watcher] = []
        tasks = []
        readies = []
        for i, cookie in enumerate(cookies):
            w = Watcher(f"list-{i}")
            watchers.append(w)
            ready = asyncio.Event()
            readies.append(ready)
            tasks.append(asyncio.create_task(watch(session, f"{stack.ws_url}/ws/calls/", cookie, stack.url, w, ready, stop)))
        detail_watchers: list[Watcher] = []
        for j in range(args.detail):
            for call_id, _ in calls:
                w = Watcher(f"detail-{call_id[:8]}-{j}")
                detail_watchers.append(w)
                ready = asyncio.Event()
                readies.append(ready)
                tasks.append(asyncio.create_task(watch(session, f"{stack.ws_url}/ws/calls/{call_id}/",
                                                       cookies[j % len(cookies)], stack.url, w, ready, stop)))
        waiter = asyncio.gather(*(r.wait() for r in readies))
        done, _ = await asyncio.wait([asyncio.ensure_future(waiter), *tasks], timeout=30,
                                     return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            if t.done() and t.exception():
                raise RuntimeError(f"a browser socket failed: {t.exception()!r}")
        if not all(r.is_set() for r in readies):
            raise RuntimeError("browser sockets did not connect in 30 s")
        await asyncio.sleep(0.3)  # group_add done on the server side
        sent_log: list[float] = []
        t0 = time.monotonic()
        await asyncio.gather(*(bot(session, f"{stack.ws_url}/ws/bot/{cid}/", tok, i, events, args.rate, sent_log)
                               for i, (cid, tok) in enumerate(calls)))
        sent_done = time.monotonic()
        expected_list = len(calls) * len(events)
        deadline = time.monotonic() + args.settle_s
        everyone = watchers + detail_watchers
        while time.monotonic() < deadline:
            if all(len(w.seen) >= expected_list for w in watchers) and all(
                    len(w.seen) >= len(events) for w in detail_watchers):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    last = max((w.last for w in everyone), default=sent_done)
    latencies = [x for w in everyone for x in w.latencies]
    delivered = sum(w.messages for w in everyone)
    lost_list = sum(max(0, expected_list - len(w.seen)) for w in watchers)
    lost_detail = sum(max(0, len(events) - len(w.seen)) for w in detail_watchers)
    send_s = sent_done - t0
    return {
        "bots": len(calls), "list_sockets": len(watchers), "detail_sockets": len(detail_watchers),
        "events_per_bot": len(events), "rate_per_bot": args.rate,
        "events_sent": len(sent_log),
        "send_s": send_s,
        "events_per_s": len(sent_log) / send_s if send_s else None,
        "delivered_messages": delivered,
        "delivered_per_s": delivered / (last - t0) if last > t0 else None,
        "latency_ms": harness.summarize(latencies),
        "lost": lost_list + lost_detail,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = harness.config_from(args)
    calls, cookies = prepare(cfg, args.k, args.m)
    fakes = Fakes(cfg, 0)
    try:
        harness.log(cfg, f"stack: {cfg.label}")
        with Stack(cfg, fakes) as stack:
            harness.log(cfg, f"{args.k} bots × {args.e} events at {args.rate or 'max'}/s → "
                             f"{args.m} list sockets + {args.detail * args.k} detail sockets")
            if not args.no_wait_quiet:
                harness.wait_for_quiet(cfg)
            with harness.Profiler(stack, "status") as profiler, harness.CpuMeter(stack, fakes) as cpu:
                row = asyncio.run(drive(stack, calls, cookies, args))
            row["cpu"] = cpu.report()
            row["profiles"] = [str(p) for p in profiler.reports]
    finally:
        fakes.stop()
    row["label"] = "MyRobot"
    return {"config": cfg.describe(), "rows": [row]}


def render(data: dict[str, Any]) -> str:
    cols = ["bots", "list socks", "detail socks", "events sent", "events/s", "msgs delivered/s", "p50 ms", "p95",
            "p99", "max", "lost"]
    rows = []
    for r in data["rows"]:
        lat = r["latency_ms"]
        rows.append([r["bots"], r["list_sockets"], r["detail_sockets"], r["events_sent"], r["events_per_s"],
                     r["delivered_per_s"], lat["p50"], lat["p95"], lat["p99"], lat["max"], r["lost"]])
    text = harness.table(cols, rows) + f"\nlatency = bot socket send → browser socket received call.event ({data['config']['mode']})"
    for r in data["rows"]:
        if r.get("cpu"):
            text += "\n" + harness.cpu_line(r["cpu"])
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("-k", type=int, default=20, help="bot sockets (calls), default 20")
    p.add_argument("-m", type=int, default=10, help="staff sockets on /ws/calls/, default 10")
    p.add_argument("-e", type=int, default=100, help="events per bot, default 100")
    p.add_argument("--rate", type=float, default=2.0, help="events/s per bot (0 = unpaced), default 2")
    p.add_argument("--detail", type=int, default=0, help="sockets per call on /ws/calls/<id>/, default 0")
    p.add_argument("--settle-s", type=float, default=30.0)
    p.add_argument("--json", default=None)
    harness.add_stack_args(p)
    args = p.parse_args(argv)
    if args.m < 1 or args.k < 1:
        p.error("-k and -m must be at least 1")
    data = run(args)
    path = harness.write_json("status", data, args.json)
    print(render(data))
    print(f"JSON: {path}")
    if any(r["lost"] for r in data["rows"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
