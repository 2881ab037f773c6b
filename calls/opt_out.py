"""A patient who asks, on a call, not to be called again (by key or by voice).

Honoured by the server in the transaction that records it — the bot's
``ended {reason: opted_out}`` (or its earlier ``opt_out`` event, so a bot that
dies before ending loses nothing): the patient is marked do-not-call with the
call as its source, every call of theirs in the organisation that has not
started (scheduled follow-ups, held campaign calls) is canceled, an audit row
is written and ``patient_opted_out`` is sent (the webhooks app queues
``patient.opted_out`` in the same transaction). Once per call.
"""

from __future__ import annotations

import logging

from django.db import transaction

from audit.models import AuditAction
from audit.services import record as audit
from patients.models import Patient

from .models import CallEvent, CallSession, CallStatus
from .signals import patient_opted_out
from .state import transition

log = logging.getLogger(__name__)

OPTED_OUT = "opted_out"
# Statuses of a call that has not started ringing: canceled when its patient opts out.
NOT_STARTED = (CallStatus.SCHEDULED, CallStatus.QUEUED)


def source_for(call_id) -> str:
    return f"call:{call_id}"


def honour_opt_out(call_id, *, at, via: str = "") -> bool:
    """Mark the call's patient do-not-call and cancel what was still to ring; False when already done."""
    with transaction.atomic():
        call = CallSession.objects.filter(pk=call_id).values("organization_id", "patient_id").first()
        if call is None:
            return False
        if CallEvent.objects.filter(call_id=call_id, kind=OPTED_OUT).exists():
            return False  # this call's opt-out was honoured already (ended after an opt_out event)
        patient_id = call["patient_id"]
        if patient_id is None:
            # An unknown caller: nobody to mark. Staff see it on the call.
            CallEvent.objects.create(call_id=call_id, at=at, kind=OPTED_OUT, data={"via": via, "patient": None})
            return False
        external_id = Patient.objects.select_for_update().filter(pk=patient_id).values_list(
            "external_id", flat=True
        ).first()
        Patient.objects.filter(pk=patient_id).update(
            do_not_call=True, do_not_call_source=source_for(call_id), do_not_call_at=at
        )
        pending = list(
            CallSession.objects.filter(
                organization_id=call["organization_id"], patient_id=patient_id, status__in=list(NOT_STARTED)
            ).exclude(pk=call_id).values_list("pk", flat=True)
        )
        canceled = [
            str(pk) for pk in pending
            if transition(pk, CallStatus.CANCELED, reason="do_not_call", at=at,
                          error=f"The patient asked not to be called again (call {call_id}).",
                          data={"opted_out_on": str(call_id)})
        ]
        CallEvent.objects.create(call_id=call_id, at=at, kind=OPTED_OUT, data={"via": via, "canceled": canceled})
        audit(AuditAction.OPT_OUT, object_type="patients.patient", object_id=patient_id,
              organization_id=call["organization_id"], via="call")
        patient_opted_out.send(
            sender=CallSession, call_id=call_id, patient_id=patient_id, external_id=external_id,
            organization_id=call["organization_id"], at=at,
        )
    log.info("call %s: the patient opted out (%s); %s pending call(s) canceled", call_id, via or "?", len(canceled))
    return True
