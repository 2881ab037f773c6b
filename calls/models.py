import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse

from masking import mask_phone
from myrobot.crypto import EncryptedJSONField, PartlyEncryptedJSONField
from organizations.models import ApiKey, ConsentBasis, Direction, Organization, Workflow
from patients.models import Patient


class CallStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    QUEUED = "queued", "Queued"
    STARTING = "starting", "Starting"
    RINGING = "ringing", "Ringing"
    WAITING = "waiting", "Waiting for caller"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    NO_ANSWER = "no_answer", "No answer"
    BUSY = "busy", "Busy"
    CANCELED = "canceled", "Canceled"


FINAL_STATUSES = frozenset(
    {CallStatus.COMPLETED, CallStatus.FAILED, CallStatus.NO_ANSWER, CallStatus.BUSY, CallStatus.CANCELED}
)
ACTIVE_STATUSES = frozenset(set(CallStatus.values) - {str(s) for s in FINAL_STATUSES})
# A call holds one of its organisation's slots from starting until it is final.
HOLDING_STATUSES = frozenset({CallStatus.STARTING, CallStatus.RINGING, CallStatus.WAITING, CallStatus.IN_PROGRESS})
_ANY_END = {CallStatus.FAILED, CallStatus.NO_ANSWER, CallStatus.BUSY, CallStatus.CANCELED}

# status -> statuses it may move to (docs/architecture.md, "Call states").
# starting → queued: the bot runner was at capacity (HTTP 429), so no bot started
# and the call waits for its turn again (calls.policy).
TRANSITIONS: dict[str, frozenset] = {
    CallStatus.SCHEDULED: frozenset({CallStatus.QUEUED, *_ANY_END}),
    # queued → scheduled: its calling window closed before it could ring (calls.starting.dial_check).
    CallStatus.QUEUED: frozenset({CallStatus.STARTING, CallStatus.SCHEDULED, *_ANY_END}),
    CallStatus.STARTING: frozenset(
        {CallStatus.QUEUED, CallStatus.RINGING, CallStatus.WAITING, CallStatus.IN_PROGRESS, *_ANY_END}
    ),
    CallStatus.RINGING: frozenset({CallStatus.IN_PROGRESS, *_ANY_END}),
    CallStatus.WAITING: frozenset({CallStatus.IN_PROGRESS, *_ANY_END}),
    CallStatus.IN_PROGRESS: frozenset({CallStatus.COMPLETED, *_ANY_END}),
    CallStatus.COMPLETED: frozenset(),
    CallStatus.FAILED: frozenset(),
    CallStatus.NO_ANSWER: frozenset(),
    CallStatus.BUSY: frozenset(),
    CallStatus.CANCELED: frozenset(),
}


#: what of an outcome, and of an event's data, is encrypted at rest (and purged)
OUTCOME_ENCRYPTED_KEYS = ("notes", "data")
EVENT_ENCRYPTED_KEYS = ("text", "notes", "data")


class CallSession(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="calls", verbose_name="organisation"
    )
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="calls")
    patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls")
    direction = models.CharField(max_length=16, choices=Direction.choices)
    status = models.CharField(max_length=16, choices=CallStatus.choices, default=CallStatus.QUEUED, db_index=True)

    # Dial-out: to_number is the patient, from_number the caller id.
    # Dial-in: from_number is the caller, to_number the organisation's number.
    from_number = models.CharField(max_length=64, blank=True)  # dial-out: the caller id (E.164 or a UUID)
    to_number = models.CharField(max_length=32, blank=True)

    daily_room_name = models.CharField(max_length=128, blank=True)
    daily_room_url = models.URLField(max_length=300, blank=True)
    daily_call_id = models.CharField(max_length=100, null=True, blank=True)
    daily_call_domain = models.CharField(max_length=100, null=True, blank=True)
    dialout_attempts = models.PositiveSmallIntegerField(default=0)

    requested_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)

    status_token_hash = models.CharField(max_length=64, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    bot_started_at = models.DateTimeField(null=True, blank=True)
    # Claimed just before the start request is sent, so a redelivered task
    # can tell it must not start a second bot.
    bot_start_requested_at = models.DateTimeField(null=True, blank=True)

    # Campaigns (the ``campaigns`` app) tag their calls with a plain id, not a
    # foreign key: ``calls`` stays independent of ``campaigns`` (no import, no
    # migration dependency). A held call is never started: its campaign
    # releases it at the campaign's pace (and holds it again while paused).
    campaign_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    held = models.BooleanField(default=False)
    # Call policy (calls.policy): when it may ring, which attempt it is, its place in the queue.
    scheduled_for = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="Not before this time (inside the calling window)."
    )
    attempt = models.PositiveSmallIntegerField(default=1)
    max_attempts = models.PositiveSmallIntegerField(default=1)
    previous_attempt = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="next_attempt_call"
    )
    queued_at = models.DateTimeField(null=True, blank=True)
    # When a start was last handed to a worker (None: waiting for a slot); the
    # dispatcher hands it again when it looks lost.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # The bot runner was at capacity (429): not before this time, and since when.
    start_retry_at = models.DateTimeField(null=True, blank=True)
    deferred_since = models.DateTimeField(null=True, blank=True)
    start_deferrals = models.PositiveSmallIntegerField(default=0)

    # Calling law: what this call rests on (organizations.ConsentBasis; "" for dial-ins).
    consent_basis = models.CharField(max_length=24, blank=True, choices=ConsentBasis.choices)
    # Identity (calls.bot_tools' verify_identity): when it was confirmed, and wrong answers so far.
    identity_verified_at = models.DateTimeField(null=True, blank=True)
    identity_failures = models.PositiveSmallIntegerField(default=0)

    end_reason = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True, help_text="Why the call failed, for a person to act on.")
    # Encrypted at rest (myrobot/crypto.py): the transcript whole, of the outcome
    # its notes and data (its result stays readable for the dashboard and filters).
    outcome = PartlyEncryptedJSONField(null=True, blank=True, encrypted_keys=OUTCOME_ENCRYPTED_KEYS)
    transcript = EncryptedJSONField(default=list, blank=True)
    # When retention or an erasure removed its transcript, outcome notes and event payloads.
    purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Per organisation: another organisation's webhook reusing a callId
            # must never be matched to this call (calls.services.accept_dialin).
            models.UniqueConstraint(
                fields=["organization", "daily_call_domain", "daily_call_id"],
                name="unique_dialin_call_per_org",
                condition=models.Q(daily_call_id__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"],
                name="unique_idempotency_key",
                condition=models.Q(idempotency_key__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="call_org_created"),
            models.Index(fields=["organization", "status"], name="call_org_status"),
            # The dashboard's median duration reads only this index (calls.reports).
            models.Index(fields=["organization", "created_at", "answered_at", "ended_at"], name="call_org_created_span"),
            models.Index(fields=["status", "scheduled_for"], name="call_status_scheduled"),
            # The dial-in webhook's look-up of a callId across organisations.
            models.Index(fields=["daily_call_id", "daily_call_domain"], name="call_daily_call_id",
                         condition=models.Q(daily_call_id__isnull=False)),
        ]

    def __str__(self) -> str:
        who = self.patient.masked_name if self.patient_id else mask_phone(self.from_number) or "unknown caller"
        return f"{self.get_direction_display()} {who} — {self.get_status_display()} ({str(self.pk)[:8]})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def end_reason_label(self) -> str:
        """The end reason in words (calls.labels), as pages show it."""
        from .labels import end_reason  # labels is tiny; lazy keeps models importable from migrations unchanged

        return end_reason(self.end_reason)

    @property
    def patient_phone(self) -> str:
        return self.to_number if self.direction == Direction.DIAL_OUT else self.from_number

    def get_absolute_url(self) -> str:
        return reverse("calls:detail", kwargs={"session_id": self.pk})


class CallEvent(models.Model):
    """Something that happened on a call: a bot message (with its seq) or a status move."""

    call = models.ForeignKey(CallSession, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=40)
    # A transcript line's text, an outcome's notes and data are encrypted; the
    # rest (statuses, metrics' turn_ms, error codes) stays readable in SQL.
    data = PartlyEncryptedJSONField(default=dict, blank=True, encrypted_keys=EVENT_ENCRYPTED_KEYS)
    seq = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["call", "seq"], name="unique_call_event_seq", condition=models.Q(seq__isnull=False)
            )
        ]

    def __str__(self) -> str:
        """The admin's heading for the event: its kind at the organisation's time."""
        from organizations import timefmt  # organizations imports calls' models in its admin; lazy avoids the cycle

        return f"{self.kind.replace('_', ' ')} at {timefmt.show(self.at, self.call.organization.timezone, seconds=True)}"


class CallDay(models.Model):
    """The dashboard's roll-up of finished calls (calls.rollup): per organisation,
    day (of ``created_at``, in the organisation's zone), workflow, final status and
    outcome result, how many calls — so a year of calls is a few thousand rows.

    Written in the transaction that makes a call final (``calls.state.transition``)
    and when a final call's outcome arrives late; calls not yet final are counted
    from the calls themselves. ``manage.py rebuild_call_days`` rebuilds it.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    status = models.CharField(max_length=16, choices=CallStatus.choices)
    # The outcome's result ("" when none), as the dashboard shows it (calls.rollup.result_key).
    result = models.CharField(max_length=255, blank=True)
    calls = models.IntegerField(default=0)
    with_outcome = models.IntegerField(default=0)  # of which with an outcome
    dial_outs = models.IntegerField(default=0)  # of which dial-outs (placed, dialled or not)
    dialled = models.IntegerField(default=0)  # of which dial-outs really dialled (calls.rollup.DIALLED)
    answered = models.IntegerField(default=0)  # of which answered by a person (not voicemail)
    timed = models.IntegerField(default=0)  # of which with answered_at and ended_at

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "day", "workflow", "status", "result"],
                                    name="unique_call_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.status} {self.result or '-'}: {self.calls}"


class TurnCount(models.Model):
    """The dashboard's roll-up of bot turn latencies (calls.rollup): how many
    ``metrics`` events reported each ``turn_ms`` value, per organisation, day (of
    the call's ``created_at``, in the organisation's zone) and workflow. Exact
    values, so the median computed from it is the median of the events; the
    dashboard reads only the band that holds the median (``TurnBand``)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    value = models.FloatField()
    band = models.IntegerField()  # floor(value / calls.rollup.BAND_MS)
    n = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "day", "workflow", "value"], name="unique_turn_count"),
        ]
        indexes = [models.Index(fields=["organization", "band"], name="turn_count_org_band")]

    def __str__(self) -> str:
        return f"{self.day} {self.value:g} ms × {self.n}"


class TurnBand(models.Model):
    """How many turns fell in each band of ``calls.rollup.BAND_MS`` milliseconds,
    per organisation, day and workflow: a few dozen rows per day, which tell the
    dashboard which band of ``TurnCount`` holds the median."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    band = models.IntegerField()
    n = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "day", "workflow", "band"], name="unique_turn_band"),
        ]

    def __str__(self) -> str:
        return f"{self.day} band {self.band} × {self.n}"
