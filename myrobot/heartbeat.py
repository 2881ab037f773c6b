"""Heartbeats of Celery workers and beat in Redis, for the readiness endpoint.

Each worker (and beat) refreshes a key with a short expiry from a daemon thread;
a process that died, hung or lost Redis stops refreshing it and drops out of
``/readyz`` within ``TTL_S``. A worker's key names the queues it consumes, so a
queue nobody consumes is reported too.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time

from django.conf import settings

log = logging.getLogger(__name__)

PREFIX = "myrobot:heartbeat:"
EVERY_S = 10
TTL_S = 30


def client():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def start(kind: str, name: str, queues: list[str] | None = None) -> threading.Thread:
    """Refresh ``PREFIX + kind + ":" + name`` every ``EVERY_S`` seconds, for the process's life."""
    key = f"{PREFIX}{kind}:{name}"
    value = json.dumps({"queues": queues or []})

    def beat():
        redis_client = client()
        while True:
            try:
                redis_client.set(key, value, ex=TTL_S)
            except Exception as exc:  # noqa: BLE001 - Redis down: readiness says so; try again
                log.warning("heartbeat %s not written: %s", key, exc.__class__.__name__)
            time.sleep(EVERY_S)

    def forget():
        try:
            client().delete(key)
        except Exception:  # noqa: BLE001 - the key expires by itself
            pass

    thread = threading.Thread(target=beat, name=f"heartbeat-{kind}", daemon=True)
    thread.start()
    atexit.register(forget)  # a clean shutdown leaves at once, not after TTL_S
    return thread


def alive(redis_client, kind: str) -> dict[str, list[str]]:
    """Live processes of ``kind`` (``worker`` or ``beat``): name -> queues consumed."""
    found = {}
    for key in redis_client.scan_iter(match=f"{PREFIX}{kind}:*", count=100):
        raw = redis_client.get(key)
        if raw is None:
            continue
        name = key.decode()[len(PREFIX) + len(kind) + 1:]
        found[name] = json.loads(raw).get("queues", [])
    return found
