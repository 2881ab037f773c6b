"""Dial-out: POST /api/start-call → time until the bot start reaches the runner.

    python -m bench.dialout [-n 500] [-c 10] [--latency-ms 40] [--embedded] [--no-reference]

The same stack and fakes as ``bench.dialin``; an organisation with an API key,
a dial-out workflow and consenting patients; N calls placed through the REST
API at concurrency C (round-robin over the patients). Reports the API's
response time and the time from request to bot start (matched by the
returned ``session_id``), p50/p95/p99, throughput and errors.

Reference row: Pipecat's development runner asked to do the same job —
``POST /start`` with ``createDailyRoom: true`` and ``enable_dialout`` room
properties (room and token through ``configure()``, bot started in-process);
its time ends when ``bot()`` is entered.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

from bench import harness
from bench.dialin import measure, parser as dialin_parser, render, room_requests
from bench.harness import Config, Fakes, ReferenceRunner, Result, Stack

ORG_SLUG = "bench-dialout"
WORKFLOW_SLUG = "reminder"
PATIENTS = 200


def prepare(cfg: Config) -> tuple[str, list[int]]:
    """Organisation, API key, workflow and patients; returns (raw API key, patient ids)."""
    harness.setup_django(cfg)
    from calls.models import CallSession
    from organizations.models import ApiKey, Organization, Workflow
    from patients.models import Patient

    # Calls placed "now" with a free slot (the bench's bots never end, so the
    # slots must not run out) inside a window that is always open.
    org, _ = Organization.objects.update_or_create(
        slug=ORG_SLUG, defaults={"name": "Bench Dial-out Clinic", "is_active": True, "dialout_caller_id": "+14155550000",
                                 "max_concurrent_calls": 1_000_000}
    )
    Workflow.objects.update_or_create(
        organization=org, slug=WORKFLOW_SLUG,
        defaults={"name": "Reminder", "direction": "dial_out", "is_active": True,
                  "instructions": "Remind {first_name} of the appointment.",
                  "first_message": "Hello {first_name}, this is {client_name}.",
                  "window_start": datetime.time(0, 0), "window_end": datetime.time.max,
                  "window_days": [1, 2, 3, 4, 5, 6, 7]},
    )
    CallSession.objects.filter(organization=org).delete()
    existing = Patient.objects.filter(organization=org).count()
    if existing < PATIENTS:
        Patient.objects.bulk_create([
            Patient(organization=org, external_id=f"bench-{i}", first_name="Pat", last_name=f"Bench{i}",
                    phone=f"+1415888{i:04d}", data={"appointment": "Tuesday 10:30"})
            for i in range(existing, PATIENTS)
        ], ignore_conflicts=True)
    ApiKey.objects.filter(organization=org).delete()
    _key, raw = ApiKey.generate(org, name="bench")
    ids = list(Patient.objects.filter(organization=org).order_by("pk").values_list("pk", flat=True))
    from django.db import connections

    connections.close_all()
    return raw, ids


def ours(url: str, api_key: str, patient_ids: list[int]):
    headers = {"Authorization": f"Bearer {api_key}"}

    async def make(session: Any, i: int) -> Result:
        # A number is in at most one live call (calls.rules) and the bench's bots never
        # end: warm-up calls (i from 10**6) take patients from the end of the list, the
        # measured ones from the start, so no measured call waits behind a warm-up's.
        pick = -1 - (i - 10**6) if i >= 10**6 else i
        raw = json.dumps({"patient_id": patient_ids[pick % len(patient_ids)], "workflow": WORKFLOW_SLUG}).encode()
        result = await harness.post_json(session, url, "", raw, headers)
        if isinstance(result.body, dict) and result.body.get("session_id"):
            result.key = result.body["session_id"]
        return result

    return make


def reference(url: str):
    async def make(session: Any, i: int) -> Result:
        key = f"bench-{i}"
        raw = json.dumps({
            "createDailyRoom": True,
            "dailyRoomProperties": {"enable_dialout": True, "start_video_off": True},
            "body": {"bench_id": key, "phone_number": f"+1415888{i % PATIENTS:04d}"},
        }).encode()
        return await harness.post_json(session, url, key, raw, {})

    return make


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = harness.config_from(args)
    api_key, patient_ids = prepare(cfg)
    fakes = Fakes(cfg, args.latency_ms)
    rows = []
    try:
        harness.log(cfg, f"stack: {cfg.label}")
        with Stack(cfg, fakes) as stack:
            def starts() -> dict[str, float]:
                return {r["session_id"]: r["at"] for r in fakes.requests("runner")[1]
                        if r["path"] == "/start" and r.get("session_id")}

            harness.log(cfg, f"MyRobot: {args.n} start-calls at concurrency {args.concurrency}, "
                             f"Daily latency {args.latency_ms} ms")
            rows.append(measure("MyRobot", ours(stack.url + "/api/start-call", api_key, patient_ids), args, starts,
                                stack, "dialout", fakes, rooms=lambda: room_requests(fakes)))
            rows[-1]["daily_requests"] = fakes.route_counts("daily")
            rows[-1]["stack"] = cfg.describe()
        fakes.reset()
        if args.reference:
            harness.log(cfg, "reference: Pipecat development runner")
            ref = ReferenceRunner(cfg, fakes)
            try:
                def ref_starts() -> dict[str, float]:
                    return {e["key"]: e["at"] for e in ref.entries() if e.get("key")}

                rows.append(measure("Pipecat runner (reference)", reference(ref.url + "/start"), args, ref_starts,
                                    None, "dialout-reference", fakes, {"runner": ref.proc.popen.pid}))
                rows[-1]["daily_requests"] = fakes.route_counts("daily")
            finally:
                ref.stop()
    finally:
        fakes.stop()
    return {"config": cfg.describe(), "rows": rows}


def main(argv: list[str] | None = None) -> None:
    args = dialin_parser(__doc__).parse_args(argv)
    data = run(args)
    path = harness.write_json("dialout", data, args.json)
    print(render(data, "start-call"))
    print(f"JSON: {path}")
    if any(r["errors"] or r["missing_starts"] for r in data["rows"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
