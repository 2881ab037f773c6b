"""Reads for campaigns: progress by each target's latest attempt, skipped targets, calls.

Each function runs a fixed number of queries whatever the campaign's size, so
the admin page and the API's ``GET`` cost the same for 50 or 5,000 patients
(tests/test_campaigns_queries.py).
"""

from __future__ import annotations

from calls.models import CallSession, CallStatus

from .models import Campaign, CampaignTarget, SkipReason

PROGRESS_KEYS = ("pending", "active", "reached", "unreachable", "failed", "skipped", "canceled")

# A target's state, from its latest attempt's call status.
TARGET_STATE = {
    "scheduled": "pending",
    CallStatus.QUEUED: "pending",
    CallStatus.STARTING: "active",
    CallStatus.RINGING: "active",
    CallStatus.WAITING: "active",
    CallStatus.IN_PROGRESS: "active",
    CallStatus.COMPLETED: "reached",
    CallStatus.NO_ANSWER: "unreachable",
    CallStatus.BUSY: "unreachable",
    CallStatus.FAILED: "failed",
    CallStatus.CANCELED: "canceled",
}


def progress(campaign: Campaign) -> tuple[dict, dict]:
    """``(counts, results)``: targets by state, and the outcome results of the reached ones.

    Two queries. A target's state is its latest attempt's (a no-answer with a
    follow-up scheduled is still pending); a target without a call is pending
    until the campaign starts, skipped when it has a skip reason.
    """
    counts = dict.fromkeys(PROGRESS_KEYS, 0)
    results: dict[str, int] = {}
    latest: dict[int, tuple] = {}
    rows = CallSession.objects.filter(campaign_id=campaign.pk).values_list(
        "patient_id", "status", "outcome", "attempt", "created_at"
    )
    for patient_id, status, outcome, attempt, created_at in rows.iterator(chunk_size=2000):
        seen = latest.get(patient_id)
        order = (attempt, created_at)  # the attempt number first: two attempts may share a timestamp
        if seen is None or order >= seen[2]:
            latest[patient_id] = (status, outcome, order)
    targets = CampaignTarget.objects.filter(campaign=campaign).values_list("patient_id", "skip_reason")
    for patient_id, skip_reason in targets.iterator(chunk_size=2000):
        call = latest.get(patient_id)
        if call is None:
            counts["skipped" if skip_reason else "pending"] += 1
            continue
        status, outcome = call[0], call[1]
        state = TARGET_STATE.get(status, "pending")
        counts[state] += 1
        if state == "reached":
            result = outcome.get("result") if isinstance(outcome, dict) else None
            key = str(result) if result else "none"
            results[key] = results.get(key, 0) + 1
    return counts, results


def skipped(campaign: Campaign) -> list[dict]:
    """``[{external_id, reason}]`` for the targets the campaign does not call (one query)."""
    rows = (
        CampaignTarget.objects.filter(campaign=campaign)
        .exclude(skip_reason="")
        .order_by("id")
        .values_list("patient__external_id", "patient_id", "skip_reason")
    )
    return [{"external_id": ext, "patient_id": pid, "reason": reason, "reason_label": SkipReason(reason).label}
            for ext, pid, reason in rows]


def calls_of(campaign: Campaign, limit: int = 200):
    """The campaign's latest calls with what a page row needs (one query)."""
    return (
        CallSession.objects.filter(campaign_id=campaign.pk)
        .select_related("organization", "workflow", "patient")
        .order_by("-created_at", "pk")[:limit]
    )


def campaigns_for(org_ids):
    return Campaign.objects.filter(organization_id__in=list(org_ids)).select_related("workflow", "organization")
