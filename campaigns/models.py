from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse

from organizations.models import ApiKey, Organization, Workflow
from patients.models import Patient

MAX_PACE_PER_MINUTE = 6000


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    CANCELED = "canceled", "Canceled"


FINISHED_STATUSES = frozenset({CampaignStatus.COMPLETED, CampaignStatus.CANCELED})


class SkipReason(models.TextChoices):
    DO_NOT_CALL = "do_not_call", "Do not call"
    NO_CONSENT = "no_consent", "No consent to call"
    INVALID_PHONE = "invalid_phone", "Invalid phone number"
    NO_CALLING_HOURS = "no_calling_hours", "No calling hours in all of the number's time zones"


class Campaign(models.Model):
    """One dial-out workflow called on a list of patients, at a pace, under the call policy."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="campaigns",
                                     verbose_name="organisation")
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="campaigns")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    pace_per_minute = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_PACE_PER_MINUTE)],
        help_text="At most this many calls start in any 60 seconds.",
    )
    start_at = models.DateTimeField(null=True, blank=True, help_text="No call rings before this time.")
    created_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"],
                name="unique_campaign_idempotency_key",
                condition=models.Q(idempotency_key__isnull=False),
            ),
        ]
        indexes = [models.Index(fields=["status"], name="campaign_status")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def get_absolute_url(self) -> str:
        return reverse("admin:campaigns_campaign_change", args=[self.pk])


class CampaignTarget(models.Model):
    """One patient of a campaign; ``skip_reason`` when the patient may not be called."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="targets")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="campaign_targets")
    skip_reason = models.CharField(max_length=32, choices=SkipReason.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "patient"], name="unique_campaign_patient"),
        ]

    def __str__(self) -> str:
        return f"{self.patient} in {self.campaign}"
