from django.conf import settings
from django.db import connection
from django.http import JsonResponse


def healthz(request):
    """Liveness for load balancers: the database answers (and Redis, when configured)."""
    checks = {}
    ok = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        ok = False
        checks["database"] = f"error: {exc.__class__.__name__}"
    if settings.REDIS_URL:
        try:
            import redis

            client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
            client.ping()
            client.close()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            ok = False
            checks["redis"] = f"error: {exc.__class__.__name__}"
    return JsonResponse({"status": "ok" if ok else "error", "checks": checks}, status=200 if ok else 503)
