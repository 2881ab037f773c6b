"""Who saw or touched which patient and call.

The app sits at the bottom: every app may import it and it imports none of
ours (its foreign keys name their models by string). A row holds ids only —
never a name, phone number, date of birth or patient data — so the trail
itself is not a second copy of the records it guards.
"""

from django.conf import settings
from django.db import models


class AuditAction(models.TextChoices):
    VIEW_PATIENT = "view_patient", "Viewed a patient"
    VIEW_CALL = "view_call", "Viewed a call"
    PLACE_CALL = "place_call", "Placed a call"
    CANCEL_CALL = "cancel_call", "Canceled a call"
    CHANGE_PATIENT = "change_patient", "Changed a patient"
    EXPORT = "export", "Exported"
    START_CAMPAIGN = "start_campaign", "Started a campaign"
    ERASE_PATIENT = "erase_patient", "Erased a patient"
    EXPORT_PATIENT = "export_patient", "Exported a patient's record"
    PURGE = "purge", "Purged call data past retention"
    LIST_PATIENTS = "list_patients", "Listed patients"
    SEARCH_PATIENTS = "search_patients", "Searched patients"
    LIST_CALLS = "list_calls", "Listed calls"
    VIEW_CAMPAIGN = "view_campaign", "Viewed a campaign"
    VIEW_TRANSCRIPT = "view_transcript", "Read a call's transcript live"
    REDELIVER_WEBHOOK = "redeliver_webhook", "Redelivered a webhook"
    IMPORT_PATIENTS = "import_patients", "Created patients by import"
    BOT_TOOL = "bot_tool", "The bot used a server tool"
    OPT_OUT = "opt_out", "The patient opted out"


class AuditEvent(models.Model):
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="audit_events",
        verbose_name="organisation",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_key = models.ForeignKey(
        "organizations.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    #: who, kept when the user or key is gone later: a username or a key's prefix
    actor = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32, choices=AuditAction.choices, db_index=True)
    #: e.g. "patients.patient", "calls.callsession"
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64, blank=True)
    #: how it was done: "admin", "api", "page"
    via = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["organization", "-at"], name="audit_org_at")]
        verbose_name = "audit event"

    def __str__(self) -> str:
        return f"{self.actor or 'system'} {self.action} {self.object_type} {self.object_id}"
