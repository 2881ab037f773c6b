"""Webhooks out: write the outbox in the event's transaction, then deliver.

At least once (Standard Webhooks): a delivery row is written in the same
transaction as the event, sent when that transaction commits, retried with
backoff for about a day, and swept up by a periodic task if the process that
should have sent it died. Each attempt is signed anew (fresh timestamp) with
the same ``webhook-id``, so a receiver can drop duplicates.

A slow or dead endpoint delays nothing else: sends run on their own Celery
queue (``WEBHOOK_QUEUE``) with short timeouts, never inside a request or the
bot's status socket.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks import Webhook

from calls.models import CallSession

from .models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent

log = logging.getLogger(__name__)

#: seconds to wait before attempt n+1 after attempt n failed (about a day in all)
RETRY_DELAYS_S = (10, 60, 5 * 60, 30 * 60, 2 * 3600, 6 * 3600, 15 * 3600)
MAX_ATTEMPTS = len(RETRY_DELAYS_S) + 1
EXCERPT_CHARS = 200
USER_AGENT = "MyRobot-Webhooks/1.0"


# --- writing the outbox ------------------------------------------------------------


def _iso(value):
    return value.isoformat() if value else None


def call_ended_payload(call: CallSession) -> dict:
    """The `call.ended` data: ids, statuses and times — no name, phone or transcript."""
    outcome = call.outcome if isinstance(call.outcome, dict) else None
    next_at = getattr(call, "next_attempt_at", None)
    campaign_id = getattr(call, "campaign_id", None)
    return {
        "session_id": str(call.pk),
        "external_id": call.patient.external_id if call.patient_id else None,
        "workflow": call.workflow.slug,
        "direction": call.direction,
        "status": call.status,
        "end_reason": call.end_reason or None,
        "outcome": outcome,
        "attempt": getattr(call, "attempt", None),
        "next_attempt_at": _iso(next_at) if not isinstance(next_at, str) else next_at,
        "campaign_id": str(campaign_id) if campaign_id is not None else None,
        "started_at": _iso(call.started_at),
        "answered_at": _iso(call.answered_at),
        "ended_at": _iso(call.ended_at),
    }


def _subscribed(organization_id, event_type: str) -> list[WebhookEndpoint]:
    endpoints = WebhookEndpoint.objects.filter(organization_id=organization_id, is_active=True)
    return [e for e in endpoints if event_type in (e.events or [])]


def enqueue_event(organization_id, event_type: str, event_key: str, payload: dict) -> list[WebhookDelivery]:
    """One delivery per subscribed endpoint (at most one per endpoint and event_key).

    Call it inside the transaction that makes the event true; sending starts
    when it commits.
    """
    created = []
    for endpoint in _subscribed(organization_id, event_type):
        try:
            with transaction.atomic():
                created.append(
                    WebhookDelivery.objects.create(
                        endpoint=endpoint,
                        organization_id=organization_id,
                        event_type=event_type,
                        event_key=event_key,
                        payload=payload,
                        next_attempt_at=timezone.now(),
                    )
                )
        except IntegrityError:
            log.info("webhook %s for endpoint %s already queued", event_key, endpoint.pk)
    if created:
        ids = [d.pk for d in created]
        transaction.on_commit(lambda: [schedule_send(pk) for pk in ids])
    return created


def on_call_ended(sender, call_id, status, **kwargs) -> None:
    """`calls.signals.call_ended` receiver: runs inside the final transition's transaction."""
    call = CallSession.objects.select_related("workflow", "patient").get(pk=call_id)
    if not _subscribed(call.organization_id, WebhookEvent.CALL_ENDED):
        return
    enqueue_event(call.organization_id, WebhookEvent.CALL_ENDED, f"call.ended:{call.pk}", call_ended_payload(call))


def campaign_finished(
    *, organization_id, campaign_id, name: str = "", status: str = "completed", counts: dict | None = None,
    results: dict | None = None, finished_at=None,
) -> list[WebhookDelivery]:
    """Queue `campaign.finished` (call it in the transaction that ends the campaign)."""
    payload = {
        "campaign_id": str(campaign_id),
        "name": name,
        "status": status,
        "counts": dict(counts or {}),
        "results": dict(results or {}),
        "finished_at": _iso(finished_at or timezone.now()),
    }
    return enqueue_event(organization_id, WebhookEvent.CAMPAIGN_FINISHED, f"campaign.finished:{campaign_id}", payload)


# --- sending -----------------------------------------------------------------------

_inline_pool: ThreadPoolExecutor | None = None
_inline_pid: int | None = None
_inline_lock = threading.Lock()


def _inline_submit(fn, *args) -> None:
    """Without a broker (Celery eager) sends run on a small thread pool, never in the caller.

    One pool per process: a forked child (a server's worker process) must not
    queue work on its parent's pool, whose threads did not survive the fork.
    """
    global _inline_pool, _inline_pid
    with _inline_lock:
        if _inline_pool is None or _inline_pid != os.getpid():
            _inline_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhooks")
            _inline_pid = os.getpid()
    _inline_pool.submit(fn, *args)


def _send_in_thread(delivery_id) -> None:
    try:
        send_delivery(delivery_id)
    except Exception:  # noqa: BLE001 - the sweep retries; never kill the pool
        log.exception("webhook delivery %s failed to send", delivery_id)
    finally:
        close_old_connections()


def schedule_send(delivery_id, countdown: float = 0) -> None:
    """Send soon: a task on the webhooks queue, or (no broker) a background thread."""
    from .tasks import deliver

    if deliver.app.conf.task_always_eager:
        if countdown:
            timer = threading.Timer(countdown, _inline_submit, args=(_send_in_thread, delivery_id))
            timer.daemon = True
            timer.start()
        else:
            _inline_submit(_send_in_thread, delivery_id)
        return
    deliver.apply_async(args=[delivery_id], queue=settings.WEBHOOK_QUEUE, countdown=countdown or None)


def _claim(delivery_id, now) -> bool:
    hold = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_S + 30)
    return bool(
        WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=hold)
    )


def build_body(delivery: WebhookDelivery) -> bytes:
    """Standard Webhooks' shape: {"type", "timestamp", "data"}."""
    data = dict(delivery.payload or {})
    endpoint = delivery.endpoint
    if delivery.event_type == WebhookEvent.CALL_ENDED and endpoint.include_transcript:
        transcript = (
            CallSession.objects.filter(pk=data.get("session_id")).values_list("transcript", flat=True).first()
        )
        data["transcript"] = [
            {"role": line.get("role"), "text": line.get("text"), "at": line.get("at")}
            for line in (transcript or [])
            if isinstance(line, dict)
        ]
    body = {"type": delivery.event_type, "timestamp": _iso(delivery.created_at), "data": data}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def sign_headers(secret: str, message_id: str, body: bytes, at) -> dict:
    signature = Webhook(secret).sign(message_id, at, body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx is an answer, not somewhere to resend the body


_opener = urllib.request.build_opener(_NoRedirect)


def _post(url: str, body: bytes, headers: dict) -> tuple[int | None, str, str]:
    """(status code, response excerpt, error) — never raises for HTTP or network faults."""
    request = urllib.request.Request(url, data=body, method="POST")
    for name, value in {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}.items():
        request.add_header(name, value)
    try:
        with _opener.open(request, timeout=settings.WEBHOOK_TIMEOUT_S) as response:
            return response.status, response.read(EXCERPT_CHARS * 4).decode("utf-8", "replace")[:EXCERPT_CHARS], ""
    except urllib.error.HTTPError as exc:
        try:
            text = exc.read(EXCERPT_CHARS * 4).decode("utf-8", "replace")[:EXCERPT_CHARS]
        except Exception:  # noqa: BLE001
            text = ""
        return exc.code, text, ""
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, "", f"{type(reason).__name__}: {reason}"[:300]


def send_delivery(delivery_id) -> str | None:
    """One attempt, if the delivery is due and nobody else holds it. Returns its new status."""
    now = timezone.now()
    if not _claim(delivery_id, now):
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED, claimed_until=None, next_attempt_at=None,
            last_error="The endpoint is disabled.",
        )
        return DeliveryStatus.FAILED
    body = build_body(delivery)
    code, excerpt, error = _post(endpoint.url, body, sign_headers(endpoint.secret, delivery.message_id, body, now))
    attempts = delivery.attempts + 1
    updates = {
        "attempts": attempts,
        "last_attempt_at": now,
        "last_status_code": code,
        "response_excerpt": excerpt,
        "last_error": error or ("" if code and 200 <= code < 300 else f"HTTP {code}"),
        "claimed_until": None,
    }
    retry_in = None
    if code is not None and 200 <= code < 300:
        updates.update(status=DeliveryStatus.DELIVERED, delivered_at=timezone.now(), next_attempt_at=None)
    elif code == 410:
        updates.update(status=DeliveryStatus.FAILED, next_attempt_at=None, last_error="410 Gone: endpoint disabled")
        disable_endpoint(endpoint, "The receiver answered 410 Gone.")
    elif attempts >= MAX_ATTEMPTS:
        updates.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
    else:
        retry_in = RETRY_DELAYS_S[attempts - 1]
        updates["next_attempt_at"] = now + timedelta(seconds=retry_in)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**updates)
    log.info(
        "webhook %s (%s) to endpoint %s: attempt %s, %s",
        delivery.message_id, delivery.event_type, endpoint.pk, attempts, code or error,
    )
    if retry_in is not None and retry_in <= settings.WEBHOOK_SHORT_RETRY_S:
        # Short waits are timed here; longer ones are left to the sweep (broker ETAs
        # of hours are not reliable).
        schedule_send(delivery.pk, countdown=retry_in)
    return updates.get("status", DeliveryStatus.PENDING)


def disable_endpoint(endpoint: WebhookEndpoint, reason: str) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False, disabled_reason=reason[:200])
    WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PENDING).exclude(
        claimed_until__gt=timezone.now()
    ).update(status=DeliveryStatus.FAILED, next_attempt_at=None, last_error="The endpoint was disabled.")
    endpoint.is_active = False
    log.warning("webhook endpoint %s disabled: %s", endpoint.pk, reason)


def due_deliveries(now=None, limit: int = 500) -> list[int]:
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def sweep(*, send_inline: bool = False) -> int:
    """Schedule every due delivery (those a dead process never sent, and due retries)."""
    ids = due_deliveries()
    for pk in ids:
        if send_inline:
            send_delivery(pk)
        else:
            schedule_send(pk)
    return len(ids)


def redeliver(delivery: WebhookDelivery) -> None:
    """Send again now (same webhook-id), whatever became of it before."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.PENDING, next_attempt_at=timezone.now(), claimed_until=None
    )
    transaction.on_commit(lambda: schedule_send(delivery.pk))
