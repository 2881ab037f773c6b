"""GET /api/workflows: what an integrator may start (and where Daily posts dial-ins)."""

from django.urls import reverse
from ninja import Field, Query, Router, Schema

from myrobot.errors import errors
from myrobot.pagination import Page, PageParams, paginate

from .auth import api_key_auth
from .models import Workflow

router = Router(tags=["workflows"])


class WorkflowOut(Schema):
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


@router.get(
    "/workflows", response={200: Page[WorkflowOut], **errors(401, 422)}, auth=api_key_auth, url_name="list_workflows"
)
def list_workflows(request, page: Query[PageParams]):
    """The organisation's workflows; use a `slug` as `workflow` in `POST /api/start-call`."""
    org = request.organization
    result = paginate(Workflow.objects.filter(organization=org).order_by("name", "pk"), page)
    items = []
    for wf in result["items"]:
        url = None
        if wf.takes_dialin:
            url = request.build_absolute_uri(
                reverse("api:dialin_webhook", kwargs={"org_slug": org.slug, "workflow_slug": wf.slug})
            )
        items.append(
            {
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
        )
    return {"items": items, "count": result["count"]}
