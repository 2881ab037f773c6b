"""Appointments in: the EHR's booked Appointments become reminder calls.

One search per sync (``Appointment?date=ge…&date=lt…&status=booked,cancelled
&_include=Appointment:patient``), page by page. Each page's patients are
upserted by external id, and each booked appointment we have not seen gets one
``FhirAppointment`` row and one call placed through ``calls.services.place_call``
(the call policy decides when it rings). The row is what makes it idempotent:
a re-sync finds it and places nothing. A cancelled appointment cancels its call
while that call has not started.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from calls import policy
from calls.models import CallStatus
from calls.services import CallRefused, cancel_call, place_call
from organizations.validators import validate_language
from patients.models import Patient
from patients.phone import try_normalize_phone

from .client import FhirClient
from .models import FhirAppointment, FhirConnection, LinkStatus

log = logging.getLogger(__name__)

PAGE_SIZE = 100
#: calls a cancelled appointment may still cancel (not yet ringing)
PENDING_STATUSES = frozenset({CallStatus.SCHEDULED, CallStatus.QUEUED})
TZ_EXTENSIONS = (
    "http://hl7.org/fhir/StructureDefinition/tz-code",
    "http://hl7.org/fhir/StructureDefinition/timezone",
)
PHONE_USE_RANK = {"mobile": 0, "home": 1, "work": 2, None: 3, "temp": 4}


@dataclass
class SyncResult:
    appointments: int = 0
    pages: int = 0
    patients_created: int = 0
    patients_updated: int = 0
    calls_placed: int = 0
    not_called: int = 0
    calls_canceled: int = 0
    calls_rescheduled: int = 0
    already_known: int = 0
    reasons: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


# --- reading FHIR resources -------------------------------------------------------------


def _instant(value) -> dt.datetime | None:
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, dt.timezone.utc)
    return parsed


def external_id_of(resource: dict, system: str) -> str | None:
    """The identifier of ``system`` (any, when empty); the resource id when there is none."""
    for ident in resource.get("identifier") or []:
        if ident.get("value") and (not system or ident.get("system") == system):
            return str(ident["value"])[:100]
    return f"Patient/{resource['id']}"[:100] if resource.get("id") else None


def phone_of(resource: dict) -> str:
    """The best current phone number in E.164 ("" when none is valid): mobile, then home, then work."""
    now = timezone.now()
    candidates = []
    for position, telecom in enumerate(resource.get("telecom") or []):
        if telecom.get("system") not in ("phone", "sms") or not telecom.get("value") or telecom.get("use") == "old":
            continue
        ended = _instant((telecom.get("period") or {}).get("end"))
        if ended is not None and ended < now:
            continue
        rank = (telecom.get("rank") or 99, PHONE_USE_RANK.get(telecom.get("use"), 3), position)
        candidates.append((rank, telecom["value"]))
    for _, value in sorted(candidates):
        number = try_normalize_phone(value)
        if number:
            return number
    return ""


def language_of(resource: dict) -> str:
    comms = sorted(resource.get("communication") or [], key=lambda c: not c.get("preferred"))
    for comm in comms:
        for coding in (comm.get("language") or {}).get("coding") or []:
            code = (coding.get("code") or "")[:16]
            try:
                validate_language(code)
            except ValidationError:
                continue
            if code:
                return code
    return ""


def timezone_of(resource: dict) -> str:
    for ext in resource.get("extension") or []:
        if ext.get("url") in TZ_EXTENSIONS and ext.get("valueCode"):
            try:
                policy.ZoneInfo(ext["valueCode"])
            except (KeyError, ValueError):
                return ""
            return ext["valueCode"][:64]
    return ""


def patient_fields(resource: dict, connection: FhirConnection) -> dict:
    names = resource.get("name") or [{}]
    name = next((n for n in names if n.get("use") == "official"), names[0])
    given = (name.get("given") or [""])[0] or name.get("text", "").split(" ")[0]
    fields = {
        "external_id": external_id_of(resource, connection.identifier_system),
        "first_name": (given or "Patient")[:100],
        "last_name": (name.get("family") or "")[:100],
        "date_of_birth": parse_date(resource["birthDate"]) if len(resource.get("birthDate") or "") == 10 else None,
        "phone": phone_of(resource),
    }
    language, zone = language_of(resource), timezone_of(resource)
    if language:
        fields["preferred_language"] = language
    if zone:
        fields["timezone"] = zone
    return fields


def patient_id_of(appointment: dict) -> str | None:
    for participant in appointment.get("participant") or []:
        reference = (participant.get("actor") or {}).get("reference") or ""
        if reference.startswith("Patient/"):
            return reference.split("/", 1)[1]
    return None


def appointment_text(start: dt.datetime, patient: Patient, organization) -> str:
    """What the bot reads: the time in the patient's zone, e.g. "Tuesday May 5 at 10:30 AM"."""
    local = start.astimezone(policy.patient_zone(patient, organization))
    return local.strftime("%A %B %-d at %-I:%M %p")


# --- writing ours ----------------------------------------------------------------------


def upsert_patients(connection: FhirConnection, resources: dict[str, dict], result: SyncResult) -> dict[str, Patient]:
    """FHIR Patient id → our Patient, created or brought up to date (one read for the page)."""
    wanted = {fhir_id: patient_fields(res, connection) for fhir_id, res in resources.items()}
    existing = {
        p.external_id: p
        for p in Patient.objects.filter(
            organization_id=connection.organization_id,
            external_id__in=[f["external_id"] for f in wanted.values() if f["external_id"]],
        )
    }
    out = {}
    for fhir_id, fields in wanted.items():
        if not fields["external_id"]:
            continue
        patient = existing.get(fields["external_id"])
        if patient is None:
            patient = Patient(organization_id=connection.organization_id, **fields)
            try:
                with transaction.atomic():
                    patient.save(force_insert=True)
                result.patients_created += 1
            except IntegrityError:  # another sync created it meanwhile
                patient = Patient.objects.get(organization_id=connection.organization_id,
                                              external_id=fields["external_id"])
        else:
            changed = [name for name, value in fields.items() if getattr(patient, name) != value]
            if changed:
                for name in changed:
                    setattr(patient, name, fields[name])
                patient.save(update_fields=[*changed, "updated_at"])
                result.patients_updated += 1
        existing[fields["external_id"]] = patient
        out[fhir_id] = patient
    return out


def _refuse(link: FhirAppointment, reason: str, result: SyncResult) -> None:
    link.not_called_reason = reason[:300]
    link.save(update_fields=["not_called_reason", "synced_at"])
    result.not_called += 1
    result.reasons[reason[:80]] = result.reasons.get(reason[:80], 0) + 1


def _book(connection: FhirConnection, fhir_id: str, start, end, patient: Patient, patient_fhir_id: str,
          result: SyncResult, now) -> None:
    """A booked appointment we have not seen: its row, then its one reminder call."""
    organization = connection.organization
    try:
        with transaction.atomic():
            link = FhirAppointment.objects.create(
                organization_id=connection.organization_id, connection=connection, fhir_id=fhir_id,
                patient=patient, patient_fhir_id=patient_fhir_id, start=start, end=end,
            )
    except IntegrityError:  # another sync took it first: that one calls
        result.already_known += 1
        return
    _remind(connection, link, patient, result, now)


def _remind(connection: FhirConnection, link: FhirAppointment, patient: Patient, result: SyncResult, now) -> None:
    """Place the appointment's one reminder call (or record why not)."""
    organization, start = connection.organization, link.start
    if start <= now:
        return _refuse(link, "The appointment has already started.", result)
    text = appointment_text(start, patient, organization)
    if patient.data.get("appointment") != text:
        patient.data = {**patient.data, "appointment": text}
        patient.save(update_fields=["data", "updated_at"])
    not_before = start - dt.timedelta(hours=connection.remind_hours_before)
    not_before = not_before if not_before > now else None
    ring_at = policy.ring_time_for(connection.workflow, patient, organization, not_before, now=now)
    if ring_at >= start:
        return _refuse(link, "No calling window opens before the appointment.", result)
    try:
        with transaction.atomic():
            call = place_call(
                organization=organization, workflow=connection.workflow, patient=patient, not_before=not_before,
            )
            FhirAppointment.objects.filter(pk=link.pk).update(call=call)
    except CallRefused as refused:
        return _refuse(link, refused.message, result)
    result.calls_placed += 1


def _moved(connection: FhirConnection, link: FhirAppointment, start, end, result: SyncResult, now) -> None:
    """The EHR moved the appointment: a reminder that has not rung yet is placed again for the new time
    (the old one never rang, so the patient is still called once)."""
    FhirAppointment.objects.filter(pk=link.pk).update(start=start, end=end)
    link.start, link.end = start, end
    call = link.call
    if call is None or call.status != CallStatus.SCHEDULED or link.call_result:
        return
    try:
        cancel_call(call)
    except CallRefused:
        return  # it is ringing (or ended) meanwhile
    FhirAppointment.objects.filter(pk=link.pk).update(call=None, not_called_reason="")
    result.calls_rescheduled += 1
    _remind(connection, link, link.patient, result, now)


def _cancel(link: FhirAppointment, result: SyncResult) -> None:
    FhirAppointment.objects.filter(pk=link.pk).update(status=LinkStatus.CANCELLED)
    call = link.call
    if call is not None and call.status in PENDING_STATUSES:
        try:
            cancel_call(call)
            result.calls_canceled += 1
        except CallRefused:
            pass  # it started (or ended) meanwhile


def apply_page(connection: FhirConnection, bundle: dict, result: SyncResult, now) -> None:
    entries = [e.get("resource") or {} for e in bundle.get("entry") or []]
    appointments = [r for r in entries if r.get("resourceType") == "Appointment" and r.get("id")]
    patient_resources = {r["id"]: r for r in entries if r.get("resourceType") == "Patient" and r.get("id")}
    result.appointments += len(appointments)
    links = {
        link.fhir_id: link
        for link in FhirAppointment.objects.filter(
            connection=connection, fhir_id__in=[a["id"] for a in appointments]
        ).select_related("call", "patient")
    }
    booked = [a for a in appointments if a.get("status") == "booked"]
    needed = {patient_id_of(a) for a in booked if a["id"] not in links} - {None}
    patients = upsert_patients(connection, {k: v for k, v in patient_resources.items() if k in needed}, result)
    for appointment in appointments:
        fhir_id, link = appointment["id"], links.get(appointment["id"])
        if appointment.get("status") == "cancelled":
            if link is not None and link.status != LinkStatus.CANCELLED:
                _cancel(link, result)
            continue
        if appointment.get("status") != "booked":
            continue
        start, end = _instant(appointment.get("start")), _instant(appointment.get("end"))
        if link is not None:
            result.already_known += 1
            if start and (link.start != start or link.end != end):
                _moved(connection, link, start, end, result, now)
            continue
        patient_fhir_id = patient_id_of(appointment)
        patient = patients.get(patient_fhir_id)
        if start is None or patient is None:
            log.warning("FHIR Appointment/%s skipped: no start or no included patient", fhir_id)
            continue
        _book(connection, fhir_id, start, end, patient, patient_fhir_id, result, now)


def search_params(start: dt.datetime, end: dt.datetime) -> dict:
    return {
        "date": [f"ge{start.isoformat()}", f"lt{end.isoformat()}"],
        "status": "booked,cancelled",
        "_include": "Appointment:patient",
        "_count": str(PAGE_SIZE),
    }


def sync_connection(connection: FhirConnection, start: dt.datetime, end: dt.datetime) -> SyncResult:
    """Bring the EHR's appointments between ``start`` and ``end`` in; raises FhirError."""
    result, now = SyncResult(), timezone.now()
    connection = FhirConnection.objects.select_related("organization", "workflow").get(pk=connection.pk)
    client = FhirClient(connection)
    try:
        for bundle in client.search("Appointment", search_params(start, end)):
            result.pages += 1
            with transaction.atomic():  # one commit a page, not one per row
                apply_page(connection, bundle, result, now)
    except Exception as exc:
        FhirConnection.objects.filter(pk=connection.pk).update(last_error=str(exc)[:300])
        raise
    FhirConnection.objects.filter(pk=connection.pk).update(last_sync_at=timezone.now(), last_error="")
    log.info("FHIR sync of organisation %s: %s", connection.organization_id, result.as_dict())
    return result
