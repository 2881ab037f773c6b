"""Results out: the end of a reminder call writes an outbox row in its transaction;
sending it creates a validated Communication and, where writes are allowed, sets
the patient participant's status with If-Match (412: read again, try again)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from calls.state import transition
from fhir import tasks
from fhir.models import FhirAppointment, FhirWrite, WriteKind
from tests import factories
from tests.fhir_fixtures import make_connection

pytestmark = pytest.mark.django_db


@pytest.fixture
def booked(org, fake_fhir, fhir_keys):
    """An appointment of the EHR, its row here, and its reminder call answered and talking."""
    fake_fhir.add_patient("p1")
    fake_fhir.add_appointment("a1", "p1", "2030-05-05T15:00:00Z")
    connection = make_connection(org, fake_fhir, fhir_keys, allow_writes=True)
    patient = factories.make_patient(org, external_id="MRN-p1")
    call = factories.make_call(org, connection.workflow, patient, status="in_progress",
                               answered_at=timezone.now(), transcript=[{"role": "bot", "text": "Hello Ada"}])
    link = FhirAppointment.objects.create(
        organization=org, connection=connection, fhir_id="a1", patient=patient, patient_fhir_id="p1",
        start=dt.datetime(2030, 5, 5, 15, tzinfo=dt.timezone.utc), call=call,
    )
    return link


def end_call(call, result="confirmed", status="completed", reason="completed"):
    """The bot's outcome, then the final transition; returns the outbox rows written (not yet sent)."""
    call.outcome = {"result": result, "notes": "Will arrive early.", "data": {}}
    call.save(update_fields=["outcome"])
    transition(call.pk, status, reason=reason)
    return {w.kind: w for w in FhirWrite.objects.filter(call=call)}


def send(write):
    tasks.attempt(write.pk)
    write.refresh_from_db()
    return write


def test_the_outbox_row_is_written_with_the_end_and_rolls_back_with_it(booked, django_capture_on_commit_callbacks):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            transition(booked.call.pk, "completed", reason="completed")
            assert FhirWrite.objects.filter(call=booked.call).count() == 2
            raise RuntimeError("the end does not commit")
    assert FhirWrite.objects.count() == 0

    with django_capture_on_commit_callbacks(execute=False) as sends:
        transition(booked.call.pk, "completed", reason="completed")
    assert FhirWrite.objects.filter(call=booked.call).count() == 2 and sends  # sending starts on commit


def test_a_confirmed_call_writes_a_communication_and_accepts_the_appointment(booked, fake_fhir):
    writes = end_call(booked.call, "confirmed")

    communication = send(writes[WriteKind.COMMUNICATION])
    participant = send(writes[WriteKind.PARTICIPANT_STATUS])

    assert communication.status == "done" and communication.resource_ref.startswith("Communication/")
    [sent] = fake_fhir.communications.values()
    assert sent["status"] == "completed"
    assert sent["subject"] == {"reference": "Patient/p1"} and sent["about"] == [{"reference": "Appointment/a1"}]
    assert sent["medium"][0]["coding"][0]["code"] == "PHONE" and sent["sent"]
    assert "outcome: confirmed" in sent["payload"][0]["contentString"]
    assert all("Hello Ada" not in p["contentString"] for p in sent["payload"])  # no transcript by default
    assert participant.status == "done"
    patient = fake_fhir.appointments["a1"]["participant"][0]
    assert patient == {"actor": {"reference": "Patient/p1"}, "status": "accepted"}
    [put] = fake_fhir.requests_to("PUT /Appointment/a1")
    assert put["headers"]["If-Match"] == 'W/"1"'
    assert fake_fhir.invalid == []


def test_a_cancel_declines_and_a_stale_etag_is_read_again(booked, fake_fhir):
    writes = end_call(booked.call, "cancelled")
    fake_fhir.fail_next("PUT /Appointment/a1", 412)  # changed in the EHR between our read and our write

    participant = send(writes[WriteKind.PARTICIPANT_STATUS])

    assert participant.status == "done"
    assert fake_fhir.appointments["a1"]["participant"][0]["status"] == "declined"
    assert len(fake_fhir.requests_to("GET /Appointment/a1")) == 2
    assert len(fake_fhir.requests_to("PUT /Appointment/a1")) == 2


def test_no_answer_is_recorded_as_not_done_and_no_status_changes(booked, fake_fhir):
    booked.call.status, booked.call.max_attempts = "ringing", 3
    booked.call.save(update_fields=["status", "max_attempts"])
    writes = end_call(booked.call, result="", status="no_answer", reason="no_answer")

    send(writes[WriteKind.COMMUNICATION])
    participant = send(writes[WriteKind.PARTICIPANT_STATUS])

    [sent] = fake_fhir.communications.values()
    assert sent["status"] == "not-done" and sent["statusReason"] == {"text": "no_answer"}
    assert participant.status == "done" and participant.resource_ref.startswith("nothing to change")
    assert fake_fhir.requests_to("PUT /Appointment/a1") == []
    # the call policy's next attempt is now the appointment's call
    assert FhirAppointment.objects.get(pk=booked.pk).call.previous_attempt_id == booked.call.pk


def test_the_transcript_goes_only_when_the_organisation_enables_it(booked, fake_fhir):
    booked.connection.include_transcript = True
    booked.connection.save()
    writes = end_call(booked.call)

    send(writes[WriteKind.COMMUNICATION])

    [sent] = fake_fhir.communications.values()
    assert "bot: Hello Ada" in sent["payload"][1]["contentString"]


def test_without_writes_allowed_only_the_communication_is_queued(booked, fake_fhir):
    booked.connection.allow_writes = False
    booked.connection.save()

    writes = end_call(booked.call)

    assert set(writes) == {WriteKind.COMMUNICATION}


def test_an_ehr_that_is_down_is_retried_with_backoff_and_the_retry_creates_one_communication(booked, fake_fhir):
    writes = end_call(booked.call)
    fake_fhir.fail_next("POST /Communication", 503)

    write = send(writes[WriteKind.COMMUNICATION])

    assert (write.status, write.attempts, write.last_status_code) == ("pending", 1, 503)
    assert "answered 503" in write.last_error
    assert dt.timedelta(seconds=9) < write.next_attempt_at - write.last_attempt_at <= dt.timedelta(seconds=10)
    assert tasks.sending.send_write(write.pk) == (None, None)  # not due yet

    with time_machine.travel(write.next_attempt_at + dt.timedelta(seconds=1)):
        write = send(write)
        again = FhirWrite.objects.get(pk=write.pk)
        FhirWrite.objects.filter(pk=write.pk).update(status="pending", next_attempt_at=timezone.now())
        send(again)  # an admin's "send again": the conditional create finds the first one

    assert write.status == "done" and len(fake_fhir.communications) == 1
    assert len(fake_fhir.requests_to("POST /Communication")) == 3


def test_the_sweep_sends_what_a_dead_sender_left(booked, fake_fhir, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks, "schedule_write", lambda pk, countdown=0: sent.append(pk))
    writes = end_call(booked.call)

    tasks.sweep()

    assert sorted(sent) == sorted(w.pk for w in writes.values())
