import datetime as dt

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from masking import mask_name, mask_phone
from myrobot.crypto import EncryptedJSONField
from myrobot.validation import storable_problem
from organizations.models import Organization, validate_timezone

from .phone import normalize_phone


EARLIEST_BIRTH_DATE = dt.date(1900, 1, 1)


def validate_date_of_birth(value) -> None:
    """On or after 1900-01-01 and not in the future: one rule for the API, the admin and CSV imports."""
    if value is None:
        return
    if value < EARLIEST_BIRTH_DATE:
        raise ValidationError("must be on or after 1900-01-01")
    # A day of slack: it is already tomorrow somewhere when it is today in UTC.
    if value > timezone.now().date() + dt.timedelta(days=1):
        raise ValidationError("must not be in the future")


class Patient(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="patients", verbose_name="organisation"
    )
    external_id = models.CharField(
        max_length=100, blank=True, null=True, help_text="The patient's id in the EHR (unique in the organisation)."
    )
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100, blank=True)
    date_of_birth = models.DateField(null=True, blank=True)
    phone = models.CharField(max_length=20, help_text="E.164, e.g. +14155550123.")
    preferred_language = models.CharField(max_length=16, default="en", blank=True)
    timezone = models.CharField(max_length=64, blank=True, validators=[validate_timezone])
    # Encrypted at rest (myrobot/crypto.py).
    data = EncryptedJSONField(default=dict, blank=True, help_text="What the bot may use, e.g. the appointment.")
    postal_code = models.CharField(
        "ZIP code", max_length=16, blank=True,
        help_text="Asked on calls whose workflow verifies date of birth and ZIP code; never sent to the bot.",
    )
    consent_to_call = models.BooleanField(default=True)
    do_not_call = models.BooleanField(default=False)
    do_not_call_source = models.CharField(
        max_length=80, blank=True,
        help_text="Who set do-not-call: call:<session id> (the patient asked on a call), admin:<user> or api:<key>.",
    )
    do_not_call_at = models.DateTimeField(null=True, blank=True, help_text="When do-not-call was set.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "external_id"], name="unique_patient_external_id"),
        ]
        indexes = [models.Index(fields=["organization", "phone"], name="patient_org_phone")]

    def __str__(self) -> str:
        # Masked on purpose: str() ends up in logs, titles and breadcrumbs.
        ref = f" ({self.external_id})" if self.external_id else ""
        return f"{self.masked_name}{ref}"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def masked_name(self) -> str:
        return mask_name(self.first_name, self.last_name) or "Unknown patient"

    @property
    def masked_phone(self) -> str:
        return mask_phone(self.phone)

    def clean(self):
        errors = {}
        if self.phone:
            try:
                self.phone = normalize_phone(self.phone)
            except ValidationError as exc:
                errors["phone"] = exc.messages
        if self.external_id == "":
            self.external_id = None
        try:
            validate_date_of_birth(self.date_of_birth)
        except ValidationError as exc:
            errors["date_of_birth"] = exc.messages
        if not isinstance(self.data, dict):
            errors["data"] = ["A JSON object."]
        else:
            problem = storable_problem(self.data)
            if problem:  # e.g. "\u0000" typed into the admin's JSON: PostgreSQL would refuse it
                errors["data"] = [f"The data {problem}."]
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs):
        if self.external_id == "":
            self.external_id = None
        if self.do_not_call and self.do_not_call_at is None:
            from django.utils import timezone

            self.do_not_call_at = timezone.now()
        elif not self.do_not_call:
            self.do_not_call_source, self.do_not_call_at = "", None
        super().save(*args, **kwargs)
