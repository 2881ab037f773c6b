"""One delivery attempt: claim the row, sign, POST with a timeout, record the answer's status.

Each attempt is signed anew (fresh timestamp) with the same ``webhook-id``, so a
receiver can drop duplicates. 2xx = delivered; 410 switches the endpoint off;
anything else is retried with backoff for about a day (``RETRY_DELAYS_S``).
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from standardwebhooks import Webhook

from calls.models import CallSession

from . import destinations
from .models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from .payloads import call_ended_payload, iso, outcome_details

log = logging.getLogger(__name__)

#: seconds to wait before attempt n+1 after attempt n failed (about a day in all)
RETRY_DELAYS_S = (10, 60, 5 * 60, 30 * 60, 2 * 3600, 6 * 3600, 15 * 3600)
MAX_ATTEMPTS = len(RETRY_DELAYS_S) + 1
USER_AGENT = "MyRobot-Webhooks/1.0"


def _claim(delivery_id, now) -> bool:
    hold = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_S + 30)
    return bool(
        WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=hold)
    )


def build_body(delivery: WebhookDelivery) -> bytes:
    """Standard Webhooks' shape: {"type", "timestamp", "data"}.

    `call.ended` data is read from the call again at send time, so what was
    settled after the final transition (a follow-up attempt's time, a late
    outcome) goes out too; the transcript only to endpoints that ask for it.
    """
    data = dict(delivery.payload or {})
    if delivery.event_type == WebhookEvent.CALL_ENDED:
        call = CallSession.objects.select_related("workflow", "patient").filter(pk=data.get("session_id")).first()
        if call is not None:
            data.update(call_ended_payload(call))
            if delivery.endpoint.include_transcript:
                data["outcome"] = outcome_details(call)
                data["transcript"] = [
                    {"role": line.get("role"), "text": line.get("text"), "at": line.get("at")}
                    for line in (call.transcript or [])
                    if isinstance(line, dict)
                ]
    body = {"type": delivery.event_type, "timestamp": iso(delivery.created_at), "data": data}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def sign_headers(secret: str, message_id: str, body: bytes, at) -> dict:
    signature = Webhook(secret).sign(message_id, at, body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def _post(url: str, body: bytes, headers: dict) -> tuple[int | None, str]:
    """(status code, error) — never raises for HTTP or network faults; never reads the answer's body.

    The destination is checked again now and the connection goes to the checked
    address (``destinations``); a redirect is an answer like any other. Errors
    say what kind of failure it was, not the operating system's words.
    """
    try:
        destination = destinations.check(url)
    except destinations.Refused as exc:
        return None, f"Not sent: {exc}"[:300]
    connection = destinations.PinnedConnection.open(destination, settings.WEBHOOK_TIMEOUT_S)
    try:
        connection.request(
            "POST", destination.target, body=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
        )
        return connection.getresponse().status, ""
    except (TimeoutError, socket.timeout):
        return None, "Timed out: the receiver did not answer in time."
    except ssl.SSLError:
        return None, "The TLS connection to the receiver failed (its certificate, or the protocol)."
    except (OSError, http.client.HTTPException):
        return None, "Could not connect to the receiver, or it closed the connection."
    finally:
        connection.close()


def send_delivery(delivery_id) -> tuple[str | None, int | None]:
    """One attempt, if the delivery is due and nobody else holds it.

    Returns (its new status, seconds until the next attempt or None); (None,
    None) when it was not due or another sender holds it.
    """
    now = timezone.now()
    if not _claim(delivery_id, now):
        return None, None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED, claimed_until=None, next_attempt_at=None,
            last_error="The endpoint is disabled.",
        )
        return DeliveryStatus.FAILED, None
    body = build_body(delivery)
    code, error = _post(endpoint.url, body, sign_headers(endpoint.secret, delivery.message_id, body, now))
    attempts = delivery.attempts + 1
    updates = {
        "attempts": attempts,
        "last_attempt_at": now,
        "last_status_code": code,
        "last_error": error or ("" if code and 200 <= code < 300 else f"HTTP {code}"),
        "claimed_until": None,
    }
    retry_in = None
    ok = code is not None and 200 <= code < 300
    if ok and endpoint.failing_since is not None:
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
    elif not ok and code != 410 and endpoint.failing_since is None:
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
    if ok:
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
    return updates.get("status", DeliveryStatus.PENDING), retry_in


def disable_endpoint(endpoint: WebhookEndpoint, reason: str) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False, disabled_reason=reason[:200])
    WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PENDING).exclude(
        claimed_until__gt=timezone.now()
    ).update(status=DeliveryStatus.FAILED, next_attempt_at=None, last_error="The endpoint was disabled.")
    endpoint.is_active = False
    log.warning("webhook endpoint %s disabled: %s", endpoint.pk, reason)


def due_deliveries(now=None, limit: int = 500) -> list[int]:
    """Due, unclaimed deliveries, oldest first, at most WEBHOOK_SWEEP_PER_ENDPOINT per
    endpoint: a dead endpoint with a long backlog takes a few senders, not all of them."""
    now = now or timezone.now()
    per_endpoint = settings.WEBHOOK_SWEEP_PER_ENDPOINT
    rows = (
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("next_attempt_at", "pk")
        .values_list("pk", "endpoint_id")[: limit * 4]
    )
    taken: dict[int, int] = {}
    due = []
    for pk, endpoint_id in rows:
        if taken.get(endpoint_id, 0) < per_endpoint:
            taken[endpoint_id] = taken.get(endpoint_id, 0) + 1
            due.append(pk)
            if len(due) >= limit:
                break
    return due


