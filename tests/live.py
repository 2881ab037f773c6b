"""Live servers for tests that need real sockets: daphne (ASGI) and a Celery worker.

Pitfalls handled: the forked daphne child re-creates asgiref's
single-thread executor and uses the test database's name; the worker subprocess
is pointed at the test database through DATABASE_URL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _drop_connections_before_fork():
    """A forked child must not share the parent's database sockets (or pool):
    two processes on one PostgreSQL connection corrupt each other's results."""
    from django.db import connections

    for conn in connections.all():
        conn.close()
        if hasattr(conn, "close_pool"):
            conn.close_pool()


def _child_setup():
    """Runs in the forked daphne process before it serves."""
    import asgiref.sync
    from django.conf import settings
    from django.db import connections

    asgiref.sync.SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)
    db = settings.DATABASES["default"]
    db["NAME"] = db["TEST"]["NAME"]
    connections["default"].settings_dict["NAME"] = db["NAME"]
    # A shared HTTP loop from the parent does not survive fork; background.py resets itself.


class LiveASGIServer:
    def __init__(self, port: int):
        self.port = port
        self.host = "127.0.0.1"
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"


def _make_app():
    from channels.routing import get_default_application
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    return ASGIStaticFilesHandler(get_default_application())


@pytest.fixture
def live_server_port(settings) -> int:
    """The live server's port, chosen before any child process starts, so the
    daphne child and a worker both hand bots the right PUBLIC_BASE_URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.PUBLIC_BASE_URL = f"http://127.0.0.1:{port}"
    return port


@pytest.fixture
def asgi_live_server(request, transactional_db, settings, live_server_port):
    """daphne serving myrobot.asgi on a free port, on the test database.

    Request the fakes (and change settings) *before* this fixture: the child
    process is forked with the settings of that moment. A `celery_worker` in
    the same test is started first, so the child enqueues to it instead of
    running tasks inline.
    """
    from daphne.testing import DaphneProcess

    for worker in ("celery_worker", "plain_celery_worker"):
        if worker in request.fixturenames:
            request.getfixturevalue(worker)
    port = live_server_port
    _drop_connections_before_fork()
    process = DaphneProcess(host="127.0.0.1", get_application=_make_app, setup=_child_setup, port=port)
    process.start()
    deadline = time.monotonic() + 20
    while not process.ready.wait(timeout=0.5):
        if not process.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("daphne did not start")
    server = LiveASGIServer(process.port.value)
    try:
        yield server
    finally:
        process.terminate()
        process.join(5)


def test_database_url() -> str:
    """A DATABASE_URL for subprocesses that points at the test database."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    name = db["TEST"].get("NAME") or db["NAME"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{name}"
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{name}"


@pytest.fixture
def celery_worker(transactional_db, settings, live_server_port):
    """A real Celery worker subprocess on Redis and the test database (needs REDIS_URL)."""
    yield from _worker(settings, plain=False)


@pytest.fixture
def plain_celery_worker(transactional_db, settings, live_server_port):
    """A worker started as an operator would, without ``-Q``: its queues are the
    settings' (``CELERY_QUEUE`` and ``WEBHOOK_QUEUE``, unique to this test)."""
    yield from _worker(settings, plain=True)


def _worker(settings, *, plain: bool):
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs REDIS_URL: a real worker runs only with a broker")
    from myrobot.celery import app

    env = dict(os.environ)
    env["DATABASE_URL"] = test_database_url()
    env.pop("TEST_DATABASE_NAME", None)
    for name in (
        "DAILY_API_URL", "DAILY_API_KEY", "DAILY_MEETING_TOKEN_MODE", "ENV", "LOCAL_SERVER_URL",
        "PIPECAT_API_URL", "PIPECAT_API_KEY", "PIPECAT_AGENT_NAME", "PUBLIC_BASE_URL", "SECRET_KEY",
        "BOTRUNNER_START_TIMEOUT_S", "STALE_START_AFTER_S", "STALE_MARGIN_S",
        "DISPATCH_INTERVAL_S", "DISPATCH_LOST_START_AFTER_S", "CALL_CAPACITY_BACKOFF_S",
        "CALL_CAPACITY_BACKOFF_MAX_S", "CALL_CAPACITY_WAIT_S",
    ):
        env[name] = str(getattr(settings, name))
    env["WEBHOOK_ALLOW_LOOPBACK"] = "1" if settings.WEBHOOK_ALLOW_LOOPBACK else "0"
    if str(settings.ENV).lower() == "production":
        # A production worker refuses the development key: this process encrypts with a
        # real one from now on (and still reads what it wrote before with the old one).
        from cryptography.fernet import Fernet  # tests only

        settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.FIELD_ENCRYPTION_KEYS]
    env["FIELD_ENCRYPTION_KEYS"] = ",".join(settings.FIELD_ENCRYPTION_KEYS)
    queue = f"test-{os.getpid()}-{time.monotonic_ns()}"
    if plain:
        env["CELERY_QUEUE"], env["WEBHOOK_QUEUE"] = queue, f"{queue}-webhooks"
        settings.WEBHOOK_QUEUE = env["WEBHOOK_QUEUE"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "myrobot", "worker", "--loglevel=INFO",
         *([] if plain else ["-Q", queue]),
         "--concurrency=8", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    app.conf.task_always_eager = False
    old_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    lines: list[str] = []
    deadline = time.monotonic() + 30
    ready = False
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
        lines.append(line)
        if "ready." in line:
            ready = True
            break
    if not ready:
        proc.kill()
        raise RuntimeError("Celery worker did not start:\n" + "".join(lines))
    import threading

    threading.Thread(target=lambda: [lines.append(l) for l in proc.stdout], daemon=True).start()

    class Worker:
        output = lines
        queue_name = queue  # its default queue (with -Q the only one: route extra queues here in a test)
        process = proc  # a test may kill it

    try:
        yield Worker
    finally:
        app.conf.task_default_queue = old_queue
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
