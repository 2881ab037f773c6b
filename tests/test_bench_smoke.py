"""Each benchmark of bench/ runs end to end with a tiny load, so the benchmark code keeps working.

No timing assertions: only that every run finishes, counts no errors and
writes its JSON. With DATABASE_URL and REDIS_URL set the benchmarks run as in
production (daphne + a Celery worker) on a database of their own, created and
dropped here, with their own Celery queue and channel-layer prefix on that
Redis (``--isolate``); otherwise on the embedded defaults (``--embedded``:
SQLite, eager Celery, in-memory channel layer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 120


def _production() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")) and bool(
        os.environ.get("REDIS_URL")
    )


@pytest.fixture(scope="module")
def stack_args(tmp_path_factory):
    """Arguments that point a benchmark at its own database (and queue)."""
    tmp = tmp_path_factory.mktemp("bench")
    args = ["--log-dir", str(tmp / "logs"), "--no-wait-quiet"]
    if not _production():
        yield tmp, args + ["--embedded", "--sqlite-path", str(tmp / "bench.sqlite3")]
        return
    import psycopg

    name = f"myrobot_bench_smoke_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    parts = urlsplit(os.environ["DATABASE_URL"])
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    db_url = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        yield tmp, args + ["--database-url", db_url, "--redis-url", os.environ["REDIS_URL"], "--isolate", name]
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_bench(name: str, stack_args, *extra: str) -> dict:
    tmp, args = stack_args
    out = tmp / f"{name}.json"
    env = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_NAME"}
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args, "--json", str(out), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    logs = ""
    for log in sorted((tmp / "logs").glob("*.log")):
        logs += f"\n--- {log.name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    assert proc.returncode == 0, f"bench.{name} failed:\n{proc.stdout}\n{proc.stderr}{logs}"
    assert "|" in proc.stdout  # printed its table
    data = json.loads(out.read_text())
    assert data["benchmark"] == name and data["rows"]
    return data


def test_dialin_with_the_reference_row(stack_args):
    data = run_bench("dialin", stack_args, "-n", "4", "-c", "2", "--warmup", "1", "--settle-s", "30")
    ours, ref = data["rows"]
    assert ours["label"] == "MyRobot" and ref["label"].startswith("Pipecat runner")
    for row in data["rows"]:
        assert row["errors"] == 0 and row["missing_starts"] == 0
        assert row["hold_ms"]["n"] == 4  # every start matched to its webhook
    assert ours["daily_requests"].get("POST /meeting-tokens", 0) == 0  # the token is signed locally
    assert ref["daily_requests"]["POST /meeting-tokens"] >= 4  # Pipecat's configure() asks Daily for it


def test_dialout_traced(stack_args):
    data = run_bench("dialout", stack_args, "-n", "4", "-c", "2", "--warmup", "1", "--settle-s", "30",
                     "--no-reference", "--trace")
    (row,) = data["rows"]
    assert row["errors"] == 0 and row["missing_starts"] == 0 and row["hold_ms"]["n"] == 4
    steps = {t["step"] for t in row["trace"]}  # bench/trace.py saw the start path in server and worker
    assert {"delay_out", "task_in", "room_send", "room_back", "runner"} <= steps


def test_status(stack_args):
    data = run_bench("status", stack_args, "-k", "2", "-m", "2", "-e", "4", "--rate", "0", "--settle-s", "20")
    (row,) = data["rows"]
    assert row["events_sent"] == 8 and row["lost"] == 0
    assert row["latency_ms"]["n"] == 2 * 8  # every event reached both staff sockets


def test_queries(stack_args):
    data = run_bench("queries", stack_args, "--patients", "30", "--calls", "60", "--small-patients", "3",
                     "--small-calls", "5", "--repeat", "1")
    pages = {r["page"]: r for r in data["rows"]}
    assert set(pages) == {"admin patient list", "admin call list", "GET /api/calls", "GET /api/patients", "live list",
                          "dashboard (last 30 days)", "dashboard (a year)"}
    for row in pages.values():
        assert row["small"]["status"] == 200 and row["large"]["status"] == 200
        assert row["constant"], f"{row['page']}: {row['small']['queries']} queries small, {row['large']['queries']} large"


def test_fhir(stack_args):
    data = run_bench("fhir", stack_args, "--appointments", "30", "--tool-calls", "3")
    assert data["sync"]["calls_placed"] == 30 and data["resync"]["calls_placed"] == 0
    assert data["tools"]["confirm_appointment"]["n"] == 3


def test_voice_runs_both_pipelines(stack_args):
    """bench.voice plays one turn per pipeline and latency setting through the call simulator."""
    data = run_bench("voice", stack_args, "-n", "1")
    labels = {(row["label"], row["services"]) for row in data["rows"]}
    assert len(labels) == 4
    assert all(row["turns"] == 1 and row["v2v_p50_ms"] > 0 for row in data["rows"])
