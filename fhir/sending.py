"""Sending the EHR writes of the outbox (fhir.writeback): building each resource
from the call at send time, one attempt at a time, with backoff."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from calls.models import CallSession, CallStatus

from .client import Conflict, FhirClient, FhirError
from .models import FhirAppointment, FhirWrite, WriteKind, WriteStatus
from .resources_check import InvalidResource

log = logging.getLogger(__name__)

#: seconds before attempt n+1 after attempt n failed (about a day in all), as the webhooks'
RETRY_DELAYS_S = (10, 60, 5 * 60, 30 * 60, 2 * 3600, 6 * 3600, 15 * 3600)
MAX_ATTEMPTS = len(RETRY_DELAYS_S) + 1
CLAIM_S = 60
CONFLICT_RETRIES = 3
CALL_SYSTEM = "urn:myrobot:call"
ACCEPTED_RESULTS = frozenset({"confirmed"})
DECLINED_RESULTS = frozenset({"declined", "cancelled", "canceled"})


# --- building the resources -----------------------------------------------------------


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def outcome_result(call: CallSession, link: FhirAppointment) -> str:
    """What the call settled: the tools' change first, else the outcome's result."""
    if link.call_result:
        return link.call_result
    outcome = call.outcome if isinstance(call.outcome, dict) else {}
    return str(outcome.get("result") or "")


def communication_for(call: CallSession, link: FhirAppointment) -> dict:
    """The Communication recording the call; the transcript only when the organisation enabled it."""
    outcome = call.outcome if isinstance(call.outcome, dict) else {}
    result = outcome_result(call, link)
    completed = call.status == CallStatus.COMPLETED
    summary = f"Reminder call {call.get_status_display().lower()}"
    if result:
        summary += f"; outcome: {result}"
    if outcome.get("notes"):
        summary += f". {str(outcome['notes'])[:1000]}"
    resource = {
        "resourceType": "Communication",
        "identifier": [{"system": CALL_SYSTEM, "value": str(call.pk)}],
        "status": "completed" if completed else "not-done",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "reminder",
        }]}],
        "medium": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode", "code": "PHONE",
            "display": "telephone",
        }]}],
        "subject": {"reference": f"Patient/{link.patient_fhir_id}"},
        "about": [{"reference": link.reference}],
        "reasonCode": [{"text": "Appointment reminder"}],
        "sent": _iso(call.answered_at or call.started_at or call.created_at),
        "payload": [{"contentString": summary}],
    }
    if not completed:
        resource["statusReason"] = {"text": call.end_reason or call.status}
    if link.connection.include_transcript and call.transcript:
        lines = [
            f"{line.get('role', '?')}: {line.get('text', '')}" for line in call.transcript if isinstance(line, dict)
        ]
        resource["payload"].append({"contentString": "Transcript:\n" + "\n".join(lines)})
    return resource


def participant_target(call: CallSession, link: FhirAppointment) -> str:
    result = outcome_result(call, link)
    if result in ACCEPTED_RESULTS:
        return "accepted"
    if result in DECLINED_RESULTS:
        return "declined"
    return ""


def set_participant_status(client: FhirClient, link: FhirAppointment, target: str) -> str:
    """The patient participant's status on the Appointment, with If-Match; a 412 re-reads and tries again."""
    actor = f"Patient/{link.patient_fhir_id}"
    for _ in range(CONFLICT_RETRIES):
        resource, etag = client.read("Appointment", link.fhir_id)
        participant = next(
            (p for p in resource.get("participant") or [] if (p.get("actor") or {}).get("reference") == actor), None
        )
        if participant is None:
            raise FhirError(f"{link.reference} no longer lists the patient as a participant.", 422)
        if participant.get("status") == target:
            return f"{link.reference} (already {target})"
        participant["status"] = target
        try:
            client.update(resource, etag)
            return f"{link.reference} participant {target}"
        except Conflict:
            log.info("FHIR %s changed meanwhile: reading it again", link.reference)
    raise Conflict(f"{link.reference} kept changing ({CONFLICT_RETRIES} tries).", 412)


# --- sending --------------------------------------------------------------------------


def _claim(write_id, now) -> bool:
    return bool(
        FhirWrite.objects.filter(pk=write_id, status=WriteStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + timedelta(seconds=CLAIM_S))
    )


def perform(write: FhirWrite) -> str:
    """One write to the EHR; returns what it made. Raises FhirError / InvalidResource."""
    call = CallSession.objects.get(pk=write.call_id)
    link = write.appointment
    client = FhirClient(write.connection)
    if write.kind == WriteKind.COMMUNICATION:
        _, location = client.create(
            communication_for(call, link), if_none_exist=f"identifier={CALL_SYSTEM}|{call.pk}"
        )
        return location
    target = participant_target(call, link)
    if not target:
        return "nothing to change (no confirm or cancel)"
    return set_participant_status(client, link, target)


def send_write(write_id) -> tuple[str | None, int | None]:
    """One attempt if due and unclaimed: (new status, seconds to the next attempt)."""
    now = timezone.now()
    if not _claim(write_id, now):
        return None, None
    write = FhirWrite.objects.select_related("connection", "appointment__connection").get(pk=write_id)
    attempts = write.attempts + 1
    updates = {"attempts": attempts, "last_attempt_at": now, "claimed_until": None}
    retry_in = None
    try:
        ref = perform(write)
    except InvalidResource as exc:  # ours is wrong: trying again will not help
        updates.update(status=WriteStatus.FAILED, next_attempt_at=None, last_error=str(exc)[:300])
    except FhirError as exc:
        updates.update(last_status_code=exc.status, last_error=str(exc)[:300])
        permanent = exc.status is not None and 400 <= exc.status < 500 and exc.status not in (401, 408, 409, 412, 429)
        if permanent or attempts >= MAX_ATTEMPTS:
            updates.update(status=WriteStatus.FAILED, next_attempt_at=None)
        else:
            retry_in = RETRY_DELAYS_S[attempts - 1]
            updates["next_attempt_at"] = now + timedelta(seconds=retry_in)
    else:
        updates.update(status=WriteStatus.DONE, done_at=timezone.now(), next_attempt_at=None, resource_ref=ref[:200],
                       last_error="", last_status_code=None)
    FhirWrite.objects.filter(pk=write.pk).update(**updates)
    log.info("FHIR write %s (%s) attempt %s: %s", write.pk, write.kind, attempts,
             updates.get("status", "retry") if "last_error" not in updates or not updates["last_error"]
             else updates["last_error"])
    return updates.get("status", WriteStatus.PENDING), retry_in


def due_writes(now=None, limit: int = 200) -> list[int]:
    now = now or timezone.now()
    return list(
        FhirWrite.objects.filter(status=WriteStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
