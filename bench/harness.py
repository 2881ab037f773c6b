"""What every benchmark shares: configuration, processes, load, statistics, output.

The benchmarks start the project the way it runs in production on one
machine: ``daphne myrobot.asgi:application`` and ``celery -A myrobot worker``
as subprocesses, PostgreSQL and Redis from ``DATABASE_URL`` / ``REDIS_URL``.
With ``--embedded`` they use the embedded defaults instead (SQLite, eager
Celery, in-memory channel layer): one daphne process and nothing else.

Databases: the benchmarks write (organisations, 100,000 calls), so they never
use the database ``DATABASE_URL`` names. They use ``--database-url`` or
``BENCH_DATABASE_URL`` when given, else the server of ``DATABASE_URL`` (or
``postgres://postgres@127.0.0.1:5432``) with the database ``myrobot_bench``,
created and migrated on first use. Redis: ``--redis-url`` or
``BENCH_REDIS_URL``, else ``REDIS_URL``'s server (or ``127.0.0.1:6379``) with
logical database 14, so a benchmark's worker never takes the tasks of a test
run on the same Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

import psutil

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PY = sys.executable

DEFAULT_PG_SERVER = "postgres://postgres@127.0.0.1:5432"
DEFAULT_REDIS_SERVER = "redis://127.0.0.1:6379"
BENCH_DB_NAME = "myrobot_bench"
BENCH_REDIS_DB = 14

# Settings a user sets that must not leak from the caller's shell into the stack.
_STACK_VARS = (
    "DATABASE_URL", "REDIS_URL", "SQLITE_PATH", "TEST_DATABASE_NAME", "DAILY_API_URL", "DAILY_API_KEY",
    "DAILY_MEETING_TOKEN_MODE", "ENV", "LOCAL_SERVER_URL", "PIPECAT_API_URL", "PIPECAT_API_KEY",
    "PIPECAT_AGENT_NAME", "PUBLIC_BASE_URL", "DEBUG",
)


# --- configuration --------------------------------------------------------------


@dataclass
class Config:
    embedded: bool
    database_url: str  # "" when embedded
    redis_url: str  # "" when embedded
    sqlite_path: str  # only when embedded
    server: str = "daphne"
    server_workers: int = 1
    worker_args: list[str] = field(default_factory=list)
    log_dir: Path = OUT / "logs"
    quiet: bool = False
    profile: str = ""  # "", "active", "cpu" or "wall" (see --profile)
    trace: str = ""  # a file for bench/trace.py's timestamps ("" = no trace)
    worker: bool = True
    isolate: str = ""

    @property
    def label(self) -> str:
        if self.embedded:
            return "embedded (SQLite, eager Celery, in-memory layer)"
        srv = self.server if self.server_workers == 1 else f"{self.server} x{self.server_workers}"
        return f"{srv} + celery worker, PostgreSQL + Redis"

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "embedded" if self.embedded else "production",
            "database": _redact(self.database_url) if self.database_url else f"sqlite:{self.sqlite_path}",
            "redis": self.redis_url or None,
            "server": self.server,
            "server_workers": self.server_workers,
            "worker_args": self.worker_args,
        }


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=path, query="", fragment=""))


def default_database_url() -> str:
    if os.environ.get("BENCH_DATABASE_URL"):
        return os.environ["BENCH_DATABASE_URL"]
    base = os.environ.get("DATABASE_URL", "")
    if base.startswith(("postgres://", "postgresql://")):
        return _with_path(base, "/" + BENCH_DB_NAME)
    return f"{DEFAULT_PG_SERVER}/{BENCH_DB_NAME}"


def default_redis_url() -> str:
    if os.environ.get("BENCH_REDIS_URL"):
        return os.environ["BENCH_REDIS_URL"]
    base = os.environ.get("REDIS_URL") or DEFAULT_REDIS_SERVER
    return _with_path(base, f"/{BENCH_REDIS_DB}")


def add_stack_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("the stack under test")
    g.add_argument("--embedded", action="store_true",
                   help="embedded defaults: SQLite, eager Celery, in-memory channel layer (no worker)")
    g.add_argument("--database-url", default=None, help=f"PostgreSQL URL (default: …/{BENCH_DB_NAME}, see module doc)")
    g.add_argument("--redis-url", default=None, help=f"Redis URL (default: …/{BENCH_REDIS_DB})")
    g.add_argument("--sqlite-path", default=str(OUT / "embedded.sqlite3"), help="SQLite file for --embedded")
    g.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne",
                   help="ASGI server (daphne is what the README runs)")
    g.add_argument("--server-workers", type=int, default=1, help="server processes (uvicorn --workers)")
    g.add_argument("--worker-arg", action="append", default=[], dest="worker_args",
                   help="extra argument for `celery worker` (repeatable), e.g. --worker-arg=--concurrency=8")
    g.add_argument("--quiet", action="store_true", help="print only the result table")
    g.add_argument("--no-wait-quiet", action="store_true",
                   help="measure at once, even while other processes keep the machine busy "
                        "(by default a run waits up to 2 min for the machine to be quiet)")
    g.add_argument("--log-dir", default=str(OUT / "logs"), help="where the processes' logs go")
    g.add_argument("--isolate", default="", metavar="NAME",
                   help="own Celery queue and channel-layer prefix NAME (bench/settings.py), for runs "
                        "that share a Redis with others (the smoke tests)")
    g.add_argument("--no-worker", dest="worker", action="store_false",
                   help="diagnosis: start no Celery worker (starts stay queued; only the server is measured)")
    g.add_argument("--profile", nargs="?", const="active", default="", choices=["active", "cpu", "wall"],
                   help="sample the server and worker with py-spy during the measured load (pip install py-spy): "
                        "'active' (default) threads not idle, 'cpu' only the thread holding the GIL, 'wall' all "
                        "threads; raw stacks (for speedscope.app) and a top-frames summary go to bench/out/profile-*")
    g.add_argument("--trace", action="store_true",
                   help="run server (daphne) and worker under bench/trace.py, which timestamps each step of the start path; "
                        "the dial-in/dial-out benchmarks then print where the hold time goes")


def config_from(args: argparse.Namespace) -> Config:
    OUT.mkdir(parents=True, exist_ok=True)
    trace = str(OUT / f"trace-{os.getpid()}.jsonl") if getattr(args, "trace", False) else ""
    common = dict(server=args.server, worker_args=list(args.worker_args), quiet=args.quiet, profile=args.profile,
                  trace=trace,
                  worker=args.worker, log_dir=Path(args.log_dir), isolate=args.isolate)
    if args.embedded:
        if args.server_workers != 1:
            raise SystemExit("--embedded runs one server process (in-memory channel layer, SQLite)")
        return Config(True, "", "", str(Path(args.sqlite_path).resolve()), **common)
    return Config(
        False,
        args.database_url or default_database_url(),
        args.redis_url or default_redis_url(),
        "",
        server_workers=args.server_workers,
        **common,
    )


def log(cfg: Config | None, *parts: Any) -> None:
    if cfg is None or not cfg.quiet:
        print("·", *parts, file=sys.stderr, flush=True)


# --- database -------------------------------------------------------------------


def ensure_postgres_database(url: str) -> None:
    """Create the database named in ``url`` when it does not exist."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        raise SystemExit(f"{_redact(url)} names no database")
    admin = _with_path(url, "/postgres")
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        raise SystemExit(
            f"PostgreSQL at {_redact(admin)} is not reachable ({exc}).\n"
            "Start it, give --database-url, or run with --embedded (SQLite)."
        ) from exc


def check_redis(url: str) -> None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001
        raise SystemExit(f"Redis at {url} is not reachable ({exc}). Give --redis-url or use --embedded.") from exc


def stack_env(cfg: Config, **extra: str) -> dict[str, str]:
    """The environment of every process of the stack (and of this one)."""
    env = {k: v for k, v in os.environ.items() if k not in _STACK_VARS}
    env["DJANGO_SETTINGS_MODULE"] = "bench.settings" if cfg.isolate else "myrobot.settings"
    env["PYTHONUNBUFFERED"] = "1"
    if cfg.isolate:
        env["BENCH_QUEUE"] = cfg.isolate
    if cfg.embedded:
        env["SQLITE_PATH"] = cfg.sqlite_path
    else:
        env["DATABASE_URL"] = cfg.database_url
        env["REDIS_URL"] = cfg.redis_url
    env.setdefault("SECRET_KEY", "bench-secret-key-not-for-production-0123456789")
    env.update(extra)
    return env


def setup_django(cfg: Config, migrate: bool = True) -> None:
    """Configure this process's Django on the benchmark database (and migrate it)."""
    if not cfg.embedded:
        ensure_postgres_database(cfg.database_url)
        check_redis(cfg.redis_url)
    for key in _STACK_VARS:
        os.environ.pop(key, None)
    os.environ.update({k: v for k, v in stack_env(cfg).items() if k in _STACK_VARS or k in (
        "DJANGO_SETTINGS_MODULE", "SECRET_KEY")})
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
    from django.db import connections

    connections.close_all()


# --- processes ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post(url: str, data: dict | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=json.dumps(data or {}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Proc:
    """A subprocess with its output in a log file, stopped with its process group."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path, stdin=None) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.cmd = cmd
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.popen = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=stdin if stdin is not None else subprocess.DEVNULL, start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}) before {what}:\n{self.tail()}")
            try:
                if check():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: no {what} after {timeout:.0f} s:\n{self.tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)
        self._log.close()


class Fakes:
    """``bench.fakes`` in its own process: Daily (with latency) and the runner."""

    def __init__(self, cfg: Config, daily_latency_ms: float, env: dict[str, str] | None = None,
                 hipaa: bool = False) -> None:
        env = dict(env or os.environ)
        env["PYTHONPATH"] = str(ROOT)
        self.proc = Proc("fakes", [PY, "-m", "bench.fakes", "--daily-latency-ms", str(daily_latency_ms)]
                         + (["--hipaa"] if hipaa else []), env, cfg.log_dir, stdin=subprocess.PIPE)
        info: dict[str, Any] = {}

        def ready() -> bool:
            first = self.proc.output().splitlines()
            for line in first:
                if line.startswith("{"):
                    info.update(json.loads(line))
                    return True
            return False

        self.proc.wait_for(ready, 20, "its URLs")
        self.daily_url: str = info["daily_url"]
        self.daily_api_url: str = info["daily_api_url"]
        self.daily_api_key: str = info["daily_api_key"]
        self.runner_url: str = info["runner_url"]

    def requests(self, which: str, since: int = 0) -> tuple[int, list[dict]]:
        base = self.daily_url if which == "daily" else self.runner_url
        status, body = http_get(f"{base}/_bench/requests?since={since}", timeout=30)
        data = json.loads(body)
        return data["total"], data["requests"]

    def reset(self) -> None:
        http_post(f"{self.daily_url}/_bench/reset")
        http_post(f"{self.runner_url}/_bench/reset")

    def route_counts(self, which: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.requests(which)[1]:
            path = r["path"]
            if path.startswith("/rooms/"):
                path = "/rooms/:name"
            key = f"{r['method']} {path}"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def stop(self) -> None:
        try:
            if self.proc.popen.stdin:
                self.proc.popen.stdin.close()
            self.proc.popen.wait(5)
        except Exception:  # noqa: BLE001
            pass
        self.proc.stop()


class Stack:
    """The project as it runs in production on one machine (or embedded)."""

    def __init__(self, cfg: Config, fakes: Fakes, *, worker: bool = True, extra_env: dict[str, str] | None = None):
        self.cfg = cfg
        self.fakes = fakes
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.env = stack_env(
            cfg,
            DAILY_API_URL=fakes.daily_api_url,
            DAILY_API_KEY=fakes.daily_api_key,
            DAILY_MEETING_TOKEN_MODE="local",
            ENV="development",
            LOCAL_SERVER_URL=fakes.runner_url,
            PUBLIC_BASE_URL=self.url,
            DEBUG="0",
            **(extra_env or {}),
        )
        self.procs: list[Proc] = []
        self.want_worker = worker and cfg.worker and not cfg.embedded

    def start(self) -> "Stack":
        try:
            if self.want_worker:
                self._start_worker()
            self._start_server()
            if self.want_worker:
                self.worker.wait_for(lambda: "ready." in self.worker.output(), 60, "'ready.'")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_server(self) -> None:
        wrap = self._wrap()
        if self.cfg.server == "daphne":
            cmd = [PY, wrap, "daphne"] if wrap else [PY, "-m", "daphne"]
            cmd += [ "-b", "127.0.0.1", "-p", str(self.port), "myrobot.asgi:application"]
        else:
            cmd = [PY, "-m", "uvicorn", "myrobot.asgi:application", "--host", "127.0.0.1", "--port",
                   str(self.port), "--workers", str(self.cfg.server_workers), "--no-access-log",
                   "--lifespan", "off"]
        self.server = Proc("server", cmd, self.env, self.cfg.log_dir)
        self.procs.append(self.server)
        self.server.wait_for(lambda: http_get(self.url + "/healthz")[0] == 200, 60, "healthy /healthz")

    def _wrap(self) -> str | None:
        """A script that patches the process and runs the module (``--trace``)."""
        if self.cfg.trace:
            self.env["BENCH_TRACE"] = self.cfg.trace
            return str(ROOT / "bench" / "trace.py")
        return os.environ.get("BENCH_WRAP") or None  # diagnosis: any such script

    def _start_worker(self) -> None:
        wrap = self._wrap()
        cmd = ([PY, wrap, "celery"] if wrap else [PY, "-m", "celery"]) + [
            "-A", "myrobot", "worker", "--loglevel=INFO", *self.cfg.worker_args]
        self.worker = Proc("worker", cmd, self.env, self.cfg.log_dir)
        self.procs.append(self.worker)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class ReferenceRunner:
    """Pipecat's development runner (``pipecat.runner.run``) with ``bench/reference_bot.py``."""

    def __init__(self, cfg: Config, fakes: Fakes) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.entries_path = cfg.log_dir / f"reference-bot-{self.port}.jsonl"
        self.entries_path.parent.mkdir(parents=True, exist_ok=True)
        self.entries_path.write_text("")
        env = {k: v for k, v in os.environ.items() if k not in _STACK_VARS}
        env.update(
            DAILY_API_URL=fakes.daily_api_url,
            DAILY_API_KEY=fakes.daily_api_key,
            BENCH_REFERENCE_LOG=str(self.entries_path),
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
        )
        self.proc = Proc(
            "reference-runner",
            [PY, "-m", "bench.reference_bot", "--host", "127.0.0.1", "--port", str(self.port), "-t", "daily",
             "--dialin"],
            env, cfg.log_dir,
        )
        self.proc.wait_for(lambda: http_get(self.url + "/status")[0] == 200, 90, "GET /status")

    def entries(self) -> list[dict]:
        out = []
        for line in self.entries_path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def stop(self) -> None:
        self.proc.stop()


class Profiler:
    """py-spy on the stack's processes while a block runs (``with Profiler(stack, "dialin"):``).

    Writes ``bench/out/profile-<name>-<process>.speedscope.json`` (open it in
    speedscope.app: its "left heavy" and "sandwich" views list the frames most
    often on the stack and on top).
    """

    def __init__(self, stack: "Stack | None", name: str, rate: int = 250) -> None:
        self.enabled = bool(stack is not None and stack.cfg.profile)
        self.stack = stack
        self.name = name
        self.rate = rate
        self.spies: list[tuple[subprocess.Popen, Path]] = []
        self.reports: list[Path] = []

    def __enter__(self) -> "Profiler":
        if not self.enabled:
            return self
        import shutil

        spy = shutil.which("py-spy") or str(Path(PY).with_name("py-spy"))
        if not Path(spy).exists():
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        assert self.stack is not None
        for proc in self.stack.procs:
            out = OUT / f"profile-{self.name}-{proc.name}.speedscope.json"
            cmd = [spy, "record", "-p", str(proc.popen.pid), "-r", str(self.rate), "-f", "speedscope",
                   "-o", str(out), "--nonblocking", "-s"]
            if self.stack.cfg.profile == "cpu":
                cmd.append("--gil")
            elif self.stack.cfg.profile == "wall":
                cmd.append("--idle")
            self.spies.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out))
        time.sleep(1.0)  # py-spy attaches
        return self

    def __exit__(self, *exc: Any) -> None:
        for popen, _out in self.spies:
            popen.send_signal(signal.SIGINT)
        for popen, out in self.spies:
            try:
                popen.wait(30)
            except subprocess.TimeoutExpired:
                popen.kill()
            if out.exists():
                self.reports.append(out)


class CpuMeter:
    """CPU seconds used by each part of the machine while a block runs (psutil).

    Groups: the stack's processes (with their children), the fakes, PostgreSQL
    and Redis (by process name, wherever they run on this machine), this load
    generator, and ``other`` (everything else: a busy neighbour distorts a
    2-core benchmark, so the report shows it).
    """

    def __init__(self, stack: "Stack | None" = None, fakes: "Fakes | None" = None,
                 extra: dict[str, int] | None = None) -> None:
        self.groups: dict[str, list[int]] = {}
        if stack is not None:
            for proc in stack.procs:
                self.groups[proc.name] = [proc.popen.pid]
        if fakes is not None:
            self.groups["fakes"] = [fakes.proc.popen.pid]
        for name, pid in (extra or {}).items():
            self.groups[name] = [pid]
        self.result: dict[str, float] = {}
        self.wall = 0.0

    @staticmethod
    def _cpu_s(proc: psutil.Process) -> float:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            return 0.0
        return t.user + t.system

    def _tree_s(self, pid: int) -> float:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        return sum(self._cpu_s(p) for p in procs)

    def _snapshot(self) -> dict[str, float]:
        out = {name: sum(self._tree_s(pid) for pid in pids) for name, pids in self.groups.items()}
        out["loadgen"] = self._cpu_s(psutil.Process())  # this process only, not its children
        out["postgres"] = out["redis"] = 0.0
        for proc in psutil.process_iter(["name"]):
            name = proc.info["name"] or ""
            if name == "postgres":
                out["postgres"] += self._cpu_s(proc)
            elif name.startswith("redis-server"):
                out["redis"] += self._cpu_s(proc)
        return out

    def __enter__(self) -> "CpuMeter":
        self._t0 = time.monotonic()
        self._before = self._snapshot()
        self._busy0 = machine_busy_s()
        return self

    def __exit__(self, *exc: Any) -> None:
        after = self._snapshot()
        busy = machine_busy_s() - self._busy0
        self.wall = time.monotonic() - self._t0
        self.result = {k: max(0.0, after.get(k, 0.0) - v) for k, v in self._before.items()}
        self.result["other"] = max(0.0, busy - sum(self.result.values()))

    def report(self) -> dict[str, Any]:
        """{group: {"cpu_s", "cores"}} plus the total (cores = CPU s / wall s)."""
        out = {k: {"cpu_s": round(v, 2), "cores": round(v / self.wall, 2) if self.wall else None}
               for k, v in self.result.items()}
        total = sum(self.result.values())
        out["total"] = {"cpu_s": round(total, 2), "cores": round(total / self.wall, 2) if self.wall else None}
        return out


def machine_busy_s() -> float:
    """All CPUs' non-idle time so far, in seconds."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def wait_for_quiet(cfg: "Config | None", max_other_cores: float = 0.3, timeout: float = 120.0) -> float:
    """Wait (up to ``timeout``) until the machine's CPU use, ours excluded, stays
    under ``max_other_cores`` for 2 s; returns the last reading. Other sessions
    sharing the machine would otherwise distort the numbers."""
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        reading = psutil.cpu_percent(interval=2.0) / 100 * (psutil.cpu_count() or 1)
        if reading <= max_other_cores or time.monotonic() > deadline:
            return reading
        if not warned:
            log(cfg, f"machine busy ({reading:.2f} cores used by others): waiting for quiet…")
            warned = True


def cpu_line(report: dict[str, Any]) -> str:
    return "CPU (cores busy): " + ", ".join(f"{k} {v['cores']}" for k, v in report.items() if v["cpu_s"] or k == "total")


# --- load -----------------------------------------------------------------------


@dataclass
class Result:
    key: str  # what matches this request to its bot start
    sent: float  # time.monotonic() before sending
    done: float = 0.0
    status: int = 0
    body: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and 200 <= self.status < 300

    @property
    def ms(self) -> float:
        return (self.done - self.sent) * 1000


RequestFn = Callable[[Any, int], Awaitable[Result]]


async def run_load(make: RequestFn, n: int, concurrency: int, *, start_index: int = 0) -> tuple[list[Result], float]:
    """Run ``make(session, i)`` for i in range(n), ``concurrency`` at a time, on
    one aiohttp session; returns the results and the wall time in seconds."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    results: list[Result] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(start_index, start_index + n):
        queue.put_nowait(i)

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            results.append(await make(session, i))

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.monotonic()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.monotonic() - t0
    return results, wall


async def run_paced(make: RequestFn, n: int, rate: float, *, max_in_flight: int = 500,
                    start_index: int = 0) -> tuple[list[Result], float]:
    """Open loop: start ``make(session, i)`` every ``1/rate`` seconds whatever the
    answers do (no coordinated omission), at most ``max_in_flight`` at once."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max_in_flight)
    timeout = aiohttp.ClientTimeout(total=60)
    results: list[Result] = []
    sem = asyncio.Semaphore(max_in_flight)

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        async with sem:
            results.append(await make(session, i))

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.monotonic()
        tasks = []
        for k in range(n):
            due = t0 + k / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, start_index + k)))
        await asyncio.gather(*tasks)
        wall = time.monotonic() - t0
    return results, wall


async def post_json(session: Any, url: str, key: str, raw: bytes, headers: dict[str, str]) -> Result:
    """POST ``raw`` and time it; the body is parsed as JSON when it is."""
    result = Result(key=key, sent=time.monotonic())
    try:
        async with session.post(url, data=raw, headers={"Content-Type": "application/json", **headers}) as resp:
            text = await resp.text()
            result.done = time.monotonic()
            result.status = resp.status
            try:
                result.body = json.loads(text) if text else None
            except ValueError:
                result.body = text[:200]
    except Exception as exc:  # noqa: BLE001
        result.done = time.monotonic()
        result.error = f"{type(exc).__name__}: {exc}"[:200]
    return result


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


# --- statistics and output ---------------------------------------------------------


def summarize(values: Iterable[float]) -> dict[str, float | int | None]:
    data = list(values)
    if len(data) >= 2:
        # 99 cut points, interpolated between the observed values.
        cuts = statistics.quantiles(data, n=100, method="inclusive")
        p50, p95, p99 = cuts[49], cuts[94], cuts[98]
    else:
        p50 = p95 = p99 = data[0] if data else None
    return {
        "n": len(data),
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "max": max(data) if data else None,
        "mean": statistics.fmean(data) if data else None,
    }


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(columns: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (it reads fine in a terminal and pastes into RESULTS.md)."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) if cells else len(col) for i, col in enumerate(columns)]
    line = lambda items: "| " + " | ".join(str(x).ljust(w) for x, w in zip(items, widths)) + " |"  # noqa: E731
    out = [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = f"{psutil.virtual_memory().total // 1024 ** 3} GiB"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_json(name: str, data: dict[str, Any], path: str | None = None) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = Path(path) if path else OUT / f"{name}-{stamp}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
               "command": " ".join([Path(sys.executable).name, "-m", f"bench.{name}", *sys.argv[1:]]), **data}
    target.write_text(json.dumps(payload, indent=2, default=str))
    latest = OUT / f"{name}-latest.json"
    latest.write_text(target.read_text())
    return target
