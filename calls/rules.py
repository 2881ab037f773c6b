"""Who may be called, by which workflow: the one rule set, its one refusal and its one code table.

Every way into a call goes through these rules — the admin's "Call patient",
the REST API's start-call, Daily's dial-in webhook, campaigns (when patients
are added and when the campaign starts), follow-up attempts and the
dispatcher (when a scheduled or waiting call comes due) — so a rule changed
here holds everywhere. A refusal is a ``CallRefused`` whose ``code`` says what
kind of refusal it is; ``status`` is the HTTP status the API answers with:

=====================  ======  ==========================================
code                   status  when
=====================  ======  ==========================================
organization_inactive  409     the organisation is switched off
workflow_not_found     404     workflow of another organisation
patient_not_found      404     patient of another organisation
unknown_patients       422     a campaign names patients it cannot have
invalid_phone          422     the number to call is not a phone number
invalid_caller_id      422     the caller id is neither E.164 nor a Daily id
invalid                422     a required field is missing (dial-in ids)
no_targets             422     a campaign without any patient
workflow_inactive      409     the workflow is switched off
workflow_not_dialout   409     placing a call with a dial-in-only workflow
workflow_not_dialin    409     a dial-in to a dial-out-only workflow
dialin_call_conflict   409     a dial-in reusing another organisation's callId
do_not_call            409     the patient is marked do-not-call
no_consent             409     the patient has not consented to calls
frequency_cap          409     over the limit a day / a week, and the caller asked to refuse, not schedule
no_calling_hours       409     the calling hours never open in all of the callee's possible zones
idempotency_conflict   409     Idempotency-Key reused with another body
not_cancelable         409     cancel on a call that has already ended
not_allowed            409     a campaign change its status does not allow
not_configured         503     the deployment lacks what a start needs
=====================  ======  ==========================================

``not_configured`` is 503 (Service Unavailable), not 409: nothing about the
request is wrong and the client cannot fix it; the server's operator must set
the missing variables (``botrunner.start.check_start_config()`` lists them).

The checks come in parts, so each caller runs each rule once:
``workflow_refusal`` (organisation and workflow), ``patient_refusal`` (the
patient), ``number_refusal`` (do-not-call held per number) and ``refusal``
(all three, for a dial-out that comes due or is being dialled). They return the
refusal (or None); ``check_*`` raise it.

And when a dial-out may ring (the rest of this module; ``calls.policy.plan``
combines them with the clock arithmetic of calling windows): the callee's
zone(s) (``callee_zones``: the patient's, else every zone the number may be in,
else the organisation's), the legal floor of 08:00–21:00 in each of them that
no workflow can widen (``legal_hours``), and the organisation's limits a day
and a week per patient for the call's consent basis (``limits_for``,
``counted_moments``, ``limit_reached``, ``first_allowed``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

import phonenumbers
from django.db.models import Q
from django.utils import timezone
from phonenumbers import timezone as pn_timezone

from botrunner.start import check_start_config
from patients.models import Patient
from organizations.models import CALLING_HOURS_FLOOR
from patients.phone import try_normalize_phone

from .models import CallSession, CallStatus

STATUS_BY_CODE = {
    "organization_inactive": 409,
    "workflow_not_found": 404,
    "patient_not_found": 404,
    "unknown_patients": 422,
    "invalid_phone": 422,
    "invalid_caller_id": 422,
    "invalid": 422,
    "no_targets": 422,
    "workflow_inactive": 409,
    "workflow_not_dialout": 409,
    "workflow_not_dialin": 409,
    "dialin_call_conflict": 409,
    "do_not_call": 409,
    "no_consent": 409,
    "frequency_cap": 409,
    "no_calling_hours": 409,
    "idempotency_conflict": 409,
    "not_cancelable": 409,
    "not_allowed": 409,
    "not_configured": 503,
}


class CallRefused(Exception):
    """A call (or campaign) that may not be placed, accepted or changed, with a reason for a person."""

    def __init__(self, code: str, message: str, field: str | None = None, errors: list[dict] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.errors = errors

    @property
    def status(self) -> int:
        return STATUS_BY_CODE.get(self.code, 409)

    def __str__(self) -> str:
        return self.message


# Phone numbers are parsed once per process and number: a 5,000-patient campaign
# checks each number when it is added and again when it starts.
normalized_phone = lru_cache(maxsize=65536)(try_normalize_phone)


def check_deployment() -> None:
    """Refuse (``not_configured``) when this server cannot start a bot at all."""
    problems = check_start_config()
    if problems:
        raise CallRefused(
            "not_configured",
            "This server cannot start calls until its operator fixes its configuration: " + " ".join(problems),
        )


def workflow_refusal(organization, workflow, *, dialin: bool = False) -> CallRefused | None:
    """Why ``workflow`` may not take (``dialin``) or place a call for ``organization``; None: it may."""
    if not organization.is_active:
        return CallRefused("organization_inactive", f"The organisation {organization.name} is inactive.")
    if workflow.organization_id != organization.pk:
        return CallRefused("workflow_not_found", "No such workflow in this organisation.", field="workflow")
    if not workflow.is_active:
        return CallRefused("workflow_inactive", f"The workflow '{workflow.slug}' is inactive.", field="workflow")
    if dialin and not workflow.takes_dialin:
        return CallRefused(
            "workflow_not_dialin", f"The workflow '{workflow.slug}' does not take dial-in calls.", field="workflow"
        )
    if not dialin and not workflow.dials_out:
        return CallRefused(
            "workflow_not_dialout", f"The workflow '{workflow.slug}' does not place calls (it is dial-in only).",
            field="workflow",
        )
    return None


def patient_refusal(organization, patient, *, check_phone: bool = False) -> CallRefused | None:
    """Why ``patient`` may not be rung by ``organization`` (None: they may).

    ``check_phone``: the patient's own number must be a phone number too (a
    campaign rings that number; a start-call may give another one).
    """
    if patient is None or patient.organization_id != organization.pk:
        return CallRefused("patient_not_found", "No such patient in this organisation.", field="patient")
    if patient.do_not_call:
        return CallRefused("do_not_call", "The patient is marked do-not-call.", field="patient")
    if not patient.consent_to_call:
        return CallRefused("no_consent", "The patient has not consented to be called.", field="patient")
    if check_phone and normalized_phone(patient.phone or "") is None:
        return CallRefused(
            "invalid_phone",
            "The patient's phone number is not a valid phone number: correct it or give phone_number.",
            field="phone_number",
        )
    return None


def do_not_call_numbers(organization_id, numbers) -> set[str]:
    """Those of ``numbers`` that are do-not-call in the organisation.

    Do-not-call is held per number as well as per record: a number is
    do-not-call when any of the organisation's patients with that number is
    marked so, whatever name or record a later call gives it.
    """
    numbers = sorted({n for n in numbers if n})
    found: set[str] = set()
    for i in range(0, len(numbers), 900):  # under SQLite's limit of query parameters
        found.update(
            Patient.objects.filter(organization_id=organization_id, phone__in=numbers[i:i + 900], do_not_call=True)
            .values_list("phone", flat=True)
        )
    return found


def number_dnc_query(organization_id, number):
    """The do-not-call patients on ``number`` (an ``Exists`` of it marks a call's number in its own query)."""
    return Patient.objects.filter(organization_id=organization_id, phone=number, do_not_call=True)


def number_refusal(organization, number: str | None, *, is_dnc: bool | None = None) -> CallRefused | None:
    """Why ``number`` may not be rung by ``organization`` (None: it may).

    ``is_dnc``: already read with the call (``calls.starting.load_call``), so not asked again.
    """
    if is_dnc is None:
        is_dnc = bool(number) and number_dnc_query(organization.pk, number).exists()
    if is_dnc:
        return CallRefused(
            "do_not_call", "This phone number is marked do-not-call (on a patient of the organisation).",
            field="phone_number",
        )
    return None


def refusal(organization, workflow, patient, number: str | None = None, *, number_is_dnc: bool | None = None
            ) -> CallRefused | None:
    """Why a dial-out to ``patient`` at ``number`` may not ring now (None: it may).

    Checked when placed, when a scheduled attempt comes due and at the moment of
    dialling (``calls.starting``), so a change in between (do-not-call, consent,
    a switched-off workflow) holds for calls already waiting.
    """
    return (
        workflow_refusal(organization, workflow)
        or patient_refusal(organization, patient)
        or number_refusal(organization, number, is_dnc=number_is_dnc)
    )


def check_workflow(organization, workflow, *, dialin: bool = False) -> None:
    """``workflow_refusal``, raised."""
    refused = workflow_refusal(organization, workflow, dialin=dialin)
    if refused is not None:
        raise refused


def check_patient(organization, patient) -> None:
    """``patient_refusal``, raised."""
    refused = patient_refusal(organization, patient)
    if refused is not None:
        raise refused


def check_number(organization, number: str) -> None:
    """``number_refusal``, raised."""
    refused = number_refusal(organization, number)
    if refused is not None:
        raise refused


def skip_reason(organization, patient, dnc_numbers: set[str] = frozenset()) -> str:
    """A campaign's reason to skip ``patient``: a refusal's code ('' when they may be called).

    ``dnc_numbers``: ``do_not_call_numbers`` of the campaign's numbers, read once for all.
    """
    refused = patient_refusal(organization, patient, check_phone=True)
    if refused is None and normalized_phone(patient.phone or "") in dnc_numbers:
        return "do_not_call"
    return refused.code if refused is not None else ""


# --- when a dial-out may ring: the callee's zones, the legal floor, the limits ------------
#
# calls.policy does the clock arithmetic (windows, openings) and combines these
# into one answer, ``policy.plan``.

class NoCallingHours(ValueError):
    """No moment when a call may ring (the zones' hours never overlap, or none is left after the floor)."""


def legal_hours(start: dt.time, end: dt.time) -> tuple[dt.time, dt.time]:
    """A workflow's window narrowed to 08:00–21:00 (callee's time), which no workflow can widen."""
    floor_start, floor_end = CALLING_HOURS_FLOOR
    start, end = max(start, floor_start), min(end, floor_end)
    if start >= end:
        raise NoCallingHours(
            f"The workflow's calling hours do not overlap {floor_start:%H:%M}–{floor_end:%H:%M}, "
            "the only hours calls may ring."
        )
    return start, end


def _zone_or_utc(name: str | None) -> str:
    try:
        return ZoneInfo(name or "UTC").key
    except (KeyError, ValueError):
        return "UTC"


@dataclass(frozen=True)
class ZoneChoice:
    """The zone(s) a callee's calling hours are read in, and why (shown on the Call patient page)."""

    zones: tuple[str, ...]
    source: str  # "patient" | "number" | "organization"

    def describe(self) -> str:
        if self.source == "patient":
            return f"{self.zones[0]}: the patient's time zone."
        if self.source == "number":
            if len(self.zones) == 1:
                return f"{self.zones[0]}: the patient has no time zone, so the phone number's area decides."
            return (
                "The patient has no time zone and the phone number's area spans " + ", ".join(self.zones)
                + ": calls ring only when the calling hours are open in every one of them."
            )
        return f"{self.zones[0]}: the clinic's time zone (the patient has none and the phone number does not tell one)."


@lru_cache(maxsize=4096)
def number_zones(number: str) -> tuple[str, ...]:
    """The IANA zones a phone number may be in (``phonenumbers``' area data); () when it does not say."""
    try:
        parsed = phonenumbers.parse(number or "", None)
    except phonenumbers.NumberParseException:
        return ()
    zones = []
    for name in pn_timezone.time_zones_for_number(parsed):
        try:
            ZoneInfo(name)
        except (KeyError, ValueError):
            continue  # "Etc/Unknown", or a name this system's zone data lacks
        zones.append(name)
    return tuple(zones)


def callee_zones(patient, organization, number: str | None = None) -> ZoneChoice:
    """The patient's zone; without one, every zone the number may be in; else the organisation's."""
    own = (getattr(patient, "timezone", "") or "") if patient is not None else ""
    if own:
        try:
            ZoneInfo(own)
            return ZoneChoice((own,), "patient")
        except (KeyError, ValueError):
            pass
    from_number = number_zones(number if number is not None else (getattr(patient, "phone", "") or ""))
    if from_number:
        return ZoneChoice(from_number, "number")
    return ZoneChoice((_zone_or_utc(organization.timezone),), "organization")


# --- how often one patient may be called ---------------------------------------------------

EMERGENCY = "emergency"


class Limit(NamedTuple):
    count: int
    span: dt.timedelta
    label: str  # "a day" / "a week", for people


DAY, WEEK = dt.timedelta(days=1), dt.timedelta(days=7)


def limits_for(organization, basis: str) -> list[Limit]:
    """The organisation's limits for calls resting on ``basis`` (none for emergencies)."""
    if basis == EMERGENCY:
        return []
    prefix = "express" if basis == "express" else "healthcare"
    limits = []
    for suffix, span, label in (("day", DAY, "a day"), ("week", WEEK, "a week")):
        count = getattr(organization, f"{prefix}_calls_per_{suffix}", None)
        if count:
            limits.append(Limit(int(count), span, label))
    return limits


def counted_moments(organization_id, patient_ids, *, exclude=None, now=None) -> dict[int, list[dt.datetime]]:
    """{patient id: when each of their dial-outs rang or will ring}, in one query.

    A call counts from the moment its bot started (it rang, or tried to), or,
    not started yet, from when it is to ring; emergency calls and calls that
    ended before starting do not count.
    """
    now = now or timezone.now()
    rows = (
        CallSession.objects.filter(organization_id=organization_id, patient_id__in=list(patient_ids),
                                   direction="dial_out")
        .exclude(consent_basis=EMERGENCY)
        .filter(Q(started_at__gte=now - WEEK - DAY) | Q(status__in=[CallStatus.SCHEDULED, CallStatus.QUEUED]))
    )
    if exclude is not None:
        rows = rows.exclude(pk=exclude)
    moments: dict[int, list[dt.datetime]] = {}
    for pid, status, started, scheduled, queued, created in rows.values_list(
        "patient_id", "status", "started_at", "scheduled_for", "queued_at", "created_at"
    ):
        at = started or (scheduled if status == CallStatus.SCHEDULED else None) or (
            (queued or created) if status == CallStatus.QUEUED else None
        )
        if at is not None:
            moments.setdefault(pid, []).append(at)
    return moments


def limit_reached(at: dt.datetime, moments, limits) -> Limit | None:
    """The limit a call ringing at ``at`` would break, given the other calls' moments; None when it may ring.

    Checks every span that holds ``at``: the fullest ends at ``at`` or at a
    later call within one span of it.
    """
    for limit in limits:
        near = [m for m in moments if at - limit.span < m < at + limit.span]
        for end in [at] + [m for m in near if m >= at]:
            if 1 + sum(1 for m in near if end - limit.span < m <= end) > limit.count:
                return limit
    return None


def first_allowed(at: dt.datetime, moments, limits, opening) -> tuple[dt.datetime, Limit | None]:
    """The first moment from ``at`` (moved into the hours by ``opening(moment)``) under every limit,
    and the limit that moved it."""
    candidates = sorted({at, *(m + limit.span for limit in limits for m in moments if m + limit.span > at)})
    blocked_by = None
    for candidate in candidates:
        when = opening(candidate)
        broken = limit_reached(when, moments, limits)
        if broken is None:
            return when, blocked_by
        blocked_by = blocked_by or broken
    raise NoCallingHours("no moment under the limits")  # unreachable: past the last call + span is free


def describe_limit(limit: Limit, basis: str) -> str:
    kind = "expressly agreed" if basis == "express" else "healthcare"
    return f"at most {limit.count} {kind} call{'s' if limit.count != 1 else ''} {limit.label} to one patient"
