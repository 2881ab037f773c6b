import datetime
import hashlib
import secrets
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from myrobot.crypto import EncryptedTextField

from .validators import (
    CALLER_ID_MAX_LENGTH,
    VOICE_CHOICES,
    validate_caller_id,
    validate_disclosure_message,
    validate_e164,
    validate_language,
    validate_voice,
    validate_voicemail_message,
)


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"'{value}' is not a known time zone (e.g. America/New_York).")


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    is_active = models.BooleanField(default=True)
    max_concurrent_calls = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1)],
        help_text="Calls that may run at once; more dial-outs wait in the queue (dial-ins never wait).",
    )
    dialout_caller_id = models.CharField(
        max_length=CALLER_ID_MAX_LENGTH,
        blank=True,
        validators=[validate_caller_id],
        help_text="Caller id for dial-out calls: a number bought on Daily (E.164, looked up and stored as "
        "its Daily phone-number id when saved) or that id (a UUID).",
    )
    callback_number = models.CharField(
        max_length=32,
        blank=True,
        validators=[validate_e164],
        help_text="The number patients may call back (said in voicemail messages as {callback_number}).",
    )
    # Calling law: how often one patient may be called (any 24 hours / any 7 days),
    # by the consent a workflow's calls rest on (calls.policy.frequency_cap). Empty: no limit.
    healthcare_calls_per_day = models.PositiveSmallIntegerField(
        "healthcare calls a day", default=1, null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="At most this many calls to one patient in any 24 hours, for workflows whose calls rest on the "
                  "healthcare exemption (reminders, follow-ups). The US limit for these calls is 1. Every call to "
                  "the patient counts except emergency ones; a call over the limit is scheduled for when it is "
                  "allowed.",
    )
    healthcare_calls_per_week = models.PositiveSmallIntegerField(
        "healthcare calls a week", default=3, null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="At most this many calls to one patient in any 7 days, for healthcare-exemption workflows. "
                  "The US limit is 3.",
    )
    express_calls_per_day = models.PositiveSmallIntegerField(
        "consented calls a day", null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="The same limit for workflows the patient expressly agreed to (empty: no limit).",
    )
    express_calls_per_week = models.PositiveSmallIntegerField(
        "consented calls a week", null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="At most this many expressly agreed calls to one patient in any 7 days (empty: no limit).",
    )
    dialin_webhook_secret = EncryptedTextField(  # encrypted at rest (myrobot/crypto.py)
        max_length=200,
        blank=True,
        help_text="The base64 HMAC secret of Daily's pinless dial-in config.",
    )
    transcript_retention_days = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Days a call's transcript, outcome notes and event details are kept (empty: until the "
        "patient is erased). Statuses, outcome results and the dashboard's counts are kept.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "organisation"  # one spelling on every page: the British one
        verbose_name_plural = "organisations"

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    STAFF = "staff", "Staff"
    VIEWER = "viewer", "Viewer"


class OrganizationMembership(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships", verbose_name="organisation"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.STAFF)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="unique_membership")]
        ordering = ["organization__name", "user__username"]
        verbose_name = "member"
        verbose_name_plural = "members"

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} at {self.organization}"


API_KEY_PREFIX = "mr_"


def hash_api_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKeyQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """An EHR integration's key. The raw key is shown once; only its hash is kept."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys", verbose_name="organisation"
    )
    name = models.CharField(max_length=100, default="EHR integration")
    prefix = models.CharField(max_length=16, editable=False, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        state = " (revoked)" if self.revoked_at else ""
        return f"{self.name} {self.prefix}…{state}"

    @classmethod
    def generate(cls, organization: Organization, name: str = "EHR integration", created_by=None):
        """Create a key; returns (ApiKey, raw_key). The raw key is never stored."""
        raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(
            organization=organization,
            name=name,
            prefix=raw[:10],
            key_hash=hash_api_key(raw),
            created_by=created_by,
        )
        return key, raw

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

    @classmethod
    def authenticate(cls, raw: str):
        """The active key for a raw key, or None; records its last use."""
        if not raw or not raw.startswith(API_KEY_PREFIX):
            return None
        key = (
            cls.objects.active()
            .select_related("organization")
            .filter(key_hash=hash_api_key(raw), organization__is_active=True)
            .first()
        )
        if key is not None:
            now = timezone.now()
            if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
                cls.objects.filter(pk=key.pk).update(last_used_at=now)
                key.last_used_at = now
        return key


class Direction(models.TextChoices):
    DIAL_IN = "dial_in", "Dial-in"
    DIAL_OUT = "dial_out", "Dial-out"


class WorkflowDirection(models.TextChoices):
    DIAL_IN = "dial_in", "Dial-in"
    DIAL_OUT = "dial_out", "Dial-out"
    BOTH = "both", "Both"


RETRYABLE_REASONS = ("no_answer", "busy", "voicemail", "declined")

# The hours a dial-out may ring in the callee's zone, whatever a workflow says
# (US calling law: not before 8 a.m. or after 9 p.m. local time). calls.policy
# narrows every workflow's window to them.
CALLING_HOURS_FLOOR = (datetime.time(8, 0), datetime.time(21, 0))


def default_window_days():
    return [1, 2, 3, 4, 5]


def default_retry_on():
    return ["no_answer", "busy", "voicemail"]


def default_retry_delays_min():
    return [60, 240, 1440]


class ConsentBasis(models.TextChoices):
    """What a call's lawfulness rests on (stored on every dial-out)."""

    EXPRESS = "express", "Express consent (the patient agreed to these calls)"
    HEALTHCARE_EXEMPT = "healthcare_exempt", "Healthcare exemption (reminders, follow-ups; limited a day and a week)"
    EMERGENCY = "emergency", "Emergency (no limit on how often)"


class Verification(models.TextChoices):
    NONE = "none", "None: the bot knows the patient's details from the start"
    DOB = "dob", "Date of birth"
    DOB_AND_ZIP = "dob_and_zip", "Date of birth and ZIP code"


DEFAULT_DISCLOSURE = (
    "Hello, this is an automated assistant calling from {clinic}. "
    "To stop these calls, press {opt_out_digit} or say stop calling me at any time."
)
OPT_OUT_DIGITS = [(d, d) for d in "0123456789*#"]


def default_outcome_results():
    return ["confirmed", "rescheduled", "declined", "unreachable"]


class Workflow(models.Model):
    """What a bot does on a call: the fields of the AgentRequest's WorkflowConfig."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="workflows", verbose_name="organisation"
    )
    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    direction = models.CharField(max_length=16, choices=WorkflowDirection.choices, default=WorkflowDirection.DIAL_OUT)
    is_active = models.BooleanField(default=True)
    instructions = models.TextField(help_text="The bot's system prompt. {first_name} etc. are filled from patient data.")
    first_message = models.TextField(blank=True)
    voice = models.CharField(max_length=64, default="alloy", choices=VOICE_CHOICES, validators=[validate_voice])
    speaks_first = models.CharField(
        max_length=8, choices=[("bot", "Bot"), ("callee", "Callee")], default="bot"
    )
    max_duration_s = models.PositiveIntegerField(default=600, validators=[MinValueValidator(30)])
    max_dialout_attempts = models.PositiveSmallIntegerField(default=5, validators=[MinValueValidator(1)])
    outcome_results = models.JSONField(default=default_outcome_results, blank=True)
    config = models.JSONField(default=dict, blank=True)
    # Call policy: when dial-outs may ring (in the patient's zone, else the
    # organisation's) and how often a patient who did not answer is tried again.
    window_start = models.TimeField(default=datetime.time(9, 0), help_text="Calls ring from this local time …")
    window_end = models.TimeField(default=datetime.time(19, 0), help_text="… until this local time.")
    window_days = models.JSONField(
        default=default_window_days, blank=True, help_text="ISO weekdays calls may ring on: 1 = Monday … 7 = Sunday."
    )
    retry_on = models.JSONField(
        default=default_retry_on, blank=True,
        help_text="When to try again: any of " + ", ".join(RETRYABLE_REASONS) + ".",
    )
    max_attempts = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1)], help_text="Attempts per request, the first included."
    )
    retry_delays_min = models.JSONField(
        default=default_retry_delays_min, blank=True,
        help_text="Minutes to wait before attempt 2, 3, …; the last one repeats.",
    )
    # Call control
    voicemail_message = models.TextField(
        blank=True,
        validators=[validate_voicemail_message],
        help_text="Left on an answering machine. Only {clinic} and {callback_number}: never patient data.",
    )
    leave_voicemail = models.BooleanField(
        default=False, help_text="Leave the voicemail message; otherwise hang up on a mailbox without a word."
    )
    transfer_number = models.CharField(
        max_length=32, blank=True, validators=[validate_e164],
        help_text="E.164 number the bot transfers to when the patient asks for a person (empty: no transfer).",
    )
    silence_timeout_s = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(3)],
        help_text="Seconds of silence before the bot asks whether anyone is there (then ends the call).",
    )
    ring_timeout_s = models.PositiveSmallIntegerField(
        default=45, validators=[MinValueValidator(10)],
        help_text="Seconds a dial-out may ring before it ends as no answer.",
    )
    language = models.CharField(
        max_length=16, blank=True, default="en", validators=[validate_language],
        help_text="BCP-47 language of the conversation when the patient has no preferred language.",
    )
    # Calling law and identity
    consent_basis = models.CharField(
        max_length=24, choices=ConsentBasis.choices, default=ConsentBasis.HEALTHCARE_EXEMPT,
        help_text="What these calls rest on. It decides which of the organisation's limits a day and a week apply, "
                  "and is stored on every call (shown and exported).",
    )
    disclosure_message = models.TextField(
        blank=True, default=DEFAULT_DISCLOSURE, validators=[validate_disclosure_message],
        help_text="Said first, as soon as a person answers, before anything personal: who is calling, that it is an "
                  "automated assistant, and how to stop the calls. Only {clinic}, {callback_number} and "
                  "{opt_out_digit}. Empty: the standard sentence.",
    )
    opt_out_digit = models.CharField(
        max_length=1, blank=True, default="9", choices=OPT_OUT_DIGITS,
        help_text="The key a patient presses to stop all calls from the clinic (saying so works too). "
                  "The call ends and the patient is marked do-not-call.",
    )
    verification = models.CharField(
        max_length=16, choices=Verification.choices, default=Verification.NONE,
        help_text="What the person must confirm before the bot learns anything beyond the first name. Until then "
                  "a wrong person or a relative hears only the clinic's name and call-back number; two wrong "
                  "answers end the call.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "slug"], name="unique_workflow_slug")]
        ordering = ["organization__name", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.organization})"

    @property
    def takes_dialin(self) -> bool:
        return self.direction in (WorkflowDirection.DIAL_IN, WorkflowDirection.BOTH)

    @property
    def dials_out(self) -> bool:
        return self.direction in (WorkflowDirection.DIAL_OUT, WorkflowDirection.BOTH)

    def clean(self):
        if not isinstance(self.outcome_results, list) or not all(isinstance(r, str) for r in self.outcome_results):
            raise ValidationError({"outcome_results": "A list of result names, e.g. [\"confirmed\", \"declined\"]."})
        if not isinstance(self.config, dict):
            raise ValidationError({"config": "A JSON object."})
        errors = {}
        days = self.window_days
        if not isinstance(days, list) or not days or not all(isinstance(d, int) and 1 <= d <= 7 for d in days):
            errors["window_days"] = "A non-empty list of ISO weekdays, 1 (Monday) to 7 (Sunday), e.g. [1, 2, 3, 4, 5]."
        if self.window_start is not None and self.window_end is not None and self.window_start >= self.window_end:
            errors["window_end"] = "The window must end after it starts (same day)."
        elif (
            self.window_start is not None and self.window_end is not None
            and (self.window_end <= CALLING_HOURS_FLOOR[0] or self.window_start >= CALLING_HOURS_FLOOR[1])
        ):
            errors["window_start"] = (
                "Calls may only ring between 08:00 and 21:00 in the patient's time zone: "
                "the window must overlap those hours."
            )
        if not isinstance(self.retry_on, list) or not all(r in RETRYABLE_REASONS for r in self.retry_on):
            errors["retry_on"] = "A list of: " + ", ".join(RETRYABLE_REASONS) + "."
        delays = self.retry_delays_min
        if not isinstance(delays, list) or not all(isinstance(d, int) and d >= 0 for d in delays):
            errors["retry_delays_min"] = "A list of minutes (whole numbers), e.g. [60, 240, 1440]."
        elif self.max_attempts and self.max_attempts > 1 and not delays:
            errors["retry_delays_min"] = "Give at least one delay when more than one attempt is allowed."
        if errors:
            raise ValidationError(errors)
