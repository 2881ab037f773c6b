"""An organisation's EHR over FHIR R4: the connection, the appointments it brought
in, the writes going back (an outbox) and the audit of the tools a bot used.

Nothing here holds a name or phone number in clear except through ``Patient``
itself; the rows keep FHIR ids, statuses and times.
"""

from __future__ import annotations

import base64
import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from calls.models import CallSession
from organizations.models import Organization, Workflow
from patients.models import Patient

from .fields import SecretTextField


class Algorithm(models.TextChoices):
    RS384 = "RS384", "RS384 (RSA)"
    ES384 = "ES384", "ES384 (EC P-384)"


def validate_base_url(url: str) -> None:
    """https, except on loopback hosts or with DEBUG on (a test EHR on a laptop)."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Enter the FHIR base URL, e.g. https://ehr.example.org/fhir/R4.")
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme == "http" and not (settings.DEBUG or loopback):
        raise ValidationError("Use https:// (http:// is accepted only for localhost / 127.0.0.1).")
    if parts.username or parts.password:
        raise ValidationError("Do not put credentials in the URL; the signed client assertion authenticates us.")


def default_scopes() -> str:
    return "system/Patient.read system/Appointment.read system/Slot.read system/Communication.write"


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class FhirConnection(models.Model):
    """One EHR per organisation, reached with SMART Backend Services."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="fhir_connection", verbose_name="organisation"
    )
    base_url = models.URLField(max_length=500, validators=[validate_base_url], help_text="The FHIR R4 base URL.")
    client_id = models.CharField(max_length=200, help_text="The client id the EHR registered for this system.")
    algorithm = models.CharField(max_length=8, choices=Algorithm.choices, default=Algorithm.RS384)
    key_id = models.CharField(max_length=200, blank=True, help_text="The `kid` of the key in the JWKS the EHR knows.")
    private_key = SecretTextField(help_text="PEM private key that signs the client assertion (never shown again).")
    scopes = models.CharField(max_length=500, default=default_scopes)
    allow_writes = models.BooleanField(
        default=False,
        help_text="The EHR lets us change appointments (participant status, cancel, book a slot). "
        "Off: results go back as Communications only, and scheduling tools use the tool webhook.",
    )
    include_transcript = models.BooleanField(
        default=False, help_text="Put the call's transcript in the Communication (it is patient data)."
    )
    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="+", help_text="The dial-out workflow that reminds patients."
    )
    identifier_system = models.CharField(
        max_length=300, blank=True,
        help_text="The Patient.identifier system that is our external id (empty: the first identifier).",
    )
    remind_hours_before = models.PositiveIntegerField(
        default=24, help_text="Ring this many hours before the appointment (inside the workflow's calling window)."
    )
    sync_days_ahead = models.PositiveSmallIntegerField(default=3, help_text="The periodic sync looks this far ahead.")
    schedule_reference = models.CharField(
        max_length=200, blank=True, help_text="Schedule/… whose free Slots may be offered (empty: the appointment's).",
    )
    tool_webhook_url = models.URLField(
        max_length=500, blank=True,
        help_text="For EHRs without FHIR writes: our signed tool webhook goes here (Standard Webhooks).",
    )
    tool_webhook_secret = SecretTextField(blank=True, editable=False)
    is_active = models.BooleanField(default=True)
    last_sync_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=300, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "FHIR connection"

    def __str__(self) -> str:
        return f"{self.organization} → {self.base_url}"

    @property
    def base(self) -> str:
        return self.base_url.rstrip("/")

    def save(self, *args, **kwargs):
        if self.tool_webhook_url and not self.tool_webhook_secret:
            self.tool_webhook_secret = new_secret()
        super().save(*args, **kwargs)

    def clean(self):
        if self.workflow_id and self.organization_id and self.workflow.organization_id != self.organization_id:
            raise ValidationError({"workflow": "A workflow of this organisation."})
        if self.workflow_id and not self.workflow.dials_out:
            raise ValidationError({"workflow": "A dial-out workflow: the reminders are calls we place."})


class LinkStatus(models.TextChoices):
    BOOKED = "booked", "Booked"
    CANCELLED = "cancelled", "Cancelled"


class FhirAppointment(models.Model):
    """One EHR Appointment we know of, and the one reminder call it got.

    The unique (connection, fhir_id) row is what makes a sync idempotent: a
    second sync finds it and places nothing.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    connection = models.ForeignKey(FhirConnection, on_delete=models.CASCADE, related_name="appointments")
    fhir_id = models.CharField(max_length=64)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="fhir_appointments")
    patient_fhir_id = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=LinkStatus.choices, default=LinkStatus.BOOKED)
    start = models.DateTimeField()
    end = models.DateTimeField(null=True, blank=True)
    #: the reminder call (the latest attempt once the call policy tried again)
    call = models.ForeignKey(CallSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    #: why no call was placed (the patient opted out, no valid phone …)
    not_called_reason = models.CharField(max_length=300, blank=True)
    #: what the call changed: "confirmed", "cancelled", "rescheduled"
    call_result = models.CharField(max_length=16, blank=True)
    synced_at = models.DateTimeField(auto_now=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "fhir_id"], name="unique_fhir_appointment")]
        indexes = [models.Index(fields=["organization", "start"], name="fhir_appt_org_start")]
        ordering = ["start"]
        verbose_name = "FHIR appointment"

    def __str__(self) -> str:
        return f"Appointment/{self.fhir_id} {self.start:%Y-%m-%d %H:%M} ({self.status})"

    @property
    def reference(self) -> str:
        return f"Appointment/{self.fhir_id}"


class WriteKind(models.TextChoices):
    COMMUNICATION = "communication", "Communication (the call's result)"
    PARTICIPANT_STATUS = "participant_status", "Appointment participant status"


class WriteStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class FhirWrite(models.Model):
    """One write to the EHR after a call ended: the outbox row, and what became of it.

    Written in the transaction of the call's final transition; the resource
    itself is built from the call when it is sent (a late outcome goes too).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    connection = models.ForeignKey(FhirConnection, on_delete=models.CASCADE, related_name="writes")
    appointment = models.ForeignKey(FhirAppointment, on_delete=models.CASCADE, related_name="writes")
    call = models.ForeignKey(CallSession, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=24, choices=WriteKind.choices)
    #: participant status to set ("accepted" / "declined"); empty for a Communication
    target = models.CharField(max_length=16, blank=True)
    status = models.CharField(max_length=16, choices=WriteStatus.choices, default=WriteStatus.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    #: what the EHR answered: "Communication/123/_history/1"
    resource_ref = models.CharField(max_length=200, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["call", "kind"], name="unique_fhir_write_per_call")]
        ordering = ["-created_at", "-id"]
        verbose_name = "FHIR write"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.appointment.reference} ({self.status})"


class ToolCall(models.Model):
    """A scheduling tool the bot asked the server to run: the audit, and its idempotency.

    (call, tool, key) is unique: the bot resending a request after a reconnect
    gets the stored result, never a second booking.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    call = models.ForeignKey(CallSession, on_delete=models.CASCADE, related_name="+")
    appointment = models.ForeignKey(FhirAppointment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    tool = models.CharField(max_length=32)
    key = models.CharField(max_length=120)
    #: ids only (a slot id, a date range)
    arguments = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    ok = models.BooleanField(default=False)
    via = models.CharField(max_length=16, blank=True, help_text="fhir or webhook")
    duration_ms = models.PositiveIntegerField(default=0)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["call", "tool", "key"], name="unique_tool_call")]
        ordering = ["-at", "-id"]
        verbose_name = "scheduling tool call"

    def __str__(self) -> str:
        return f"{self.tool} on call {str(self.call_id)[:8]} ({'ok' if self.ok else 'refused'})"
