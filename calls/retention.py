"""A patient's data over time: retention purges, erasure and export (docs/security.md, "Data lifecycle").

- ``purge_expired`` (Celery beat daily, or ``manage.py purge_call_data``): for each
  organisation with ``transcript_retention_days``, the final calls created before
  that many days ago lose their transcript, outcome notes and data, and their
  events' payloads (``scrub_calls``). Ids, statuses, times, end reasons, outcome
  results and the dashboard's roll-ups stay. One audit row per organisation purged.
- Erasure: deleting a patient (the admin's delete action, ``DELETE
  /api/patients/{id}``) scrubs their calls first (``pre_delete``), which also
  lose the patient's phone number; the calls stay, counted, without a patient.
- ``export_patient``: the patient's record and calls as one JSON-ready dict.

``patients`` may not import ``calls``, so all of it lives here.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models.signals import pre_delete
from django.utils import timezone

from audit.models import AuditAction
from audit.services import record
from organizations.models import Direction, Organization
from patients.models import Patient

from .models import FINAL_STATUSES, CallEvent, CallSession

log = logging.getLogger(__name__)

BATCH = 500
#: an event's payload keys kept by a purge: a status move's from/to/reason, a
#: metrics event's numbers (``rebuild_call_days`` recounts from them)
KEPT_EVENT_KEYS = {"status": ("from", "to", "reason"), "metrics": ("turn_ms",)}


def scrub_calls(call_ids, *, now=None, forget_phone: bool = False) -> int:
    """Remove these calls' transcripts, outcome notes and data, and event payloads.

    ``forget_phone`` also blanks the patient's number on the call (erasure). The
    rows themselves, their statuses and outcome results stay, so the dashboard's
    roll-ups (``calls.rollup``) stay true and ``rebuild_call_days`` gives the same counts.
    """
    now = now or timezone.now()
    call_ids = list(call_ids)
    for start in range(0, len(call_ids), BATCH):
        chunk = call_ids[start:start + BATCH]
        calls = list(CallSession.objects.filter(pk__in=chunk).only("pk", "outcome", "direction"))
        for call in calls:
            if isinstance(call.outcome, dict):
                call.outcome = {"result": call.outcome.get("result")}
            call.transcript = []
            call.purged_at = now
            if forget_phone:
                if call.direction == Direction.DIAL_OUT:
                    call.to_number = ""
                else:
                    call.from_number = ""
        fields = ["outcome", "transcript", "purged_at"] + (["to_number", "from_number"] if forget_phone else [])
        CallSession.objects.bulk_update(calls, fields)
        events = CallEvent.objects.filter(call_id__in=chunk)
        kept = list(events.filter(kind__in=list(KEPT_EVENT_KEYS)).only("pk", "kind", "data"))
        for event in kept:
            keys = KEPT_EVENT_KEYS[event.kind]
            event.data = {k: v for k, v in (event.data or {}).items() if k in keys}
        CallEvent.objects.bulk_update(kept, ["data"])
        events.exclude(kind__in=list(KEPT_EVENT_KEYS)).update(data={})
    return len(call_ids)


# --- retention ----------------------------------------------------------------------------------


def expired_calls(organization: Organization, now):
    """Final calls of the organisation older than its retention, not purged yet."""
    cutoff = now - timedelta(days=organization.transcript_retention_days)
    return CallSession.objects.filter(
        organization=organization, created_at__lt=cutoff, status__in=list(FINAL_STATUSES), purged_at__isnull=True,
    )


def purge_expired(now=None) -> dict[int, int]:
    """Purge every organisation's calls past its retention; {organisation id: calls purged}."""
    now = now or timezone.now()
    purged = {}
    for organization in Organization.objects.filter(transcript_retention_days__isnull=False):
        ids = list(expired_calls(organization, now).values_list("pk", flat=True))
        if not ids:
            continue
        with transaction.atomic():
            scrub_calls(ids, now=now)
            record(AuditAction.PURGE, organization, organization_id=organization.pk, via="retention")
        purged[organization.pk] = len(ids)
        log.info("retention: purged %d call(s) of organisation %s", len(ids), organization.pk)
    return purged


# --- a patient's rights -------------------------------------------------------------------------


def _scrub_on_delete(sender, instance: Patient, **kwargs) -> None:
    ids = CallSession.objects.filter(patient_id=instance.pk).values_list("pk", flat=True)
    scrub_calls(ids, forget_phone=True)


def connect_signals() -> None:
    pre_delete.connect(_scrub_on_delete, sender=Patient, dispatch_uid="calls.retention.scrub_on_delete")


def _iso(value):
    return value.isoformat() if value else None


PATIENT_EXPORT_FIELDS = (
    "id", "external_id", "first_name", "last_name", "date_of_birth", "phone", "preferred_language", "timezone",
    "data", "consent_to_call", "do_not_call", "created_at", "updated_at",
)


def export_patient(patient: Patient) -> dict:
    """Everything MyRobot holds on the patient: their record and their calls (with
    transcripts, outcomes and the calls' timelines), as JSON-ready values."""
    out = {}
    for name in PATIENT_EXPORT_FIELDS:
        value = getattr(patient, name)
        out[name] = value.isoformat() if hasattr(value, "isoformat") else value
    calls = (
        CallSession.objects.filter(patient=patient, organization_id=patient.organization_id)
        .select_related("workflow").prefetch_related("events").order_by("created_at")
    )
    out["calls"] = [
        {
            "session_id": str(call.pk),
            "workflow": call.workflow.slug,
            "direction": call.direction,
            "status": call.status,
            "from_number": call.from_number,
            "to_number": call.to_number,
            "created_at": _iso(call.created_at),
            "answered_at": _iso(call.answered_at),
            "ended_at": _iso(call.ended_at),
            "end_reason": call.end_reason,
            "outcome": call.outcome,
            "transcript": call.transcript,
            "purged_at": _iso(call.purged_at),
            "events": [{"at": _iso(e.at), "kind": e.kind, "data": e.data} for e in call.events.all()],
        }
        for call in calls
    ]
    return {"exported_at": _iso(timezone.now()), "patient": out}
