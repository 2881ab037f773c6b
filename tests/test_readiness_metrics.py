"""/readyz (database, Redis, a worker per queue, beat, backlogs) and /metrics (Prometheus)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from calls.models import CallStatus
from calls.state import transition
from tests import factories
from tests import live
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

TOKEN = "scrape-token-for-tests-0123456789"


def _samples(response):
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


@pytest.mark.django_db
def test_readyz_embedded_reports_the_backlog(client, settings):
    settings.REDIS_URL = ""
    org = factories.make_org()
    workflow = factories.make_workflow(org)
    factories.make_call(org, workflow, factories.make_patient(org))  # queued

    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["checks"]["database"] == "ok"
    assert body["checks"]["worker"].startswith("embedded")
    assert body["backlog"] == {"queued_calls": 1, "undelivered_webhooks": 0}


@pytest.mark.django_db
def test_readyz_says_503_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("error")


@pytest.mark.django_db
def test_metrics_are_off_without_a_token_and_refused_with_a_wrong_one(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401


@pytest.mark.django_db
def test_metrics_count_calls_start_latency_and_webhook_failures(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.REDIS_URL = ""
    org = factories.make_org()
    workflow = factories.make_workflow(org)
    patient = factories.make_patient(org)
    now = timezone.now()
    for started_after in (2, 4, 40):
        call = factories.make_call(org, workflow, patient, status=CallStatus.IN_PROGRESS,
                                   queued_at=now - timedelta(seconds=started_after), bot_started_at=now)
        transition(call.pk, CallStatus.COMPLETED, reason="completed")
    failed = factories.make_call(org, workflow, patient, status=CallStatus.STARTING)
    transition(failed.pk, CallStatus.FAILED, reason="start_failed", error="no runner")
    factories.make_call(org, workflow, patient)  # queued
    endpoint = WebhookEndpoint.objects.create(organization=org, url="https://hooks.example.com/x", events=["call.ended"])
    WebhookDelivery.objects.all().delete()
    WebhookDelivery.objects.create(organization=org, endpoint=endpoint, event_type="call.ended", event_key="a", attempts=3,
                                   status=DeliveryStatus.FAILED)
    WebhookDelivery.objects.create(organization=org, endpoint=endpoint, event_type="call.ended", event_key="b", attempts=2,
                                   status=DeliveryStatus.DELIVERED)

    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    got = _samples(response)
    assert got[("myrobot_calls_placed_total", (("direction", "dial_out"),))] == 5
    assert got[("myrobot_calls_ended_total", (("status", "completed"),))] == 3
    assert got[("myrobot_calls_ended_total", (("status", "failed"),))] == 1
    assert got[("myrobot_calls_active", (("status", "queued"),))] == 1
    assert got[("myrobot_call_start_seconds_bucket", (("le", "3.0"),))] == 1
    assert got[("myrobot_call_start_seconds_bucket", (("le", "5.0"),))] == 2
    assert got[("myrobot_call_start_seconds_bucket", (("le", "+Inf"),))] == 3
    assert got[("myrobot_call_start_seconds_count", ())] == 3
    assert got[("myrobot_call_start_seconds_sum", ())] == pytest.approx(46, abs=0.1)
    assert got[("myrobot_webhook_deliveries", (("status", "failed"),))] == 1
    assert got[("myrobot_webhook_failed_attempts_total", ())] == 4  # 3 failed + 1 before the delivered one
    assert not any(patient.last_name in line for line in response.content.decode().splitlines())


# --- with a real worker and beat on Redis ------------------------------------------


def _beat(tmp_path, queue):
    env = dict(os.environ, DATABASE_URL=live.test_database_url(), CELERY_QUEUE=queue)
    env.pop("TEST_DATABASE_NAME", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "myrobot", "beat", "-s", str(tmp_path / "beat-schedule"),
         "--loglevel=INFO"],
        cwd=live.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return proc


def _wait_for(client, check, value_prefix, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get("/readyz").json()
        if body["checks"].get(check, "").startswith(value_prefix):
            return body
        time.sleep(0.2)  # waiting for the sentinel: the heartbeat in Redis
    raise AssertionError(body)


@pytest.mark.worker
def test_readyz_needs_a_worker_on_every_queue_and_beat(client, settings, tmp_path, plain_celery_worker):
    settings.CELERY_TASK_DEFAULT_QUEUE = plain_celery_worker.queue_name
    body = _wait_for(client, "worker", "ok")
    assert body["checks"]["beat"] == "error: no live beat"
    assert client.get("/readyz").status_code == 503
    assert set(body["backlog"]["queues"]) == {plain_celery_worker.queue_name, settings.WEBHOOK_QUEUE}

    beat = _beat(tmp_path, plain_celery_worker.queue_name)
    try:
        body = _wait_for(client, "beat", "ok")
        assert client.get("/readyz").status_code == 200
    finally:
        beat.terminate()
        beat.wait(10)
    _wait_for(client, "beat", "error")  # a stopped beat leaves at once

    settings.WEBHOOK_QUEUE = "webhooks-nobody-consumes"
    body = client.get("/readyz").json()
    assert body["checks"]["worker"] == "error: no live worker consumes webhooks-nobody-consumes"


@pytest.mark.worker
def test_metrics_report_queue_depths_and_live_processes(client, settings, plain_celery_worker):
    settings.METRICS_TOKEN = TOKEN
    settings.CELERY_TASK_DEFAULT_QUEUE = plain_celery_worker.queue_name
    _wait_for(client, "worker", "ok")
    got = _samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))
    assert got[("myrobot_queue_depth", (("queue", plain_celery_worker.queue_name),))] == 0
    assert got[("myrobot_live_processes", (("kind", "worker"),))] == 1
