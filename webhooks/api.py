"""GET /api/webhooks/deliveries: what was sent to the organisation's endpoints, and how it went."""

# No `from __future__ import annotations`: the paginated list's `Query[...]`
# parameter must be a real annotation (myrobot/pagination.py says why).

import datetime as dt
from typing import Any, Literal

from ninja import Query, Router, Schema
from ninja.pagination import paginate
from pydantic import ConfigDict, Field, model_validator

from myrobot.errors import errors
from myrobot.validation import StrictSchema
from organizations.auth import api_key_auth

from .models import DeliveryStatus, WebhookDelivery, WebhookEvent

router = Router(tags=["webhooks"])


class DeliveryOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 17, "webhook_id": "msg_5f0c8e2a9b7d4e61a3c2f1e0d9b8a7c6", "event_type": "call.ended",
        "endpoint_url": "https://ehr.example.org/hooks/myrobot", "status": "delivered", "attempts": 2,
        "last_status_code": 204, "last_error": "", "next_attempt_at": None,
        "delivered_at": "2026-05-04T17:02:22.140Z", "created_at": "2026-05-04T17:02:11.512Z",
        "data": {"session_id": "0b6f2c1e-3f7a-4c55-9d1e-2a8f3b9c7d10", "external_id": "EHR-1001", "workflow": "appointment-reminder",
                 "direction": "dial_out", "status": "completed", "end_reason": "completed",
                 "outcome": {"result": "confirmed"}, "attempt": 1,
                 "next_attempt_at": None, "campaign_id": None, "started_at": "2026-05-04T17:00:02.104Z",
                 "answered_at": "2026-05-04T17:00:09.877Z", "ended_at": "2026-05-04T17:02:11.509Z"},
    }]})

    id: int
    webhook_id: str = Field(..., description="The `webhook-id` header, the same on every attempt.")
    event_type: str
    endpoint_url: str
    status: str = Field(..., description="pending, delivered or failed.")
    attempts: int
    last_status_code: int | None
    last_error: str
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    created_at: dt.datetime
    data: dict[str, Any]

    @model_validator(mode="wrap")
    @classmethod
    def _read_delivery(cls, value, handler):
        """A WebhookDelivery (a page of the list) is read through `_out`."""
        return handler(_out(value) if isinstance(value, WebhookDelivery) else value)


class DeliveryFilters(StrictSchema):
    status: Literal[tuple(DeliveryStatus.values)] | None = None  # type: ignore[valid-type]
    event_type: Literal[tuple(WebhookEvent.values)] | None = None  # type: ignore[valid-type]
    session_id: str | None = Field(None, max_length=40, description="Deliveries about this call.")


def _out(d: WebhookDelivery) -> dict:
    return {
        "id": d.pk,
        "webhook_id": d.message_id,
        "event_type": d.event_type,
        "endpoint_url": d.endpoint.url,
        "status": d.status,
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "next_attempt_at": d.next_attempt_at,
        "delivered_at": d.delivered_at,
        "created_at": d.created_at,
        "data": d.payload or {},
    }


@router.get(
    "/webhooks/deliveries",
    response={200: list[DeliveryOut], **errors(401, 422)},
    auth=api_key_auth,
    url_name="list_webhook_deliveries",
)
@paginate
def list_deliveries(request, filters: Query[DeliveryFilters]):
    """The organisation's webhook deliveries, newest first."""
    qs = WebhookDelivery.objects.filter(organization=request.organization).select_related("endpoint")
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.event_type:
        qs = qs.filter(event_type=filters.event_type)
    if filters.session_id:
        qs = qs.filter(event_key=f"call.ended:{filters.session_id}")
    return qs.order_by("-created_at", "-pk")
