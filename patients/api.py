"""Patients for an EHR integration, all scoped to the API key's organisation.

Phone numbers never travel in URLs (they would land in access logs): a lookup
by phone is `POST /api/patients/lookup` with the number in the body.
"""

# No `from __future__ import annotations`: the paginated list's `Query[...]`
# parameter must be a real annotation (myrobot/pagination.py says why).

import datetime as dt
import json
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from ninja import Path, Query, Router, Schema, Status
from ninja.pagination import paginate
from pydantic import ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from audit.models import AuditAction
from audit.services import record_request
from myrobot.errors import ApiError, errors
from myrobot.validation import INT64_MAX, StrictSchema, storable_problem
from organizations.auth import api_key_auth
from organizations.models import validate_timezone

from .models import Patient, validate_date_of_birth
from .phone import normalize_phone

router = Router(tags=["patients"], auth=api_key_auth)


def _phone(value):
    if value is None:
        return value
    try:
        return normalize_phone(value)
    except DjangoValidationError as exc:
        raise PydanticCustomError("phone", " ".join(exc.messages))


def _timezone(value):
    if not value:
        return value
    try:
        validate_timezone(value)
    except DjangoValidationError as exc:
        raise PydanticCustomError("timezone", " ".join(exc.messages))
    return value


PATIENT_IN_EXAMPLE = {
    "external_id": "EHR-1001", "first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1985-12-10",
    "phone": "+14155550123", "preferred_language": "en", "timezone": "America/Los_Angeles",
    "data": {"appointment": "Tuesday 10:30 with Dr. Rivera"}, "consent_to_call": True, "do_not_call": False,
}


#: Patient ``data`` travels in every start body (Pipecat Cloud refuses bodies
#: over 1 MB): kept well under, as compact JSON.
PATIENT_DATA_MAX_BYTES = 64 * 1024
def _date_of_birth(value):
    try:
        validate_date_of_birth(value)  # patients.models: the one rule
    except DjangoValidationError as exc:
        raise PydanticCustomError("date_of_birth", " ".join(exc.messages))
    return value


def _data(value):
    if value is None:
        return value
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > PATIENT_DATA_MAX_BYTES:
        raise PydanticCustomError(
            "data_too_large",
            "is {size} bytes as JSON; at most {limit} bytes (it travels with every call's start)",
            {"size": size, "limit": PATIENT_DATA_MAX_BYTES},
        )
    return value


class PatientIn(StrictSchema):
    model_config = ConfigDict(json_schema_extra={"examples": [PATIENT_IN_EXAMPLE]})

    external_id: str | None = Field(None, max_length=100, description="The patient's id in the EHR.")
    first_name: str = Field(..., min_length=1, max_length=100)
    last_name: str = Field("", max_length=100)
    date_of_birth: dt.date | None = None
    postal_code: str = Field("", max_length=16, description="ZIP code, asked by workflows that verify it.")
    phone: str = Field(..., description="E.164, e.g. +14155550123 (other forms are normalised).")
    preferred_language: str = Field("en", max_length=16)
    timezone: str = Field("", max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, description="What the bot may use, e.g. the appointment.")
    consent_to_call: bool = True
    do_not_call: bool = False

    _check_phone = field_validator("phone")(_phone)
    _check_tz = field_validator("timezone")(_timezone)
    _check_dob = field_validator("date_of_birth")(_date_of_birth)
    _check_data = field_validator("data")(_data)


class PatientPatch(StrictSchema):
    """Only the fields sent are changed."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"do_not_call": True}]})

    external_id: str | None = Field(None, max_length=100)
    first_name: str = Field(None, min_length=1, max_length=100)
    last_name: str = Field(None, max_length=100)
    date_of_birth: dt.date | None = None
    postal_code: str = Field(None, max_length=16)
    phone: str = None
    preferred_language: str = Field(None, max_length=16)
    timezone: str = Field(None, max_length=64)
    data: dict[str, Any] = None
    consent_to_call: bool = None
    do_not_call: bool = None

    _check_phone = field_validator("phone")(_phone)
    _check_tz = field_validator("timezone")(_timezone)
    _check_dob = field_validator("date_of_birth")(_date_of_birth)
    _check_data = field_validator("data")(_data)


class PatientOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 42, **PATIENT_IN_EXAMPLE, "created_at": "2026-05-01T09:12:00Z", "updated_at": "2026-05-03T16:40:00Z",
    }]})

    id: int
    external_id: str | None
    first_name: str
    last_name: str
    date_of_birth: dt.date | None
    postal_code: str
    phone: str
    preferred_language: str
    timezone: str
    data: dict[str, Any]
    consent_to_call: bool
    do_not_call: bool
    do_not_call_source: str = Field("", description="Who set do-not-call: `call:<session id>` when the patient asked on a call.")
    do_not_call_at: dt.datetime | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


class LookupOut(Schema):
    """Every match (at most 100), in the envelope of the paginated lists."""

    items: list[PatientOut]
    count: int


def _phone_or_digits(value):
    """A whole phone number (normalised to E.164), or at least 4 of its digits."""
    try:
        return normalize_phone(value)
    except DjangoValidationError:
        digits = "".join(ch for ch in value if ch not in " +-().")
        if len(digits) >= 4 and digits.isdigit() and len(digits) <= 20:
            return digits
        raise PydanticCustomError("phone", "a phone number, or at least 4 of its digits")


class LookupIn(StrictSchema):
    """A phone number in the body, not the URL (a URL ends up in access logs)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"phone": "+14155550123"}, {"phone": "5550123"}]})

    phone: str = Field(..., max_length=40, description="A whole number (exact match) or 4+ of its digits (contains).")

    _check_phone = field_validator("phone")(_phone_or_digits)


class PatientFilters(StrictSchema):
    external_id: str | None = Field(None, max_length=100, description="The patient's EHR id.")
    q: str | None = Field(
        None, min_length=2, max_length=100,
        description="Part of a name, or of a phone number (4 digits or more), e.g. `lovelace` or `5550123`.",
    )


def _search(qs, q: str):
    """Name (first, last, or "first last") or phone digits; case-insensitive."""
    q = q.strip()
    match = Q(first_name__icontains=q) | Q(last_name__icontains=q)
    parts = q.split(None, 1)
    if len(parts) == 2:
        match |= Q(first_name__icontains=parts[0], last_name__icontains=parts[1])
    digits = "".join(ch for ch in q if ch not in " +-().")
    if len(digits) >= 4 and digits.isdigit():  # a number, however it is written
        match |= Q(phone__contains=digits)
    return qs.filter(match)


def _get(request, patient_id: int) -> Patient:
    patient = Patient.objects.filter(organization=request.organization, pk=patient_id).first()
    if patient is None:
        raise ApiError(404, "No such patient.")
    return patient


def _save(patient: Patient, **kwargs) -> None:
    """Save, answering 409 when another patient of the organisation has the external id."""
    try:
        with transaction.atomic():
            patient.save(**kwargs)
    except IntegrityError:
        raise ApiError(
            409,
            "Another patient of this organisation already has this external_id.",
            [{"field": "external_id", "message": "Already used by another patient."}],
        )


@router.get("/patients", response={200: list[PatientOut], **errors(401, 422)}, url_name="list_patients")
@paginate
def list_patients(request, filters: Query[PatientFilters]):
    """The organisation's patients (a list or search is audited; a phone number belongs in
    `POST /api/patients/lookup`, not the URL)."""
    record_request(request, AuditAction.SEARCH_PATIENTS if filters.q or filters.external_id else
                   AuditAction.LIST_PATIENTS, object_type="patients.patient", organization_id=request.organization.pk)
    qs = Patient.objects.filter(organization=request.organization).order_by("pk")
    if filters.external_id is not None:
        qs = qs.filter(external_id=filters.external_id)
    if filters.q:
        qs = _search(qs, filters.q)
    return qs


@router.post("/patients", response={201: PatientOut, **errors(400, 401, 409, 413, 422)}, url_name="create_patient")
def create_patient(request, payload: PatientIn):
    patient = Patient(organization=request.organization, **payload.dict())
    with transaction.atomic():
        _save(patient, force_insert=True)
        record_request(request, AuditAction.CHANGE_PATIENT, patient)
    return Status(201, patient)


# Registered before /patients/{patient_id} so that its URL pattern wins.
@router.post("/patients/lookup", response={200: LookupOut, **errors(400, 401, 413, 422)}, url_name="lookup_patients")
def lookup_patients(request, payload: LookupIn):
    """Patients of the organisation with this phone number (several may share one), or part of one."""
    qs = Patient.objects.filter(organization=request.organization).order_by("pk")
    qs = qs.filter(phone=payload.phone) if payload.phone.startswith("+") else qs.filter(phone__contains=payload.phone)
    items = list(qs[:100])
    record_request(request, AuditAction.SEARCH_PATIENTS, object_type="patients.patient",
                   organization_id=request.organization.pk)
    for patient in items:
        record_request(request, AuditAction.VIEW_PATIENT, patient)
    return {"items": items, "count": len(items)}


@router.put(
    "/patients/by-external-id/{external_id}",
    response={200: PatientOut, 201: PatientOut, **errors(400, 401, 409, 413, 422)},
    url_name="upsert_patient",
)
def upsert_patient(request, payload: PatientIn, external_id: str = Path(..., max_length=100)):
    """Create (201) or replace (200) the patient with this EHR id."""
    problem = storable_problem(external_id)
    if problem:
        raise ApiError(422, f"external_id {problem}.", [{"field": "external_id", "message": problem}])
    if payload.external_id not in (None, external_id):
        raise ApiError(
            422,
            "external_id in the body differs from the one in the URL.",
            [{"field": "external_id", "message": "Must match the URL or be left out."}],
        )
    values = _replacing(payload)
    values["external_id"] = external_id
    with transaction.atomic():
        patient, created = Patient.objects.update_or_create(
            organization=request.organization, external_id=external_id, defaults=values
        )
        record_request(request, AuditAction.CHANGE_PATIENT, patient)
    return Status(201 if created else 200, patient)


def _replacing(payload: PatientIn) -> dict:
    """The fields a PUT replaces. Do-not-call only when sent: an EHR that does not know the
    flag must not clear one that staff or the patient set (they would be rung again)."""
    values = payload.dict()
    if "do_not_call" not in payload.model_fields_set:
        values.pop("do_not_call")
    return values


@router.get("/patients/{patient_id}", response={200: PatientOut, **errors(401, 404, 422)}, url_name="get_patient")
def get_patient(request, patient_id: int = Path(..., ge=-INT64_MAX - 1, le=INT64_MAX)):
    patient = _get(request, patient_id)
    record_request(request, AuditAction.VIEW_PATIENT, patient)
    return patient


@router.put(
    "/patients/{patient_id}", response={200: PatientOut, **errors(400, 401, 404, 409, 413, 422)},
    url_name="replace_patient",
)
def replace_patient(request, payload: PatientIn, patient_id: int = Path(..., ge=-INT64_MAX - 1, le=INT64_MAX)):
    patient = _get(request, patient_id)
    for name, value in _replacing(payload).items():
        setattr(patient, name, value)
    _save(patient)
    record_request(request, AuditAction.CHANGE_PATIENT, patient)
    return patient


@router.patch(
    "/patients/{patient_id}", response={200: PatientOut, **errors(400, 401, 404, 409, 413, 422)},
    url_name="update_patient",
)
def update_patient(request, payload: PatientPatch, patient_id: int = Path(..., ge=-INT64_MAX - 1, le=INT64_MAX)):
    patient = _get(request, patient_id)
    # An explicit null fails validation for every field but the nullable ones.
    changes = payload.dict(exclude_unset=True)
    for name, value in changes.items():
        setattr(patient, name, value)
    _save(patient)
    record_request(request, AuditAction.CHANGE_PATIENT, patient)
    return patient


@router.delete(
    "/patients/{patient_id}", response={204: None, **errors(401, 404, 422)}, url_name="delete_patient"
)
def delete_patient(request, patient_id: int = Path(..., ge=-INT64_MAX - 1, le=INT64_MAX)):
    """Erase the patient: their record, and their calls' transcripts, outcome notes
    and the number they were called on. The calls stay (counted, statuses and
    outcome results kept), without the patient."""
    patient = _get(request, patient_id)
    with transaction.atomic():
        record_request(request, AuditAction.ERASE_PATIENT, patient)
        patient.delete()
    return Status(204, None)
