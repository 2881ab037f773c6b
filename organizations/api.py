"""GET /api/workflows: what an integrator may start (and where Daily posts dial-ins)."""

from django.urls import reverse
from ninja import Field, Router, Schema
from ninja.pagination import paginate
from pydantic import ConfigDict, ValidationInfo, model_validator

from myrobot.errors import errors

from .auth import api_key_auth
from .models import Workflow

router = Router(tags=["workflows"])


class WorkflowOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "slug": "appointment-reminder", "name": "Appointment reminder", "direction": "dial_out", "is_active": True,
        "takes_dialin": False, "dials_out": True, "max_duration_s": 600,
        "outcome_results": ["confirmed", "rescheduled", "declined", "unreachable"], "dialin_webhook_url": None,
    }]})

    slug: str
    name: str
    direction: str
    is_active: bool
    takes_dialin: bool
    dials_out: bool
    max_duration_s: int
    outcome_results: list[str]
    dialin_webhook_url: str | None = None
    window_start: str = Field(..., description="Calls ring from this local time (patient's zone, else the organisation's).")
    window_end: str
    window_days: list[int] = Field(..., description="ISO weekdays, 1 = Monday … 7 = Sunday.")
    retry_on: list[str]
    max_attempts: int
    retry_delays_min: list[int]

    @model_validator(mode="wrap")
    @classmethod
    def _read_workflow(cls, value, handler, info: ValidationInfo):
        """A Workflow (a page of `GET /api/workflows`) is read through `_workflow_out`, with the request."""
        return handler(_workflow_out(value, info.context["request"]) if isinstance(value, Workflow) else value)


def _workflow_out(wf: Workflow, request) -> dict:
    url = None
    if wf.takes_dialin:
        url = request.build_absolute_uri(
            reverse("api:dialin_webhook", kwargs={"org_slug": request.organization.slug, "workflow_slug": wf.slug})
        )
    return {
        "slug": wf.slug,
        "name": wf.name,
        "direction": wf.direction,
        "is_active": wf.is_active,
        "takes_dialin": wf.takes_dialin,
        "dials_out": wf.dials_out,
        "max_duration_s": wf.max_duration_s,
        "outcome_results": list(wf.outcome_results or []),
        "dialin_webhook_url": url,
        "window_start": wf.window_start.strftime("%H:%M"),
        "window_end": wf.window_end.strftime("%H:%M"),
        "window_days": list(wf.window_days or []),
        "retry_on": list(wf.retry_on or []),
        "max_attempts": wf.max_attempts,
        "retry_delays_min": list(wf.retry_delays_min or []),
    }


@router.get(
    "/workflows", response={200: list[WorkflowOut], **errors(401, 422)}, auth=api_key_auth, url_name="list_workflows"
)
@paginate
def list_workflows(request):
    """The organisation's workflows; use a `slug` as `workflow` in `POST /api/start-call`."""
    return Workflow.objects.filter(organization=request.organization).order_by("name", "pk")
