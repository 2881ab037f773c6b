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

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from calls.models import CallSession

from .models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from .payloads import call_ended_payload, iso, opted_out_payload
from .sending import due_deliveries
from .tasks import attempt as send_delivery
from .tasks import schedule_send

log = logging.getLogger(__name__)


# --- writing the outbox ------------------------------------------------------------


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
    # An endpoint that is failing gets new events through the sweep (a few at a time),
    # not one sender each the moment they happen.
    ids = [d.pk for d in created if d.endpoint.failing_since is None]
    if ids:
        transaction.on_commit(lambda: [schedule_send(pk) for pk in ids])
    return created


def on_call_ended(sender, call_id, status, **kwargs) -> None:
    """`calls.signals.call_ended` receiver: runs inside the final transition's transaction.

    One query when the organisation has no endpoint for `call.ended` (the usual case).
    """
    endpoints = WebhookEndpoint.objects.filter(organization__calls__pk=call_id, is_active=True)
    if not any(WebhookEvent.CALL_ENDED in (e.events or []) for e in endpoints):
        return
    call = CallSession.objects.select_related("workflow", "patient").get(pk=call_id)
    enqueue_event(call.organization_id, WebhookEvent.CALL_ENDED, f"call.ended:{call.pk}", call_ended_payload(call))


def on_patient_opted_out(sender, call_id, patient_id, external_id, organization_id, at, **kwargs) -> None:
    """`calls.signals.patient_opted_out` receiver: queue `patient.opted_out` in the opt-out's transaction,
    so the EHR can mark the patient too."""
    if not _subscribed(organization_id, WebhookEvent.PATIENT_OPTED_OUT):
        return
    enqueue_event(
        organization_id, WebhookEvent.PATIENT_OPTED_OUT, f"patient.opted_out:{call_id}",
        opted_out_payload(call_id=call_id, patient_id=patient_id, external_id=external_id, at=at),
    )


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
        "finished_at": iso(finished_at or timezone.now()),
    }
    return enqueue_event(organization_id, WebhookEvent.CAMPAIGN_FINISHED, f"campaign.finished:{campaign_id}", payload)


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
