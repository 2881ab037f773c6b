"""Probes for load balancers and operators: liveness (/healthz) and readiness (/readyz)."""

from django.conf import settings
from django.db import connection
from django.http import JsonResponse


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def _redis():
    from . import heartbeat  # the project package loads before the apps are ready; models and Redis only when asked

    redis_client = heartbeat.client()
    redis_client.ping()
    return redis_client


def _error(exc: Exception) -> str:
    return f"error: {exc.__class__.__name__}"


def healthz(request):
    """Liveness for load balancers: the database answers (and Redis, when configured)."""
    checks = {}
    ok = True
    try:
        checks["database"] = _database()
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        ok = False
        checks["database"] = _error(exc)
    if settings.REDIS_URL:
        try:
            _redis().close()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            ok = False
            checks["redis"] = _error(exc)
    return JsonResponse({"status": "ok" if ok else "error", "checks": checks}, status=200 if ok else 503)


def declared_queues() -> list[str]:
    return list(dict.fromkeys([settings.CELERY_TASK_DEFAULT_QUEUE, settings.WEBHOOK_QUEUE]))


def worker_checks(redis_client) -> dict[str, str]:
    """A live worker for every declared queue, and a live beat (from their heartbeats)."""
    from . import heartbeat  # the project package loads before the apps are ready; models and Redis only when asked

    workers = heartbeat.alive(redis_client, "worker")
    consumed = {q for queues in workers.values() for q in queues}
    missing = [q for q in declared_queues() if q not in consumed]
    if not workers:
        worker = "error: no live worker"
    elif missing:
        worker = f"error: no live worker consumes {', '.join(missing)}"
    else:
        worker = f"ok: {len(workers)} live"
    beat = f"ok: {len(beats)} live" if (beats := heartbeat.alive(redis_client, "beat")) else "error: no live beat"
    return {"worker": worker, "beat": beat}


def backlog(redis_client=None) -> dict:
    """What is waiting: calls queued for a start, webhooks not yet delivered, messages per queue."""
    from calls.models import CallSession, CallStatus  # the project package loads before the apps are ready; models and Redis only when asked
    from webhooks.models import DeliveryStatus, WebhookDelivery  # the project package loads before the apps are ready; models and Redis only when asked

    waiting = {
        "queued_calls": CallSession.objects.filter(status=CallStatus.QUEUED).count(),
        "undelivered_webhooks": WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count(),
    }
    if redis_client is not None:
        waiting["queues"] = {name: redis_client.llen(name) for name in declared_queues()}
    return waiting


def readyz(request):
    """Readiness: the database, Redis, a worker on every queue and beat; 503 when any is missing.

    Without ``REDIS_URL`` tasks run inside this process, so there is no worker or
    beat to check. The backlog is reported for people, and never fails the probe.
    """
    checks, body = {}, {}
    try:
        checks["database"] = _database()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = _error(exc)
    redis_client = None
    if settings.REDIS_URL:
        try:
            redis_client = _redis()
            checks["redis"] = "ok"
            checks.update(worker_checks(redis_client))
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = _error(exc)
    else:
        checks["worker"] = checks["beat"] = "embedded: tasks run in the web process"
    ok = all(not value.startswith("error") for value in checks.values())
    body = {"status": "ok" if ok else "error", "checks": checks}
    if checks["database"] == "ok":
        try:
            body["backlog"] = backlog(redis_client)
        except Exception as exc:  # noqa: BLE001 - a report, not a check
            body["backlog"] = _error(exc)
    if redis_client is not None:
        redis_client.close()
    return JsonResponse(body, status=200 if ok else 503)
