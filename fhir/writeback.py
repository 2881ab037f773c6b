"""Results out: when a reminder call ends, what it found goes back to the EHR.

The outbox pattern of the webhooks: ``on_call_ended`` runs inside the final
transition's transaction and writes ``FhirWrite`` rows (a Communication, and
where the connection allows writes the patient participant's status on the
Appointment). They are sent when the transaction commits (``fhir.sending``),
retried with backoff for about a day, and swept up by a periodic task if the
sender died. The resources are built from the call when sent, so a late
outcome goes too.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from calls.models import CallSession

from .models import FhirAppointment, FhirWrite, WriteKind, WriteStatus
from .tasks import schedule_write

log = logging.getLogger(__name__)


# --- the outbox, in the call's transaction --------------------------------------------


def on_call_ended(sender, call_id, status, **kwargs) -> None:
    """``calls.signals.call_ended`` receiver. One query for a call no appointment is about."""
    link = FhirAppointment.objects.filter(call_id=call_id).select_related("connection").first()
    if link is None or not link.connection.is_active:
        return
    kinds = [WriteKind.COMMUNICATION]
    if link.connection.allow_writes:
        kinds.append(WriteKind.PARTICIPANT_STATUS)
    ids = []
    for kind in kinds:
        try:
            with transaction.atomic():
                ids.append(FhirWrite.objects.create(
                    organization_id=link.organization_id, connection_id=link.connection_id, appointment=link,
                    call_id=call_id, kind=kind, next_attempt_at=timezone.now(),
                ).pk)
        except IntegrityError:
            log.info("FHIR %s for call %s already queued", kind, call_id)
    # The call policy's next attempt (written just before, in this transaction) is now the appointment's call.
    follow = CallSession.objects.filter(previous_attempt_id=call_id).values_list("pk", flat=True).first()
    if follow is not None:
        FhirAppointment.objects.filter(pk=link.pk).update(call_id=follow)
    if ids:
        transaction.on_commit(lambda: [schedule_write(pk) for pk in ids])


def retry_now(write: FhirWrite) -> None:
    """The admin's "send again": due now, whatever became of it."""
    FhirWrite.objects.filter(pk=write.pk).update(status=WriteStatus.PENDING, next_attempt_at=timezone.now(),
                                                 claimed_until=None)
    transaction.on_commit(lambda: schedule_write(write.pk))
