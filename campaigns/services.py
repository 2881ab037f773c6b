"""Writes and rules for campaigns: create, start, pause, resume, cancel, release at the pace.

A campaign's calls are ordinary dial-out ``CallSession`` rows tagged with
``campaign_id`` and created ``held``: nothing starts a held call. The release
step (``release_due``, one step of every dispatcher tick) lets go of at most
as many as the pace allows, under a lock on the campaign's row, so several
dispatcher processes never release more than the pace between them:

    budget = pace_per_minute − (calls of the campaign started in the last 60 s
                                + calls released and not started yet)

Counting the released-but-not-started calls is what makes the limit hold for
any 60-second span, not only per tick: every call that starts in a span was
either already started or still waiting when the span's last release was
decided, so at most ``pace_per_minute`` of them exist.

Pausing holds again every call that has not started (in-flight calls finish);
cancelling cancels every call that has not started; a campaign with no call
left to start or finish is ``completed``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditAction
from audit.services import record as audit
from audit.services import record_many as audit_many
from calls import policy, rules, state
from calls.rules import CallRefused
from calls.dialout import new_dial_out
from calls.models import FINAL_STATUSES, CallEvent, CallSession, CallStatus

from webhooks.services import campaign_finished

from . import selectors
from .broadcast import broadcast_campaign_sync
from .models import Campaign, CampaignStatus, CampaignTarget

log = logging.getLogger(__name__)

IDEMPOTENCY_TTL = dt.timedelta(hours=24)
PACE_SPAN = dt.timedelta(seconds=60)
# Statuses of a call that has not started yet (it may still be held or released).
UNSTARTED = (CallStatus.SCHEDULED, CallStatus.QUEUED)
FINAL = [str(s) for s in FINAL_STATUSES]


def skip_reason_for(organization, patient, dnc_numbers: set[str] = frozenset()) -> str:
    """Why a patient is skipped by a campaign ('' when they may be called): ``calls.rules``."""
    return rules.skip_reason(organization, patient, dnc_numbers)


def _dnc_numbers(organization_id, patients) -> set[str]:
    """The do-not-call numbers among these patients' (one query for a whole campaign)."""
    return rules.do_not_call_numbers(organization_id, {rules.normalized_phone(p.phone or "") for p in patients})


# --- create and start --------------------------------------------------------------------


def existing_for_key(organization, key: str, fingerprint: str) -> Campaign | None:
    existing = Campaign.objects.filter(organization=organization, idempotency_key=key).first()
    if existing is None:
        return None
    if existing.created_at < timezone.now() - IDEMPOTENCY_TTL:
        Campaign.objects.filter(pk=existing.pk).update(idempotency_key=None)
        return None
    if existing.request_fingerprint != fingerprint:
        raise CallRefused(
            "idempotency_conflict",
            "This Idempotency-Key was already used with a different request body; use a new key for a new campaign.",
            field="Idempotency-Key",
        )
    return existing


def add_targets(campaign: Campaign, patients) -> int:
    """Add patients (once each) to a campaign that has not started; returns how many were new."""
    if campaign.status != CampaignStatus.DRAFT:
        raise CallRefused("not_allowed", "Patients can only be added to a campaign that has not started.")
    existing = set(campaign.targets.values_list("patient_id", flat=True))
    new, seen = [], set(existing)
    patients = list(patients)
    dnc_numbers = _dnc_numbers(campaign.organization_id, patients)
    for patient in patients:
        if patient.organization_id != campaign.organization_id:
            raise CallRefused("unknown_patients", "A patient of another organisation cannot be added.")
        if patient.pk in seen:
            continue
        seen.add(patient.pk)
        new.append(CampaignTarget(campaign=campaign, patient=patient,
                                  skip_reason=skip_reason_for(campaign.organization, patient, dnc_numbers)))
    CampaignTarget.objects.bulk_create(new, batch_size=1000)
    return len(new)


def create_campaign(
    *,
    organization,
    workflow,
    name: str,
    patients,
    pace_per_minute: int = 10,
    start_at: dt.datetime | None = None,
    created_by_user=None,
    created_by_api_key=None,
    idempotency_key: str | None = None,
    request_fingerprint: str = "",
    start: bool = True,
) -> Campaign:
    """Create a campaign for ``patients`` and (``start``) start it; all or nothing.

    With ``idempotency_key`` the same key (24 h, same fingerprint) returns the
    first campaign, with ``replayed = True``.
    """
    key = (idempotency_key or "").strip() or None
    if key:
        existing = existing_for_key(organization, key, request_fingerprint)
        if existing is not None:
            existing.replayed = True
            return existing
    rules.check_workflow(organization, workflow)
    try:
        with transaction.atomic():
            campaign = Campaign.objects.create(
                organization=organization,
                workflow=workflow,
                name=name,
                pace_per_minute=pace_per_minute,
                start_at=start_at,
                created_by_user=created_by_user,
                created_by_api_key=created_by_api_key,
                idempotency_key=key,
                request_fingerprint=request_fingerprint if key else "",
            )
            add_targets(campaign, patients)
            if start:
                start_campaign(campaign, by_user=created_by_user, by_api_key=created_by_api_key)
    except IntegrityError:
        if not key:
            raise
        existing = existing_for_key(organization, key, request_fingerprint)
        if existing is None:
            raise
        existing.replayed = True
        return existing
    campaign.replayed = False
    log.info("campaign %s created (workflow %s, %s)", campaign.pk, workflow.slug, campaign.status)
    return campaign


def start_campaign(campaign: Campaign, *, by_user=None, by_api_key=None) -> Campaign:
    """draft → running: one first attempt, held, per eligible target; the others are skipped.

    Audited as the campaign's start and each call's placing, by ``by_user`` or ``by_api_key``.

    The skip reasons are checked again now (a patient may have changed since
    being added). Attempts are written in bulk: a 5,000-patient campaign starts
    in a handful of queries (bench/RESULTS.md).
    """
    with transaction.atomic():
        moved = Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.DRAFT).update(
            status=CampaignStatus.RUNNING, started_at=timezone.now()
        )
        if not moved:
            campaign.refresh_from_db()
            raise CallRefused("not_allowed", f"The campaign is {campaign.get_status_display().lower()}, not a draft.")
        organization, workflow = campaign.organization, campaign.workflow
        rules.check_workflow(organization, workflow)
        rules.check_deployment()
        now = timezone.now()
        caller_id = organization.dialout_caller_id or ""
        targets = list(campaign.targets.select_related("patient"))
        basis = workflow.consent_basis
        # Each patient's other calls, for the organisation's limits a day and a week (one query).
        moments = rules.counted_moments(organization.pk, [t.patient_id for t in targets], now=now)
        dnc_numbers = _dnc_numbers(organization.pk, [t.patient for t in targets])
        calls, reasons = [], {}
        for target in targets:
            reason = skip_reason_for(organization, target.patient, dnc_numbers)
            ring_at = None
            if not reason:
                # When it may ring under the call policy: the campaign's start, moved into the
                # workflow's hours in the callee's zone(s) and past the patient's limits.
                number = rules.normalized_phone(target.patient.phone)
                try:
                    ring_at = policy.plan(
                        workflow, target.patient, organization, basis=basis, number=number,
                        not_before=campaign.start_at, now=now, moments=moments.get(target.patient_id, []),
                    ).at
                except rules.NoCallingHours:
                    reason = SkipReason.NO_CALLING_HOURS
            if reason != target.skip_reason:
                reasons.setdefault(reason, []).append(target.pk)
            if reason:
                continue
            calls.append(
                new_dial_out(
                    organization=organization,
                    workflow=workflow,
                    patient=target.patient,
                    to_number=rules.normalized_phone(target.patient.phone),
                    from_number=caller_id,
                    ring_at=ring_at,
                    now=now,
                    campaign_id=campaign.pk,
                    held=True,
                    requested_by_user_id=campaign.created_by_user_id,
                    requested_by_api_key_id=campaign.created_by_api_key_id,
                )
            )
        for reason, pks in reasons.items():
            CampaignTarget.objects.filter(pk__in=pks).update(skip_reason=reason)
        CallSession.objects.bulk_create(calls, batch_size=1000)
        via = "api" if by_api_key is not None else "admin"
        audit(AuditAction.START_CAMPAIGN, campaign, user=by_user, api_key=by_api_key, via=via)
        audit_many(AuditAction.PLACE_CALL, calls, user=by_user, api_key=by_api_key, via=via)
        CallEvent.objects.bulk_create(
            [
                CallEvent(call_id=c.pk, at=now, kind="status",
                          data={"from": None, "to": c.status, "reason": "campaign", "campaign_id": campaign.pk,
                                "scheduled_for": c.scheduled_for.isoformat()})
                for c in calls
            ],
            batch_size=1000,
        )
        transaction.on_commit(lambda: announce(campaign.pk))
    campaign.refresh_from_db()
    log.info("campaign %s started: %s calls, %s skipped", campaign.pk, len(calls), len(targets) - len(calls))
    return campaign


# --- pause, resume, cancel --------------------------------------------------------------


def _move(campaign: Campaign, allowed_from, to: str, verb: str, *, notify: bool = True) -> None:
    updates = {"status": to}
    finishing = notify and to in (CampaignStatus.CANCELED, CampaignStatus.COMPLETED)
    if finishing:
        updates["finished_at"] = timezone.now()
    with transaction.atomic():
        moved = Campaign.objects.filter(pk=campaign.pk, status__in=list(allowed_from)).update(**updates)
        if moved and finishing:
            _notify_finished(campaign.pk)
    campaign.refresh_from_db()
    if not moved:
        raise CallRefused("not_allowed", f"A {campaign.get_status_display().lower()} campaign cannot be {verb}.")


def pause_campaign(campaign: Campaign) -> Campaign:
    """No call of the campaign starts any more; calls already started finish."""
    with transaction.atomic():
        _move(campaign, [CampaignStatus.RUNNING], CampaignStatus.PAUSED, "paused")
        # Released but not started: held again (a worker that picks one up leaves it,
        # and the dispatcher hands it again once it is released).
        CallSession.objects.filter(campaign_id=campaign.pk, held=False, status__in=UNSTARTED).update(
            held=True, dispatched_at=None
        )
        transaction.on_commit(lambda: announce(campaign.pk))
    log.info("campaign %s paused", campaign.pk)
    return campaign


def resume_campaign(campaign: Campaign) -> Campaign:
    with transaction.atomic():
        _move(campaign, [CampaignStatus.PAUSED], CampaignStatus.RUNNING, "resumed")
        transaction.on_commit(lambda: announce(campaign.pk))
    log.info("campaign %s resumed", campaign.pk)
    return campaign


def cancel_campaign(campaign: Campaign) -> Campaign:
    """Cancel the campaign and every one of its calls that has not started."""
    with transaction.atomic():
        _move(
            campaign, [CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED],
            CampaignStatus.CANCELED, "canceled", notify=False,
        )
        CallSession.objects.filter(campaign_id=campaign.pk, status__in=UNSTARTED).update(held=True)
    canceled = cancel_unstarted(campaign.pk)
    with transaction.atomic():
        # Once its calls are canceled, so the counts sent are the final ones.
        _notify_finished(campaign.pk)
    announce(campaign.pk)
    log.info("campaign %s canceled (%s calls canceled)", campaign.pk, canceled)
    return campaign


def cancel_unstarted(campaign_id) -> int:
    """Cancel the campaign's calls that have not started (through the call state machine)."""
    count = 0
    pks = list(CallSession.objects.filter(campaign_id=campaign_id, status__in=UNSTARTED).values_list("pk", flat=True))
    for pk in pks:
        if state.transition(pk, CallStatus.CANCELED, reason="campaign_canceled", broadcast=False):
            count += 1
    return count


# --- the release step ---------------------------------------------------------------------


@dataclass
class Release:
    released: int = 0
    completed: list[int] = field(default_factory=list)
    canceled_calls: int = 0


def release_step(now) -> Release:
    """The campaigns' step in every tick of the calls' dispatcher (``settings.CALL_DISPATCH_STEPS``)."""
    return release_due(now)


def release_due(now=None) -> Release:
    """Release held calls of running campaigns at their pace; the calls' dispatcher does the rest.

    A released call is an ordinary call to the policy's dispatcher: when due it
    is checked again, queued, and handed to a worker when its organisation has a
    free slot. Also finishes campaigns with nothing left to do, and cancels calls
    a canceled campaign still has (a follow-up attempt written after the cancel).
    """
    now = now or timezone.now()
    result = Release()
    running = list(
        Campaign.objects.filter(status=CampaignStatus.RUNNING)
        .filter(Q(start_at__isnull=True) | Q(start_at__lte=now))
        .values_list("pk", flat=True)
    )
    for campaign_id in running:
        result.released += _release_one(campaign_id, now)
    for campaign_id in Campaign.objects.filter(
        status__in=[CampaignStatus.RUNNING, CampaignStatus.PAUSED]
    ).values_list("pk", flat=True):
        if finish_if_done(campaign_id):
            result.completed.append(campaign_id)
    leftovers = (
        CallSession.objects.filter(status__in=UNSTARTED, campaign_id__isnull=False)
        .filter(campaign_id__in=Campaign.objects.filter(status=CampaignStatus.CANCELED).values("pk"))
        .values_list("campaign_id", flat=True).distinct()
    )
    for campaign_id in list(leftovers):
        result.canceled_calls += cancel_unstarted(campaign_id)
    return result


def pace_budget(campaign: Campaign, now) -> int:
    """How many more calls may be released now (one query, one snapshot)."""
    spent = CallSession.objects.filter(campaign_id=campaign.pk).filter(
        Q(started_at__gte=now - PACE_SPAN) | Q(held=False, status__in=UNSTARTED)
    ).count()
    return max(0, campaign.pace_per_minute - spent)


def _release_one(campaign_id, now) -> int:
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update()
            .filter(pk=campaign_id, status=CampaignStatus.RUNNING)
            .first()
        )
        if campaign is None:
            return 0
        calls = CallSession.objects.filter(campaign_id=campaign_id)
        # Released, but the policy moved it to a later opening (its window closed
        # meanwhile): held again, so it does not ring then without the pace.
        calls.filter(held=False, status=CallStatus.SCHEDULED, scheduled_for__gt=now).update(held=True)
        budget = pace_budget(campaign, now)
        if budget <= 0:
            return 0
        due = list(
            calls.filter(held=True)
            .filter(Q(status=CallStatus.SCHEDULED, scheduled_for__lte=now) | Q(status=CallStatus.QUEUED))
            .order_by("scheduled_for", "created_at", "pk")
            .values_list("pk", "status")[:budget]
        )
        if not due:
            return 0
        scheduled = [pk for pk, status in due if status == CallStatus.SCHEDULED]
        queued = [pk for pk, status in due if status == CallStatus.QUEUED]
        released = calls.filter(pk__in=scheduled, held=True).update(held=False)
        if queued:  # held again while waiting for a slot: it waits afresh
            released += calls.filter(pk__in=queued, held=True).update(held=False, queued_at=now, dispatched_at=None)
    return released


def finish_if_done(campaign_id) -> bool:
    """running/paused → completed when no call of the campaign is left to start or finish."""
    if CallSession.objects.filter(campaign_id=campaign_id).exclude(status__in=FINAL).exists():
        return False
    with transaction.atomic():
        moved = Campaign.objects.filter(
            pk=campaign_id, status__in=[CampaignStatus.RUNNING, CampaignStatus.PAUSED]
        ).update(status=CampaignStatus.COMPLETED, finished_at=timezone.now())
        if moved:
            _notify_finished(campaign_id)
    if moved:
        log.info("campaign %s completed", campaign_id)
        announce(campaign_id)
    return bool(moved)


def _notify_finished(campaign_id) -> None:
    """`campaign.finished` to the organisation's endpoints, in the transaction that ends it (an outbox)."""
    campaign = Campaign.objects.get(pk=campaign_id)
    counts, results = selectors.progress(campaign)
    campaign_finished(
        organization_id=campaign.organization_id, campaign_id=campaign.pk, name=campaign.name,
        status=campaign.status, counts=counts, results=results, finished_at=campaign.finished_at,
    )


def announce(campaign_id) -> None:
    """Tell open campaign pages (``campaigns.broadcast``)."""
    broadcast_campaign_sync(campaign_id)
