"""Reads for the live pages and browser sockets, scoped to what a user may see.

Every function takes the organisation ids the user may read (``access.roles_for``
keys, or ``access.org_ids_with(user, READ)``) and returns querysets whose rows
carry what ``calls.broadcast.serialize_call`` touches (organization, workflow,
patient), so a page's query count does not grow with its rows.
"""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from organizations.models import Workflow

from .models import ACTIVE_STATUSES, FINAL_STATUSES, CallEvent, CallSession

RECENT_FINISHED = 25
MAX_UNFINISHED = 500


def visible_calls(org_ids) -> QuerySet[CallSession]:
    return CallSession.objects.filter(organization_id__in=list(org_ids)).select_related(
        "organization", "workflow", "patient"
    )


def unfinished_calls(org_ids) -> QuerySet[CallSession]:
    return visible_calls(org_ids).filter(status__in=list(ACTIVE_STATUSES)).order_by("-created_at")


def finished_calls(org_ids) -> QuerySet[CallSession]:
    return visible_calls(org_ids).filter(status__in=[str(s) for s in FINAL_STATUSES]).order_by("-created_at")


def live_list(
    org_ids,
    *,
    workflow_id: int | None = None,
    direction: str | None = None,
    session_ids: list[str] | None = None,
    recent: int = RECENT_FINISHED,
) -> tuple[list[CallSession], list[CallSession]]:
    """(every unfinished call, the `recent` most recent finished ones), filtered. Two queries."""

    def filtered(qs):
        if workflow_id:
            qs = qs.filter(workflow_id=workflow_id)
        if direction:
            qs = qs.filter(direction=direction)
        if session_ids is not None:
            qs = qs.filter(pk__in=session_ids)
        return qs

    unfinished = list(filtered(unfinished_calls(org_ids))[:MAX_UNFINISHED])
    finished_limit = max(recent, len(session_ids)) if session_ids is not None else recent
    finished = list(filtered(finished_calls(org_ids))[:finished_limit])
    return unfinished, finished


def workflows_for(org_ids) -> QuerySet[Workflow]:
    return Workflow.objects.filter(organization_id__in=list(org_ids)).select_related("organization").order_by(
        "organization__name", "name"
    )


def call_for(org_ids, session_id) -> CallSession | None:
    return visible_calls(org_ids).filter(pk=session_id).first()


def call_events(call: CallSession) -> QuerySet[CallEvent]:
    return CallEvent.objects.filter(call_id=call.pk).order_by("at", "id")


def next_attempt(call: CallSession) -> CallSession | None:
    """The attempt that follows this call (calls.policy), or None; no query when select_related."""
    try:
        return call.next_attempt_call
    except CallSession.DoesNotExist:
        return None


def attempt_chain(call: CallSession) -> list[CallSession]:
    """Every attempt of the call's request, first to last (a handful of rows)."""
    first = call
    seen = {call.pk}
    while first.previous_attempt_id and first.previous_attempt_id not in seen:
        prev = CallSession.objects.filter(pk=first.previous_attempt_id).first()
        if prev is None:
            break
        seen.add(prev.pk)
        first = prev
    chain = [first]
    while len(chain) < 50:
        nxt = CallSession.objects.filter(previous_attempt_id=chain[-1].pk).first()
        if nxt is None or nxt.pk in {c.pk for c in chain}:
            break
        chain.append(nxt)
    return chain


def waiting_counts(org_ids) -> dict:
    """Per organisation id: dial-outs queued and waiting for a slot, and scheduled ones."""
    rows = (
        CallSession.objects.filter(organization_id__in=list(org_ids), status__in=["queued", "scheduled"])
        .values("organization_id")
        .annotate(
            waiting=Count("pk", filter=Q(status="queued", direction="dial_out")),
            scheduled=Count("pk", filter=Q(status="scheduled")),
        )
    )
    return {r["organization_id"]: {"waiting": r["waiting"], "scheduled": r["scheduled"]} for r in rows}
