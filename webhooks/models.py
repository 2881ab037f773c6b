"""Webhooks to the organisation's systems: endpoints, and deliveries (the outbox).

A ``WebhookDelivery`` is written in the same transaction as what it reports
(a call's final transition, a campaign's end), so a crash between commit and
send loses nothing: the periodic sweep sends every due delivery.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models

from myrobot.crypto import EncryptedTextField, PartlyEncryptedJSONField
from organizations.models import Organization

from .destinations import Refused, check

SECRET_PREFIX = "whsec_"


class WebhookEvent(models.TextChoices):
    CALL_ENDED = "call.ended", "call.ended — a call reached a final status"
    CAMPAIGN_FINISHED = "campaign.finished", "campaign.finished — a campaign completed or was canceled"
    PATIENT_OPTED_OUT = "patient.opted_out", "patient.opted_out — a patient asked on a call not to be called again"


EVENT_TYPES = frozenset(WebhookEvent.values)


def new_secret() -> str:
    """`whsec_` + base64 of 24 random bytes, as Standard Webhooks' libraries expect."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def validate_endpoint_url(url: str) -> None:
    """A public https destination (webhooks.destinations); no credentials in the URL."""
    parts = urlsplit(url or "")
    if parts.username or parts.password:
        raise ValidationError("Do not put credentials in the URL; the signature authenticates us.")
    try:
        check(url)
    except Refused as exc:
        raise ValidationError(str(exc))


def validate_events(value) -> None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValidationError("A non-empty list of event types, e.g. [\"call.ended\"].")
    unknown = sorted(set(value) - EVENT_TYPES)
    if unknown:
        raise ValidationError(f"Unknown event type(s): {', '.join(unknown)}. Known: {', '.join(sorted(EVENT_TYPES))}.")


def default_events():
    return [WebhookEvent.CALL_ENDED.value, WebhookEvent.CAMPAIGN_FINISHED.value, WebhookEvent.PATIENT_OPTED_OUT.value]


class WebhookEndpoint(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_endpoints",
                                     verbose_name="organisation")
    url = models.URLField(max_length=500, validators=[validate_endpoint_url])
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=default_events, validators=[validate_events])
    is_active = models.BooleanField(default=True)
    include_transcript = models.BooleanField(
        default=False, help_text="Send the call's transcript with call.ended (it is patient data)."
    )
    # Kept in full: every delivery is signed with it. Shown once, when created.
    # Encrypted at rest (myrobot/crypto.py).
    secret = EncryptedTextField(max_length=100, default=new_secret, editable=False)
    disabled_reason = models.CharField(max_length=200, blank=True)
    #: since when its attempts fail (cleared by a 2xx): new events then wait for the
    #: sweep, which sends only a few per endpoint at a time
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization__name", "url"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return self.is_active and event_type in (self.events or [])


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex


#: what of a payload is patient data, encrypted at rest (an outcome's notes, a transcript)
PAYLOAD_ENCRYPTED_KEYS = ("outcome", "transcript")


class WebhookDelivery(models.Model):
    """One event for one endpoint: the outbox row, and what became of it."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_deliveries",
                                     verbose_name="organisation")
    event_type = models.CharField(max_length=32, choices=WebhookEvent.choices)
    #: what the event is about, once per endpoint: "call.ended:<session id>"
    event_key = models.CharField(max_length=120)
    #: the `webhook-id` header: the same on every attempt, so a receiver can de-duplicate
    message_id = models.CharField(max_length=40, unique=True, default=new_message_id, editable=False)
    #: the event's data (ids, statuses, times; never a name or phone number)
    payload = PartlyEncryptedJSONField(default=dict, encrypted_keys=PAYLOAD_ENCRYPTED_KEYS)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    #: a sender holds the row until then, so the sweep and a retry never send it twice at once
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_key"], name="unique_delivery_per_endpoint_event"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id} ({self.get_status_display()})"
