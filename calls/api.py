"""Calls over HTTP: Daily's dial-in webhook, start-call, and reading/canceling calls.

Handlers are thin: they resolve objects in the key's organisation (another
organisation's object is a 404), call ``calls.services`` and shape the answer.
"""

# No `from __future__ import annotations`: the paginated list's `Query[...]`
# parameter must be a real annotation (myrobot/pagination.py says why).

import datetime as dt
import hashlib
import json
import logging
import uuid
from typing import Any, Literal

from asgiref.sync import sync_to_async
from django.db.models import F
from django.urls import reverse
from ninja import Header, Path, Query, Router, Schema, Status
from ninja.pagination import paginate
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from audit.models import AuditAction
from audit.services import record_request
from myrobot.errors import ApiError, errors
from myrobot.validation import INT64_MAX, Int64, StrictSchema, aware_in_range, loads_strict
from organizations.auth import api_key_auth
from organizations.models import Workflow
from patients.models import Patient

from . import retention, selectors, services, webhooks
from .models import CallSession, CallStatus

log = logging.getLogger(__name__)

router = Router(tags=["calls"])


def _refusal(exc: services.CallRefused) -> ApiError:
    errors = [{"field": exc.field, "message": exc.message}] if exc.field else []
    return ApiError(exc.status, exc.message, errors)


# --- Daily pinless dial-in webhook ----------------------------------------------------


class DialinWebhookIn(StrictSchema):
    """What Daily posts to `room_creation_api`."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    call_id: str = Field(..., alias="callId", min_length=1, max_length=100)
    call_domain: str = Field(..., alias="callDomain", min_length=1, max_length=100)
    from_number: str = Field("", alias="From", max_length=64)
    to_number: str = Field("", alias="To", max_length=64)
    sip_headers: dict[str, Any] | None = Field(None, alias="sipHeaders")


class DialinOut(Schema):
    session_id: str | None = None
    test: bool | None = None


def _handle_dialin(org_slug: str, workflow_slug: str, body: bytes, headers) -> dict:
    """The whole webhook, in one sync call (one thread hop from the async view).

    Check order (docs/architecture.md): route 404 → verification request 200 → signature
    401 → fields 400/422 → the call. Nothing is written before the last step.
    """
    workflow = (
        Workflow.objects.select_related("organization")
        .filter(organization__slug=org_slug, organization__is_active=True, slug=workflow_slug)
        .first()
    )
    if workflow is None or not workflow.takes_dialin:
        raise ApiError(404, "No dial-in workflow at this address: check the organisation and workflow slugs.")
    organization = workflow.organization

    try:
        data = loads_strict(body) if body else None
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and ("Test" in data or "test" in data):
        return {"test": True}

    try:
        webhooks.verify_request(organization, body, headers)
    except webhooks.SignatureError as exc:
        log.warning("dial-in webhook for %s/%s refused: %s", org_slug, workflow_slug, exc)
        raise ApiError(401, "The webhook signature is missing, invalid or too old.")

    if data is None:
        raise ApiError(400, "The request body is not valid JSON.")
    if not isinstance(data, dict):
        raise ApiError(422, "The request body must be a JSON object.", [{"field": "body", "message": "Expected an object."}])
    try:
        fields = DialinWebhookIn.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]} for err in exc.errors()
        ]
        raise ApiError(422, "Invalid request: check " + ", ".join(e["field"] for e in errors) + ".", errors)

    try:
        call, _created = services.accept_dialin(
            organization=organization,
            workflow=workflow,
            call_id=fields.call_id,
            call_domain=fields.call_domain,
            from_number=fields.from_number,
            to_number=fields.to_number,
            sip_headers=fields.sip_headers,
        )
    except services.CallRefused as exc:
        raise _refusal(exc)
    return {"session_id": str(call.pk)}


@router.post(
    "/dialin-webhook/{org_slug}/{workflow_slug}",
    response={200: DialinOut, **errors(400, 401, 404, 409, 413, 422, 503)},
    auth=None,
    exclude_none=True,
    url_name="dialin_webhook",
    tags=["dial-in"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": DialinWebhookIn.model_json_schema(by_alias=True)}},
        },
        "parameters": [
            {"name": webhooks.SIGNATURE_HEADER, "in": "header", "required": False, "schema": {"type": "string"}},
            {"name": webhooks.TIMESTAMP_HEADER, "in": "header", "required": False, "schema": {"type": "string"}},
        ],
    },
)
async def dialin_webhook(request, org_slug: str, workflow_slug: str):
    """Daily's pinless dial-in `room_creation_api`: creates the call (once per `callId`) and starts its bot.

    Signed with the organisation's webhook secret (`X-Pinless-Signature`,
    `X-Pinless-Timestamp`). A verification request (body with `Test`) answers
    200 and does nothing.
    """
    return await sync_to_async(_handle_dialin)(org_slug, workflow_slug, request.body, request.headers)


# --- start-call ---------------------------------------------------------------------


class StartCallIn(StrictSchema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"external_id": "EHR-1001", "workflow": "appointment-reminder"}]}
    )

    patient_id: Int64 | None = Field(None, description="Our patient id (or give external_id).")
    external_id: str | None = Field(None, max_length=100, description="The EHR's patient id (or give patient_id).")
    workflow: str = Field(..., min_length=1, max_length=64, description="A workflow slug (GET /api/workflows).")
    phone_number: str | None = Field(None, max_length=32, description="E.164 number to call instead of the patient's.")
    caller_id: str | None = Field(
        None, max_length=64,
        description="Caller id: an E.164 number or Daily's phone-number id (a UUID); default: the organisation's.",
    )
    not_before: dt.datetime | None = Field(
        None,
        description="ISO-8601 with a UTC offset: ring no earlier than this (moved into the workflow's calling window).",
    )
    consent_basis: Literal["express", "healthcare_exempt", "emergency"] | None = Field(
        None, description="What this call rests on (default: the workflow's); it decides which limits apply.",
    )
    if_capped: Literal["schedule", "refuse"] = Field(
        "schedule",
        description="Over the organisation's limit a day or a week for this patient: `schedule` the call for when "
                    "it is allowed (default) or `refuse` it (409 `frequency_cap`).",
    )

    @field_validator("not_before")
    @classmethod
    def _not_before_in_range(cls, value):
        """In UTC; near year 1 or 9999 it is refused (the window search would pass the calendar's end)."""
        if value is None or value.utcoffset() is None:
            return value  # no offset: the handler names the field
        return aware_in_range(value)


class StartCallOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "session_id": "0b6f2c1e-3f7a-4c55-9d1e-2a8f3b9c7d10", "status": "queued",
        "poll_url": "https://myrobot.example.org/api/calls/0b6f2c1e-3f7a-4c55-9d1e-2a8f3b9c7d10",
    }]})

    session_id: str
    status: str = Field(..., description="`queued` (ringing now) or `scheduled` (see `scheduled_for`).")
    scheduled_for: dt.datetime | None = Field(None, description="When a scheduled call will ring.")
    frequency_cap: str | None = Field(
        None, description="The limit that moved the call later, e.g. `1 a day` (null: none did).",
    )
    poll_url: str


def _fingerprint(payload: Schema) -> str:
    canonical = json.dumps(payload.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@router.post(
    "/start-call",
    response={202: StartCallOut, **errors(400, 401, 404, 409, 413, 422, 503)},
    auth=api_key_auth,
    url_name="start_call",
)
def start_call(
    request,
    payload: StartCallIn,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=200),
):
    """Place a dial-out call. The same `Idempotency-Key` (per organisation, 24 h) returns the same session."""
    if (payload.patient_id is None) == (payload.external_id is None):
        message = "Give exactly one of patient_id and external_id."
        raise ApiError(422, message, [{"field": "patient_id", "message": message}])
    if payload.not_before is not None and payload.not_before.utcoffset() is None:
        message = "Give not_before with a UTC offset, e.g. 2026-03-09T09:00:00-05:00."
        raise ApiError(422, message, [{"field": "not_before", "message": message}])
    org = request.organization
    workflow = Workflow.objects.filter(organization=org, slug=payload.workflow).first()
    if workflow is None:
        raise ApiError(404, "No such workflow.", [{"field": "workflow", "message": "Unknown workflow slug."}])
    patients = Patient.objects.filter(organization=org)
    if payload.patient_id is not None:
        patient = patients.filter(pk=payload.patient_id).first()
        field = "patient_id"
    else:
        patient = patients.filter(external_id=payload.external_id).first()
        field = "external_id"
    if patient is None:
        raise ApiError(404, "No such patient.", [{"field": field, "message": "Unknown patient."}])
    try:
        call = services.place_call(
            organization=org,
            workflow=workflow,
            patient=patient,
            phone_number=payload.phone_number,
            caller_id=payload.caller_id,
            requested_by_api_key=request.api_key,
            idempotency_key=idempotency_key,
            request_fingerprint=_fingerprint(payload),
            not_before=payload.not_before,
            consent_basis=payload.consent_basis,
            if_capped=payload.if_capped,
        )
    except services.CallRefused as exc:
        raise _refusal(exc)
    capped = getattr(getattr(call, "plan", None), "capped_by", None)
    call.refresh_from_db(fields=["status"])
    poll_url = request.build_absolute_uri(reverse("api:get_call", kwargs={"session_id": str(call.pk)}))
    return Status(202, {
        "session_id": str(call.pk), "status": call.status, "scheduled_for": call.scheduled_for,
        "frequency_cap": f"{capped.count} {capped.label}" if capped else None, "poll_url": poll_url,
    })


# --- reading and canceling calls ------------------------------------------------------


CALL_EXAMPLE = {
    "session_id": "0b6f2c1e-3f7a-4c55-9d1e-2a8f3b9c7d10", "status": "completed", "direction": "dial_out",
    "workflow": "appointment-reminder", "patient_id": 42, "patient_external_id": "EHR-1001",
    "from_number": "+14155550100", "to_number": "+14155550123",
    "created_at": "2026-05-04T17:00:00.812Z", "started_at": "2026-05-04T17:00:02.104Z",
    "answered_at": "2026-05-04T17:00:09.877Z", "ended_at": "2026-05-04T17:02:11.509Z",
    "end_reason": "completed", "error": "", "consent_basis": "healthcare_exempt",
    "outcome": {"result": "confirmed", "notes": "Will arrive 10 minutes early.", "data": {}},
}


class CallOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [CALL_EXAMPLE]})

    session_id: str
    status: str
    direction: str
    workflow: str
    patient_id: int | None
    patient_external_id: str | None
    from_number: str
    to_number: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    answered_at: dt.datetime | None
    ended_at: dt.datetime | None
    end_reason: str
    error: str
    consent_basis: str = Field("", description="`express`, `healthcare_exempt` or `emergency` (\"\" for dial-ins).")
    outcome: dict[str, Any] | None
    scheduled_for: dt.datetime | None = Field(None, description="When a scheduled call will ring (not before).")
    attempt: int = Field(1, description="Which attempt of the request this call is, from 1.")
    max_attempts: int = Field(1, description="Attempts the workflow allows for the request.")
    previous_attempt: str | None = Field(None, description="Session id of the attempt before this one.")
    next_attempt: str | None = Field(None, description="Session id of the attempt after this one.")
    next_attempt_at: dt.datetime | None = Field(None, description="When the next attempt rings (or rang).")

    @model_validator(mode="wrap")
    @classmethod
    def _read_call(cls, value, handler):
        """A CallSession (a page of `GET /api/calls`) is read through `_call_out`."""
        return handler(_call_out(value) if isinstance(value, CallSession) else value)


class CallEventOut(Schema):
    seq: int | None
    kind: str
    at: dt.datetime
    data: dict[str, Any]


class CallDetailOut(CallOut):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **CALL_EXAMPLE,
        "transcript": [
            {"role": "assistant", "text": "Hello, this is Sunrise Family Clinic calling about your appointment.",
             "at": "2026-05-04T17:00:10.200Z", "seq": 7},
            {"role": "user", "text": "Yes, I will be there.", "at": "2026-05-04T17:00:16.900Z", "seq": 9},
        ],
        "events": [{"seq": None, "kind": "status", "at": "2026-05-04T17:02:11.509Z",
                    "data": {"from": "in_progress", "to": "completed", "reason": "completed"}}],
    }]})

    transcript: list[dict[str, Any]]
    events: list[CallEventOut]


def _call_out(call: CallSession) -> dict:
    return {
        "session_id": str(call.pk),
        "status": call.status,
        "direction": call.direction,
        "workflow": call.workflow.slug,
        "patient_id": call.patient_id,
        "patient_external_id": call.patient.external_id if call.patient_id else None,
        "from_number": call.from_number,
        "to_number": call.to_number,
        "created_at": call.created_at,
        "started_at": call.started_at,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "end_reason": call.end_reason,
        "error": call.error,
        "consent_basis": call.consent_basis,
        "outcome": call.outcome if isinstance(call.outcome, dict) else None,
        **attempt_fields(call),
    }


def attempt_fields(call: CallSession) -> dict:
    """The call policy's fields of a call resource: when it rings, and its chain of attempts."""
    nxt = selectors.next_attempt(call)
    return {
        "scheduled_for": call.scheduled_for,
        "attempt": call.attempt,
        "max_attempts": call.max_attempts,
        "previous_attempt": str(call.previous_attempt_id) if call.previous_attempt_id else None,
        "next_attempt": str(nxt.pk) if nxt else None,
        "next_attempt_at": nxt.scheduled_for if nxt else None,
    }


def _call_detail(call: CallSession) -> dict:
    out = _call_out(call)
    out["transcript"] = [line for line in (call.transcript or []) if isinstance(line, dict)]
    out["events"] = [
        {"seq": e.seq, "kind": e.kind, "at": e.at, "data": e.data if isinstance(e.data, dict) else {"value": e.data}}
        for e in call.events.order_by("at", "id")
    ]
    return out


def _get_call(request, session_id: str) -> CallSession:
    try:
        pk = uuid.UUID(session_id)
    except ValueError:
        raise ApiError(404, "No such call.")
    call = (
        CallSession.objects.select_related("workflow", "patient", "next_attempt_call")
        .filter(organization=request.organization, pk=pk)
        .first()
    )
    if call is None:
        raise ApiError(404, "No such call.")
    return call


ORDERINGS = {
    "-created_at": ("-created_at", "-pk"),
    "created_at": ("created_at", "pk"),
    "-ended_at": (F("ended_at").desc(nulls_last=True), "-pk"),
    "ended_at": (F("ended_at").asc(nulls_last=True), "pk"),
}


class CallFilters(StrictSchema):
    status: Literal[tuple(CallStatus.values)] | None = Field(None, description="e.g. `completed`.")  # type: ignore[valid-type]
    outcome: str | None = Field(
        None, max_length=64, description="The outcome's result, e.g. `confirmed` (see the workflow's outcome_results)."
    )
    end_reason: str | None = Field(None, max_length=64, description="e.g. `completed`, `no_answer`, `voicemail`.")
    direction: Literal["dial_in", "dial_out"] | None = None
    patient_id: Int64 | None = None
    external_id: str | None = Field(None, max_length=100, description="The patient's EHR id.")
    workflow: str | None = Field(None, max_length=64, description="Workflow slug.")
    campaign: Int64 | None = Field(None, description="Calls of this campaign (its id).")
    created_after: dt.datetime | None = Field(None, description="ISO-8601 with offset, e.g. 2026-05-04T00:00:00Z.")
    created_before: dt.datetime | None = None
    ended_after: dt.datetime | None = None
    ended_before: dt.datetime | None = None
    ordering: Literal[tuple(ORDERINGS)] = Field(  # type: ignore[valid-type]
        "-created_at", description="`-created_at` (newest first, default), `created_at`, `-ended_at`, `ended_at`."
    )

    @field_validator("created_after", "created_before", "ended_after", "ended_before")
    @classmethod
    def _in_utc_range(cls, value):
        """A time the database can compare (no offset pushing it past year 1 or 9999)."""
        if value is None:
            return value
        try:
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            return value.astimezone(dt.timezone.utc)
        except (OverflowError, ValueError):
            raise PydanticCustomError("datetime_range", "is outside the years 1 to 9999 in UTC")


@router.get("/calls", response={200: list[CallOut], **errors(401, 422)}, auth=api_key_auth, url_name="list_calls")
@paginate
def list_calls(request, filters: Query[CallFilters]):
    """The organisation's calls, newest first; every filter narrows the list (an unknown parameter is a 422).

    Example: calls that ended confirmed yesterday —
    `GET /api/calls?outcome=confirmed&ended_after=2026-05-04T00:00:00Z&ended_before=2026-05-05T00:00:00Z`.
    """
    record_request(request, AuditAction.LIST_CALLS, object_type="calls.callsession",
                   organization_id=request.organization.pk)
    qs = CallSession.objects.filter(organization=request.organization).select_related(
        "workflow", "patient", "next_attempt_call"
    )
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.outcome:
        qs = qs.filter(outcome__result=filters.outcome)
    if filters.end_reason:
        qs = qs.filter(end_reason=filters.end_reason)
    if filters.direction:
        qs = qs.filter(direction=filters.direction)
    if filters.patient_id is not None:
        qs = qs.filter(patient_id=filters.patient_id)
    if filters.external_id is not None:
        qs = qs.filter(patient__external_id=filters.external_id)
    if filters.workflow:
        qs = qs.filter(workflow__slug=filters.workflow)
    if filters.campaign is not None:
        qs = qs.filter(campaign_id=filters.campaign)
    if filters.created_after:
        qs = qs.filter(created_at__gte=filters.created_after)
    if filters.created_before:
        qs = qs.filter(created_at__lt=filters.created_before)
    if filters.ended_after:
        qs = qs.filter(ended_at__gte=filters.ended_after)
    if filters.ended_before:
        qs = qs.filter(ended_at__lt=filters.ended_before)
    return qs.order_by(*ORDERINGS[filters.ordering])


@router.get(
    "/calls/{session_id}", response={200: CallDetailOut, **errors(401, 404)}, auth=api_key_auth, url_name="get_call"
)
def get_call(request, session_id: str):
    """One call: status, timestamps, end reason, outcome, transcript and events."""
    call = _get_call(request, session_id)
    record_request(request, AuditAction.VIEW_CALL, call)
    return _call_detail(call)


@router.post(
    "/calls/{session_id}/cancel",
    response={200: CallDetailOut, **errors(401, 404, 409)},
    auth=api_key_auth,
    url_name="cancel_call",
)
def cancel_call(request, session_id: str):
    """Cancel a call that has not ended: it is marked `canceled` and its Daily room deleted."""
    call = _get_call(request, session_id)
    try:
        services.cancel_call(call, by_api_key=request.api_key)
    except services.CallRefused as exc:
        raise _refusal(exc)
    return _call_detail(call)


class PatientExportOut(Schema):
    """Everything held on one patient: the record and every call with its transcript and timeline."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "exported_at": "2026-05-04T10:00:00+00:00",
        "patient": {
            "id": 42, "external_id": "EHR-1001", "first_name": "Ada", "last_name": "Lovelace",
            "date_of_birth": "1970-01-02", "phone": "+14155550123", "preferred_language": "en", "timezone": "",
            "data": {"appointment": "Tuesday 10:30"}, "consent_to_call": True, "do_not_call": False,
            "created_at": "2026-05-01T09:12:00+00:00", "updated_at": "2026-05-03T16:40:00+00:00",
            "calls": [{
                "session_id": "0b6f2c1e-3f7a-4c55-9d1e-2a8f3b9c7d10", "workflow": "appointment-reminder",
                "direction": "dial_out", "status": "completed", "from_number": "", "to_number": "+14155550123",
                "created_at": "2026-05-03T16:00:00+00:00", "answered_at": "2026-05-03T16:00:09+00:00",
                "ended_at": "2026-05-03T16:01:30+00:00", "end_reason": "completed",
                "outcome": {"result": "confirmed", "notes": "Will arrive 10 minutes early.", "data": {}},
                "transcript": [{"role": "user", "text": "Yes, I'll be there.", "at": "2026-05-03T16:00:40+00:00"}],
                "purged_at": None,
                "events": [{"at": "2026-05-03T16:00:09+00:00", "kind": "status",
                            "data": {"from": "ringing", "to": "in_progress"}}],
            }],
        },
    }]})

    exported_at: dt.datetime
    patient: dict[str, Any]


@router.get(
    "/patients/{patient_id}/export", response={200: PatientExportOut, **errors(401, 404, 422)},
    auth=api_key_auth, url_name="export_patient", tags=["patients"],
)
def export_patient(request, patient_id: int = Path(..., ge=-INT64_MAX - 1, le=INT64_MAX)):
    """The patient's record (a subject access request): their fields and data, and
    their calls with transcripts, outcomes and events. Audited."""
    patient = Patient.objects.filter(organization=request.organization, pk=patient_id).first()
    if patient is None:
        raise ApiError(404, "No such patient.")
    record_request(request, AuditAction.EXPORT_PATIENT, patient)
    return retention.export_patient(patient)
