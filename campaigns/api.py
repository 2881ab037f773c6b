"""Campaigns over HTTP: create (with an Idempotency-Key), list, read, pause, resume, cancel.

Thin handlers: objects are resolved in the key's organisation (another
organisation's campaign is a 404) and ``campaigns.services`` does the work.
"""

# No `from __future__ import annotations`: the paginated list's `Query[...]`
# parameter must be a real annotation (myrobot/pagination.py says why).

import datetime as dt
import hashlib
import json

from ninja import Header, Query, Router, Schema, Status
from ninja.pagination import paginate
from pydantic import ConfigDict, Field, field_validator, model_validator

from myrobot.errors import ApiError, errors
from myrobot.validation import Int64
from organizations.auth import api_key_auth
from organizations.models import Workflow
from patients.models import Patient

from . import selectors, services
from .models import MAX_PACE_PER_MINUTE, Campaign, CampaignStatus

router = Router(tags=["campaigns"])

MAX_TARGETS = 10_000


CAMPAIGN_EXAMPLE = {
    "id": 42, "name": "Flu shot reminders, week 49", "workflow": "appointment-reminder", "status": "running",
    "pace_per_minute": 10, "start_at": None, "created_at": "2026-12-01T08:00:00Z",
    "counts": {"pending": 118, "active": 3, "reached": 71, "unreachable": 4, "failed": 0, "skipped": 2, "canceled": 0},
    "results": {"confirmed": 64, "rescheduled": 7},
    "skipped": [{"external_id": "EHR-1017", "reason": "do_not_call"}, {"external_id": "EHR-1042", "reason": "no_consent"}],
}


class CampaignIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "Flu shot reminders, week 49", "workflow": "appointment-reminder",
        "external_ids": ["EHR-1001", "EHR-1002", "EHR-1017"], "pace_per_minute": 10,
        "start_at": "2026-12-01T09:00:00-05:00",
    }]})

    name: str = Field(..., min_length=1, max_length=200)
    workflow: str = Field(..., min_length=1, max_length=64, description="A dial-out workflow's slug.")
    external_ids: list[str] = Field(..., min_length=1, max_length=MAX_TARGETS, description="The patients' EHR ids.")
    pace_per_minute: int = Field(10, ge=1, le=MAX_PACE_PER_MINUTE, description="At most this many starts in any 60 s.")
    start_at: dt.datetime | None = Field(None, description="ISO-8601 with a UTC offset; no call rings before it.")

    @field_validator("name")
    @classmethod
    def _name(cls, value):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @field_validator("external_ids")
    @classmethod
    def _ids(cls, value):
        for item in value:
            if not item or len(item) > 100 or "\x00" in item:
                raise ValueError("each external id is 1 to 100 characters, without NUL characters")
        return value

    @field_validator("start_at")
    @classmethod
    def _aware(cls, value):
        if value is not None and value.utcoffset() is None:
            raise ValueError("give a UTC offset, e.g. 2026-12-01T09:00:00+01:00")
        return value


class SkippedOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"external_id": "EHR-1017", "reason": "do_not_call"}]})

    external_id: str | None
    reason: str


class CountsOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [CAMPAIGN_EXAMPLE["counts"]]})

    pending: int
    active: int
    reached: int
    unreachable: int
    failed: int
    skipped: int
    canceled: int


class CampaignOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [CAMPAIGN_EXAMPLE]})

    id: int
    name: str
    workflow: str
    status: str
    pace_per_minute: int
    start_at: dt.datetime | None
    created_at: dt.datetime
    counts: CountsOut
    results: dict[str, int]
    skipped: list[SkippedOut]

    @model_validator(mode="wrap")
    @classmethod
    def _read_campaign(cls, value, handler):
        """A Campaign (a page of `GET /api/campaigns`) is read through `_out`."""
        return handler(_out(value) if isinstance(value, Campaign) else value)


class CampaignFilters(Schema):
    status: CampaignStatus | None = None


def _refusal(exc: services.CallRefused) -> ApiError:
    errors = exc.errors or ([{"field": exc.field, "message": exc.message}] if exc.field else [])
    return ApiError(exc.status, exc.message, errors)


def _out(campaign: Campaign) -> dict:
    counts, results = selectors.progress(campaign)
    return {
        "id": campaign.pk,
        "name": campaign.name,
        "workflow": campaign.workflow.slug,
        "status": campaign.status,
        "pace_per_minute": campaign.pace_per_minute,
        "start_at": campaign.start_at,
        "created_at": campaign.created_at,
        "counts": counts,
        "results": results,
        "skipped": [{"external_id": s["external_id"], "reason": s["reason"]} for s in selectors.skipped(campaign)],
    }


def _fingerprint(payload: Schema) -> str:
    canonical = json.dumps(payload.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _get(request, campaign_id: Int64) -> Campaign:
    campaign = (
        Campaign.objects.select_related("workflow", "organization")
        .filter(organization=request.organization, pk=campaign_id)
        .first()
    )
    if campaign is None:
        raise ApiError(404, "No such campaign.")
    return campaign


@router.post(
    "/campaigns", response={201: CampaignOut, 200: CampaignOut, **errors(400, 401, 404, 409, 413, 422)},
    auth=api_key_auth, url_name="create_campaign",
)
def create_campaign(
    request,
    payload: CampaignIn,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=200),
):
    """Create a campaign and start it (at `start_at`, else now).

    Unknown external ids → 422 listing them, nothing created. Patients marked
    do-not-call, without consent or with an invalid number are skipped with the
    reason. The same `Idempotency-Key` (per organisation, 24 h) returns the same
    campaign (200); reused with another body → 409.
    """
    org = request.organization
    workflow = Workflow.objects.filter(organization=org, slug=payload.workflow).first()
    if workflow is None:
        raise ApiError(404, "No such workflow.", [{"field": "workflow", "message": "Unknown workflow slug."}])
    wanted = list(dict.fromkeys(payload.external_ids))
    patients = {p.external_id: p for p in Patient.objects.filter(organization=org, external_id__in=wanted)}
    unknown = [ext for ext in wanted if ext not in patients]
    key = (idempotency_key or "").strip() or None
    fingerprint = _fingerprint(payload)
    if key:
        try:
            existing = services.existing_for_key(org, key, fingerprint)
        except services.CallRefused as exc:
            raise _refusal(exc)
        if existing is not None:
            return Status(200, _out(existing))
    if unknown:
        raise ApiError(
            422,
            f"{len(unknown)} external id(s) match no patient of this organisation; nothing was created.",
            [{"field": "external_ids", "message": f"Unknown external id: {ext}"} for ext in unknown[:100]],
        )
    try:
        campaign = services.create_campaign(
            organization=org,
            workflow=workflow,
            name=payload.name,
            patients=[patients[ext] for ext in wanted if ext in patients],
            pace_per_minute=payload.pace_per_minute,
            start_at=payload.start_at,
            created_by_api_key=request.api_key,
            idempotency_key=key,
            request_fingerprint=fingerprint,
        )
    except services.CallRefused as exc:
        raise _refusal(exc)
    return Status(200 if getattr(campaign, "replayed", False) else 201, _out(campaign))


@router.get(
    "/campaigns", response={200: list[CampaignOut], **errors(401, 422)},
    auth=api_key_auth, url_name="list_campaigns",
)
@paginate
def list_campaigns(request, filters: Query[CampaignFilters]):
    """The organisation's campaigns, newest first, with their counts."""
    qs = Campaign.objects.filter(organization=request.organization).select_related("workflow")
    if filters.status:
        qs = qs.filter(status=filters.status)
    return qs.order_by("-created_at", "-pk")


@router.get(
    "/campaigns/{campaign_id}", response={200: CampaignOut, **errors(401, 404, 422)},
    auth=api_key_auth, url_name="get_campaign",
)
def get_campaign(request, campaign_id: Int64):
    """One campaign: status, counts by each target's latest attempt, outcome results, skipped patients."""
    return _out(_get(request, campaign_id))


def _action(request, campaign_id: int, service):
    campaign = _get(request, campaign_id)
    try:
        service(campaign)
    except services.CallRefused as exc:
        raise _refusal(exc)
    return _out(campaign)


@router.post(
    "/campaigns/{campaign_id}/pause", response={200: CampaignOut, **errors(401, 404, 409, 422)},
    auth=api_key_auth, url_name="pause_campaign",
)
def pause_campaign(request, campaign_id: Int64):
    """No call of the campaign starts until it is resumed; calls in progress finish. 409 unless running."""
    return _action(request, campaign_id, services.pause_campaign)


@router.post(
    "/campaigns/{campaign_id}/resume", response={200: CampaignOut, **errors(401, 404, 409, 422)},
    auth=api_key_auth, url_name="resume_campaign",
)
def resume_campaign(request, campaign_id: Int64):
    """Start calls again at the campaign's pace. 409 unless paused."""
    return _action(request, campaign_id, services.resume_campaign)


@router.post(
    "/campaigns/{campaign_id}/cancel", response={200: CampaignOut, **errors(401, 404, 409, 422)},
    auth=api_key_auth, url_name="cancel_campaign",
)
def cancel_campaign(request, campaign_id: Int64):
    """Cancel the campaign and every call of it that has not started. 409 when it has already finished."""
    return _action(request, campaign_id, services.cancel_campaign)
