"""GET /api/workflows: what an integrator may start (and where Daily posts dial-ins)."""

from django.urls import reverse
from ninja import Router, Schema
from ninja.pagination import paginate

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

    @staticmethod
    def resolve_outcome_results(wf: Workflow) -> list[str]:
        return list(wf.outcome_results or [])

    @staticmethod
    def resolve_dialin_webhook_url(wf: Workflow, context) -> str | None:
        if not wf.takes_dialin:
            return None
        return context["request"].build_absolute_uri(
            reverse("api:dialin_webhook", kwargs={"org_slug": wf.organization.slug, "workflow_slug": wf.slug})
        )


@router.get("/workflows", response=list[WorkflowOut], auth=api_key_auth, url_name="list_workflows")
@paginate
def list_workflows(request):
    """The organisation's workflows; use a `slug` as `workflow` in `POST /api/start-call`."""
    return Workflow.objects.filter(organization=request.organization).select_related("organization").order_by("name", "pk")
