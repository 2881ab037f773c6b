"""Fault runs: a call the server accepted is started exactly once, or ends failed with its true cause.

Each run builds the production stack on one machine (daphne, a Celery worker,
the dispatcher loop, PostgreSQL, a redis-server of its own on a free port, the
Daily and bot-runner fakes over HTTP), places dial-out calls through the REST
API, breaks one part while the starts are in flight, and counts:

    accepted       the API answered 202
    started_once   the bot runner received exactly one start for the call
    started_twice  more than one start (a patient rung twice): must be 0
    failed         ended `failed` with a recorded reason (a true cause)
    lost           accepted, never started, not failed: must be 0

    python -m bench.faults worker-sigkill [--calls 8] [--hipaa]

``--hipaa`` runs it under Daily's HIPAA mode (the fake names rooms at random and
the server runs with ``DAILY_HIPAA_MODE``): rooms are then found by the name the
start path stored, not by the session id.

Scenarios: worker-sigkill, worker-sigterm, postgres-terminate, redis-stop,
capacity-429 (the bot runner answers 429 for --busy seconds, 30 by default: every call
starts once when it clears) and capacity-429-too-long (429 for longer than the capacity
wait: every call ends `failed` with reason `capacity`).
Each uses its own database (``myrobot_fault_<scenario>``), Redis port and ports.
``tests/test_faults.py`` runs them all in CI's PostgreSQL + Redis pass.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from bench.harness import OUT, PY, Config, Fakes, Proc, Stack, free_port, http_get, http_post, setup_django

SCENARIOS = ("worker-sigkill", "worker-sigterm", "postgres-terminate", "redis-stop", "capacity-429",
             "capacity-429-too-long")

# The stack's timings, shortened so a run takes seconds, not minutes; the
# production defaults and why they hold are in docs/operations.md.
RUN_ENV = {
    "DISPATCH_INTERVAL_S": "0.5",
    "DISPATCH_LOST_START_AFTER_S": "3",
    "DISPATCH_STALLED_START_AFTER_S": "6",
    "CELERY_VISIBILITY_TIMEOUT_S": "30",
    "STALE_START_AFTER_S": "600",
    "BOTRUNNER_START_TIMEOUT_S": "10",
    "DATABASE_POOL_TIMEOUT_S": "5",
}


def _pg_base() -> str:
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        base = "postgres://postgres@127.0.0.1:5432/postgres"
    return base.rsplit("/", 1)[0]


class Redis:
    """A redis-server of this run's own, which the run may stop and start again."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_dir = log_dir
        self.proc: Proc | None = None
        self.start()

    def start(self) -> None:
        self.proc = Proc(
            f"redis-{self.port}",
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            dict(os.environ), self.log_dir,
        )
        self.proc.wait_for(lambda: "Ready to accept connections" in self.proc.output(), 10, "readiness")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def _api(url: str, key: str, body: dict, timeout: float = 15.0) -> tuple[int, dict]:
    req = Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json",
        "Idempotency-Key": body["external_id"] + "-" + str(body.get("_try", 0)),
    })
    try:
        with urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {"detail": raw[:200].decode(errors="replace"), "html": True}
    except (URLError, OSError) as exc:
        return 0, {"detail": str(exc)}


class Run:
    def __init__(self, scenario: str, calls: int, log_dir: Path, after_s: float, busy_s: float = 30.0,
                 hipaa: bool = False):
        self.scenario = scenario
        self.hipaa = hipaa
        self.busy_s = busy_s
        self.n = calls
        self.after_s = after_s
        self.log_dir = log_dir
        self.answers: list[tuple[int, dict]] = []
        self.lock = threading.Lock()
        self.key = ""
        self.external_ids: list[str] = []
        self.worker_restarts = 0

    # --- set-up -----------------------------------------------------------------

    def setup(self):
        self.redis = Redis(self.log_dir)
        db_name = f"myrobot_fault_{self.scenario.replace('-', '_')}{'_hipaa' if self.hipaa else ''}_{os.getpid()}"
        self.db_url = f"{_pg_base()}/{db_name}"
        cfg = Config(False, self.db_url, self.redis.url, "", log_dir=self.log_dir, quiet=True)
        self.cfg = cfg
        run_env = dict(RUN_ENV)
        if self.scenario.startswith("capacity-429"):
            run_env.update(CALL_CAPACITY_BACKOFF_S="1", CALL_CAPACITY_BACKOFF_MAX_S="3",
                           CALL_CAPACITY_WAIT_S="10" if self.scenario.endswith("too-long") else "600")
        if self.hipaa:
            run_env["DAILY_HIPAA_MODE"] = "1"
        self.run_env = run_env
        os.environ.update(run_env)
        setup_django(cfg)
        self._seed()
        latency = 1500 if self.scenario.startswith("worker-") else 40
        self.fakes = Fakes(cfg, daily_latency_ms=latency, hipaa=self.hipaa)
        self.stack = Stack(cfg, self.fakes, extra_env=dict(self.run_env)).start()
        self.dispatcher = self._dispatcher()

    def _dispatcher(self) -> Proc:
        proc = Proc(f"dispatcher-{time.monotonic_ns()}", [PY, "manage.py", "dispatch_calls", "--loop", "--interval", "0.5"],
                    self.stack.env, self.log_dir)
        proc.wait_for(lambda: "Dispatching calls" in proc.output(), 30, "its first line")
        return proc

    def _seed(self):
        import datetime as dt

        from organizations.models import ApiKey, Organization, Workflow
        from patients.models import Patient

        org = Organization.objects.create(slug=f"fault-{uuid.uuid4().hex[:8]}", name="Fault Clinic",
                                          max_concurrent_calls=1000)
        Workflow.objects.create(
            organization=org, slug="reminder", name="Reminder", direction="dial_out",
            instructions="Remind the patient.", first_message="Hello.",
            window_start=dt.time(0, 0), window_end=dt.time.max, window_days=[1, 2, 3, 4, 5, 6, 7],
        )
        for i in range(self.n * 3):
            ext = f"F-{i}"
            Patient.objects.create(organization=org, external_id=ext, first_name="Pat", last_name=f"Ient{i}",
                                   phone=f"+1415556{i:04d}")
            self.external_ids.append(ext)
        _key, self.key = ApiKey.generate(org, name="faults")
        from django.db import connections

        connections.close_all()

    # --- load ---------------------------------------------------------------------

    def place(self, external_ids: list[str], *, retry_unavailable: bool = True) -> None:
        """Place calls, as an EHR would: a 503 (a dependency down) is retried with the same Idempotency-Key."""

        def one(ext: str):
            body = {"workflow": "reminder", "external_id": ext}
            for _ in range(20):
                status, answer = _api(self.stack.url + "/api/start-call", self.key, body)
                if status in (503, 0) and retry_unavailable:
                    time.sleep(0.5)
                    continue
                break
            with self.lock:
                self.answers.append((status, answer))

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(one, external_ids))

    def starts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.fakes.requests("runner")[1]:
            if r["method"] == "POST" and r["path"] == "/start" and r.get("session_id") and r.get("status") == 200:
                counts[r["session_id"]] = counts.get(r["session_id"], 0) + 1
        return counts

    def accepted(self) -> list[str]:
        return [a["session_id"] for s, a in self.answers if s == 202 and a.get("session_id")]

    def settled(self) -> bool:
        from django.db import connections

        from calls.models import CallSession

        starts = self.starts()
        try:
            failed = set(str(pk) for pk in CallSession.objects.filter(
                pk__in=self.accepted(), status="failed").values_list("pk", flat=True))
        finally:
            connections.close_all()
        return all(s in starts or s in failed for s in set(self.accepted()))

    def wait_settled(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.settled():
                    return
            except Exception:  # noqa: BLE001 - the database may be restarting
                pass
            time.sleep(0.5)

    # --- the faults ---------------------------------------------------------------

    def wait_rooms(self, at_least: int, timeout: float = 30) -> None:
        """Sentinel: Daily has been asked for this many rooms (starts are in flight)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rooms = [r for r in self.fakes.requests("daily")[1] if r["method"] == "POST" and r["path"] == "/rooms"]
            if len(rooms) >= at_least:
                return
            time.sleep(0.05)
        raise RuntimeError(f"Daily never saw {at_least} room requests")

    def kill_worker(self, sig: int) -> None:
        worker = self.stack.worker
        os.killpg(worker.popen.pid, sig)
        try:
            worker.popen.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.popen.pid, signal.SIGKILL)
            worker.popen.wait(5)
        self.stack.procs.remove(worker)
        self.stack._start_worker()
        self.stack.worker.wait_for(lambda: "ready." in self.stack.worker.output(), 60, "'ready.'")

    def restart_worker_if_it_exited(self) -> None:
        """What the process supervisor does in production (docs/operations-faults.md):
        Celery's thread pool can exit on a broker connection lost mid-ack
        ("Unrecoverable error" in kombu); the restarted worker takes the queue over."""
        worker = self.stack.worker
        if worker.popen.poll() is None:
            return
        self.worker_restarts += 1
        self.stack.procs.remove(worker)
        self.stack._start_worker()
        self.stack.worker.wait_for(lambda: "ready." in self.stack.worker.output(), 60, "'ready.'")

    def terminate_backends(self) -> int:
        import psycopg

        db = self.db_url.rsplit("/", 1)[1]
        with psycopg.connect(f"{_pg_base()}/postgres", autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (db,),
            ).fetchall()
        return len(rows)

    def execute(self) -> dict:
        ids = self.external_ids
        n = self.n
        if self.scenario in ("worker-sigkill", "worker-sigterm"):
            placing = threading.Thread(target=self.place, args=(ids[:n],))
            placing.start()
            self.wait_rooms(max(2, n // 2))
            self.kill_worker(signal.SIGKILL if self.scenario == "worker-sigkill" else signal.SIGTERM)
            placing.join()
        elif self.scenario == "postgres-terminate":
            self.place(ids[: n // 2])
            self.terminated = self.terminate_backends()
            self.place(ids[n // 2 : n])
            time.sleep(self.after_s)  # "calls placed N s after" the outage
            self.place(ids[n : n + n // 2])
        elif self.scenario.startswith("capacity-429"):
            http_post(f"{self.fakes.runner_url}/_bench/busy?seconds={self.busy_s}")
            self.place(ids[:n])
        elif self.scenario == "redis-stop":
            placing = threading.Thread(target=lambda: [self.place([e]) or time.sleep(0.3) for e in ids[:n]])
            placing.start()
            time.sleep(1.0)
            self.redis.stop()
            time.sleep(5.0)
            self.redis.start()
            placing.join()
            self.restart_worker_if_it_exited()
        self.wait_settled(90)
        return self.report()

    def report(self) -> dict:
        from django.db import connections

        from calls.models import CallSession

        accepted = set(self.accepted())
        starts = self.starts()
        finals = {}
        failed_reasons = {}
        for pk, status, error in CallSession.objects.filter(pk__in=accepted).values_list("pk", "status", "error"):
            finals[status] = finals.get(status, 0) + 1
            if status == "failed":
                failed_reasons[str(pk)] = error
        from calls.models import CallEvent

        redispatched = CallEvent.objects.filter(call_id__in=accepted, kind="start_redispatched").count()
        orphans_deleted, unheld = self.sweep_orphans(accepted)
        enqueue_failed = CallEvent.objects.filter(call_id__in=accepted, kind="start_enqueue_failed").count()
        connections.close_all()
        started_once = sum(1 for s in accepted if starts.get(s) == 1)
        started_twice = sum(1 for s in accepted if starts.get(s, 0) > 1)
        failed = sum(1 for s in accepted if s in failed_reasons and s not in starts)
        other = {}
        for status, answer in self.answers:
            if status != 202:
                other[str(status)] = other.get(str(status), 0) + 1
        rooms_made = sum(1 for r in self.fakes.requests("daily")[1]
                         if r["method"] == "POST" and r["path"] == "/rooms" and r.get("status") == 200)
        return {
            "scenario": self.scenario,
            "hipaa": self.hipaa,
            "rooms_made": rooms_made,
            "orphan_rooms_deleted": orphans_deleted,
            "rooms_no_call_holds": unheld,
            "accepted": len(accepted),
            "started_once": started_once,
            "started_twice": started_twice,
            "failed": failed,
            "lost": len(accepted) - started_once - started_twice - failed,
            "final": finals,
            "refused": other,
            "html_answers": sum(1 for _s, a in self.answers if a.get("html")),
            "failed_reasons": sorted(set(failed_reasons.values())),
            "handed_again": redispatched,
            "runner_429": sum(1 for r in self.fakes.requests("runner")[1] if r.get("status") == 429),
            "enqueue_failed": enqueue_failed,
            "worker_restarts": self.worker_restarts,
        }

    def sweep_orphans(self, accepted) -> tuple[int, int]:
        """HIPAA mode: the reaper's orphan sweep once the starts are over (what it
        does every minute after DAILY_ORPHAN_ROOM_AFTER_S), then how many rooms no
        call holds: rooms a killed worker made but never named must not stay."""
        if not self.hipaa:
            return 0, 0
        from django.conf import settings

        from calls.models import CallSession
        from calls.reaper import delete_orphan_rooms

        settings.DAILY_API_URL = self.fakes.daily_api_url
        settings.DAILY_API_KEY = self.fakes.daily_api_key
        settings.DAILY_HIPAA_MODE = True
        settings.DAILY_ORPHAN_ROOM_AFTER_S = 0
        deleted = delete_orphan_rooms()
        held = set(CallSession.objects.exclude(daily_room_name="").values_list("daily_room_name", flat=True))
        status, body = http_get(f"{self.fakes.daily_url}/_bench/rooms")
        rooms = set(json.loads(body)["rooms"])
        return deleted, len(rooms - held)

    def teardown(self) -> None:
        for part in ("dispatcher",):
            proc = getattr(self, part, None)
            if proc is not None:
                proc.stop()
        if getattr(self, "stack", None):
            self.stack.stop()
        if getattr(self, "fakes", None):
            self.fakes.stop()
        self.redis.stop()
        try:
            import psycopg

            db = self.db_url.rsplit("/", 1)[1]
            with psycopg.connect(f"{_pg_base()}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        except Exception:  # noqa: BLE001
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--after", type=float, default=40.0,
                        help="postgres-terminate: seconds after the outage to place the last calls (default 40)")
    parser.add_argument("--busy", type=float, default=30.0,
                        help="capacity-429*: seconds the bot runner answers 429 (default 30)")
    parser.add_argument("--hipaa", action="store_true",
                        help="Daily's HIPAA mode: the fake names rooms at random, the server sets DAILY_HIPAA_MODE")
    parser.add_argument("--log-dir", default=str(OUT / "faults"))
    args = parser.parse_args(argv)
    log_dir = Path(args.log_dir) / (args.scenario + ("-hipaa" if args.hipaa else ""))
    run = Run(args.scenario, args.calls, log_dir, args.after, args.busy, hipaa=args.hipaa)
    try:
        run.setup()
        result = run.execute()
    finally:
        run.teardown()
    print(json.dumps(result))
    ok = (result["started_twice"] == 0 and result["lost"] == 0 and result["accepted"] > 0
          and result["rooms_no_call_holds"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
