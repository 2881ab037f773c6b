"""Prometheus metrics at ``/metrics``, computed from the database and Redis at scrape time.

Nothing is counted in process memory, so every web process answers the same
(however many there are, whichever the scraper reaches) and a restart loses
nothing: calls ended come from the dashboard's roll-ups (``calls.CallDay``),
the rest from indexed counts. No label carries a patient or an organisation.
Guarded by ``METRICS_TOKEN`` (docs/operations.md, "Metrics").
"""

from __future__ import annotations

import hmac
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DateTimeField, DurationField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import Coalesce
from django.http import HttpResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Seconds from the moment a call may start (queued) to its bot reporting in.
START_BUCKETS_S = (1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300)


def _calls():
    from calls.models import ACTIVE_STATUSES, CallDay, CallSession  # the project package loads before the apps are ready; models and Redis only when asked

    # Placed dial-outs are every dial-out (``dial_outs``), not only those really
    # dialled (``dialled``, the answer rate's denominator).
    ended = CallDay.objects.values("status").annotate(n=Sum("calls"), dial_outs=Sum("dial_outs"))
    placed_out = sum(row["dial_outs"] for row in ended)
    placed_in = sum(row["n"] for row in ended) - placed_out
    active = CallSession.objects.filter(status__in=ACTIVE_STATUSES).values("status", "direction").annotate(n=Count("pk"))
    for row in active:
        if row["direction"] == "dial_out":
            placed_out += row["n"]
        else:
            placed_in += row["n"]

    placed = CounterMetricFamily("myrobot_calls_placed", "Calls placed, by direction.", labels=["direction"])
    placed.add_metric(["dial_out"], placed_out)
    placed.add_metric(["dial_in"], placed_in)
    yield placed
    ended_family = CounterMetricFamily("myrobot_calls_ended", "Calls that reached a final status, by status.",
                                       labels=["status"])
    for row in ended:
        ended_family.add_metric([row["status"]], row["n"])
    yield ended_family
    now = GaugeMetricFamily("myrobot_calls_active", "Calls not yet final, by status.", labels=["status"])
    by_status: dict[str, int] = {}
    for row in active:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["n"]
    for status in sorted(ACTIVE_STATUSES):
        now.add_metric([status], by_status.get(status, 0))
    yield now
    yield _start_latency(CallSession)


def _start_latency(CallSession):
    began = Coalesce(F("queued_at"), F("created_at"), output_field=DateTimeField())
    started = CallSession.objects.filter(bot_started_at__isnull=False)
    buckets = {
        f"le_{b}": Count("pk", filter=Q(bot_started_at__lte=ExpressionWrapper(
            began + timedelta(seconds=b), output_field=DateTimeField())))
        for b in START_BUCKETS_S
    }
    row = started.aggregate(
        n=Count("pk"),
        total=Sum(ExpressionWrapper(F("bot_started_at") - began, output_field=DurationField())),
        **buckets,
    )
    family = HistogramMetricFamily(
        "myrobot_call_start_seconds", "Seconds from a call being queued to its bot reporting in.",
    )
    total = row["total"].total_seconds() if row["total"] else 0.0
    family.add_metric([], [(str(float(b)), row[f"le_{b}"]) for b in START_BUCKETS_S] + [("+Inf", row["n"])], total)
    return family


def _webhooks():
    from webhooks.models import DeliveryStatus, WebhookDelivery  # the project package loads before the apps are ready; models and Redis only when asked

    rows = dict(WebhookDelivery.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    attempts = WebhookDelivery.objects.aggregate(n=Sum("attempts"))["n"] or 0
    deliveries = GaugeMetricFamily("myrobot_webhook_deliveries", "Webhook deliveries, by status.", labels=["status"])
    for status in DeliveryStatus.values:
        deliveries.add_metric([status], rows.get(status, 0))
    yield deliveries
    failed = CounterMetricFamily(
        "myrobot_webhook_failed_attempts", "Webhook send attempts that did not deliver (errors, timeouts, non-2xx)."
    )
    failed.add_metric([], max(attempts - rows.get(DeliveryStatus.DELIVERED, 0), 0))
    yield failed


def _queues():
    from . import heartbeat  # the project package loads before the apps are ready; models and Redis only when asked
    from .health import declared_queues  # the project package loads before the apps are ready; models and Redis only when asked

    depth = GaugeMetricFamily("myrobot_queue_depth", "Tasks waiting in each Celery queue.", labels=["queue"])
    workers = GaugeMetricFamily("myrobot_live_processes", "Live Celery workers and beat (heartbeats).", labels=["kind"])
    redis_client = heartbeat.client()
    try:
        for name in declared_queues():
            depth.add_metric([name], redis_client.llen(name))
        for kind in ("worker", "beat"):
            workers.add_metric([kind], len(heartbeat.alive(redis_client, kind)))
    finally:
        redis_client.close()
    yield depth
    yield workers


class DatabaseCollector:
    """Collects every family at scrape time (prometheus-client's custom collector)."""

    def collect(self):
        yield from _calls()
        yield from _webhooks()
        if settings.REDIS_URL:
            yield from _queues()


registry = CollectorRegistry(auto_describe=False)
registry.register(DatabaseCollector())


def metrics(request):
    """The metrics, for a scraper holding ``METRICS_TOKEN``; 404 while no token is set."""
    token = settings.METRICS_TOKEN
    if not token:
        return HttpResponse("Metrics are off: set METRICS_TOKEN.\n", status=404, content_type="text/plain")
    sent = request.headers.get("Authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        response = HttpResponse("A bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = "Bearer"
        return response
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
