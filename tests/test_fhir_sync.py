"""Appointments in: booked Appointments in a range become patients and reminder
calls, page after page, once each; a cancelled one cancels its pending call."""

from __future__ import annotations

import datetime as dt
import io
import json
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from calls.models import CallSession, CallStatus
from fhir.client import FhirError
from fhir.models import FhirAppointment, FhirConnection
from fhir.sync import sync_connection
from patients.models import Patient
from tests.fhir_fixtures import make_connection

pytestmark = pytest.mark.django_db


def at(days: float, hour: int = 15) -> dt.datetime:
    day = (timezone.now() + dt.timedelta(days=days)).date()
    return dt.datetime.combine(day, dt.time(hour, 0), tzinfo=dt.timezone.utc)


def fhir_time(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def ehr(org, fake_fhir, fhir_keys, fake_daily):
    """Three booked appointments in the next days, over pages of two."""
    fake_fhir.max_page = 2
    fake_fhir.add_patient("p1", given="Ada", family="Lovelace", phone="(415) 555-0123", mrn="MRN-1",
                          language="es", tz="America/Los_Angeles")
    fake_fhir.add_patient("p2", given="Alan", family="Turing", phone="+1 415 555 0124", mrn="MRN-2")
    fake_fhir.add_patient("p3", given="Grace", family="Hopper", phone="+14155550125", mrn="MRN-3")
    fake_fhir.add_appointment("a1", "p1", fhir_time(at(2)))
    fake_fhir.add_appointment("a2", "p2", fhir_time(at(2, 16)))
    fake_fhir.add_appointment("a3", "p3", fhir_time(at(3)))
    fake_fhir.add_appointment("a-late", "p3", fhir_time(at(9)))  # outside the range
    return make_connection(org, fake_fhir, fhir_keys)


def sync(connection):
    return sync_connection(connection, at(0, 0), at(5, 0))


def test_booked_appointments_become_patients_and_scheduled_reminder_calls(ehr, fake_fhir, org):
    result = sync(ehr)

    assert (result.appointments, result.pages, result.calls_placed) == (3, 2, 3)
    ada = Patient.objects.get(organization=org, external_id="MRN-1")
    assert (ada.first_name, ada.last_name, ada.phone) == ("Ada", "Lovelace", "+14155550123")
    assert (ada.preferred_language, ada.timezone) == ("es", "America/Los_Angeles")
    assert Patient.objects.get(external_id="MRN-2").phone == "+14155550124"
    call = FhirAppointment.objects.get(fhir_id="a1").call
    assert call.patient == ada and call.status == CallStatus.SCHEDULED
    assert call.scheduled_for == at(2) - dt.timedelta(hours=24)  # remind_hours_before
    local = at(2).astimezone(ZoneInfo("America/Los_Angeles"))  # 15:00 UTC: 7 or 8 AM there
    assert ada.data["appointment"] == local.strftime("%A %B %-d at %-I:%M %p")
    assert len(fake_fhir.requests_to("GET /Appointment")) == 2  # the next link was followed
    assert not fake_fhir.invalid


def test_a_second_sync_calls_nobody_twice(ehr, fake_fhir):
    sync(ehr)
    again = sync(ehr)

    assert (again.calls_placed, again.already_known) == (0, 3)
    assert CallSession.objects.count() == 3
    assert FhirAppointment.objects.count() == 3


def test_a_cancelled_appointment_cancels_its_pending_call(ehr, fake_fhir):
    sync(ehr)
    fake_fhir.change(fake_fhir.appointments["a2"], status="cancelled")

    result = sync(ehr)

    assert result.calls_canceled == 1
    link = FhirAppointment.objects.get(fhir_id="a2")
    assert link.status == "cancelled" and link.call.status == CallStatus.CANCELED
    assert FhirAppointment.objects.get(fhir_id="a1").call.status == CallStatus.SCHEDULED


def test_a_patient_who_opted_out_is_not_called_and_the_row_says_why(ehr, org):
    Patient.objects.create(organization=org, external_id="MRN-3", first_name="Grace", phone="+14155550125",
                           do_not_call=True)

    result = sync(ehr)

    assert result.calls_placed == 2 and result.not_called == 1
    link = FhirAppointment.objects.get(fhir_id="a3")
    assert link.call is None and link.not_called_reason == "The patient is marked do-not-call."


def test_a_page_that_fails_keeps_what_came_before_and_the_next_sync_finishes(ehr, fake_fhir):
    fake_fhir.fail_next_page = 503  # the second page answers 503, once

    with pytest.raises(FhirError, match="next page"):
        sync(ehr)
    assert CallSession.objects.count() == 2  # the first page's
    assert FhirConnection.objects.get(pk=ehr.pk).last_error.startswith("Search Appointment (next page)")

    result = sync(ehr)

    assert (result.calls_placed, result.already_known) == (1, 2) and CallSession.objects.count() == 3
    assert FhirConnection.objects.get(pk=ehr.pk).last_error == ""


def test_the_command_syncs_a_date_range(ehr, org):
    out = io.StringIO()
    today = timezone.now().date()
    call_command("fhir_sync", "--org", org.slug, "--from", str(today), "--to", str(today + dt.timedelta(days=4)),
                 stdout=out)

    assert json.loads(out.getvalue())["calls_placed"] == 3


def test_the_command_names_a_bad_argument(ehr, org):
    with pytest.raises(CommandError, match="--from: 'tomorrow' is not an ISO date"):
        call_command("fhir_sync", "--org", org.slug, "--from", "tomorrow", "--to", "2026-01-01")
    with pytest.raises(CommandError, match="--org: the organisation 'nope' has no FHIR connection"):
        call_command("fhir_sync", "--org", "nope", "--from", "2026-01-01", "--to", "2026-01-02")


def test_an_appointment_moved_in_the_ehr_moves_its_reminder_not_a_second_call(ehr, fake_fhir):
    sync(ehr)
    old_call = FhirAppointment.objects.get(fhir_id="a3").call
    fake_fhir.change(fake_fhir.appointments["a3"], start=fhir_time(at(4)), end=fhir_time(at(4)))

    result = sync(ehr)

    link = FhirAppointment.objects.get(fhir_id="a3")
    old_call.refresh_from_db()
    assert result.calls_rescheduled == 1 and old_call.status == CallStatus.CANCELED
    assert link.start == at(4) and link.call.scheduled_for == at(4) - dt.timedelta(hours=24)
    assert CallSession.objects.exclude(status=CallStatus.CANCELED).count() == 3
