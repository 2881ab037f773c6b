"""Scheduling during the call, through the bot's tool channel: confirm, cancel,
find free slots and book one, against the fake EHR (or the organisation's
signed tool webhook); a slot taken meanwhile offers the next one; a slow EHR
asks for a call back; a repeated request books nothing twice."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from django.utils import timezone

from calls.models import CallEvent
from calls.state import transition
from fhir.models import FhirAppointment, ToolCall
from tests import factories
from tests.fakes.receiver import FakeReceiver
from tests.fhir_fixtures import make_connection
from webhooks.models import WebhookEndpoint
from webhooks.sending import build_body

pytestmark = pytest.mark.django_db
TOKEN = "fhir-tool-token-0123456789abcdef"


def day(n: int, hour: int) -> str:
    moment = dt.datetime.combine((timezone.now() + dt.timedelta(days=n)).date(), dt.time(hour), dt.timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def on_call(org, fake_fhir, fhir_keys):
    """Ada's appointment on Dr Rivera's schedule, two free slots, and her reminder call in progress."""
    fake_fhir.add_patient("p1")
    fake_fhir.add_patient("p2", given="Other", family="Patient")
    fake_fhir.add_slot("s-now", day(2, 15), day(2, 16), status="busy")
    fake_fhir.add_slot("s1", day(3, 15), day(3, 16))
    fake_fhir.add_slot("s2", day(4, 15), day(4, 16))
    fake_fhir.add_appointment("a1", "p1", day(2, 15), day(2, 16), slot="s-now")
    fake_fhir.add_appointment("a2", "p2", day(2, 17), day(2, 18))  # somebody else's
    connection = make_connection(org, fake_fhir, fhir_keys, allow_writes=True)
    patient = factories.make_patient(org, external_id="MRN-p1")
    call = factories.make_call(org, connection.workflow, patient, status="in_progress",
                               status_token_hash=hashlib.sha256(TOKEN.encode()).hexdigest())
    FhirAppointment.objects.create(
        organization=org, connection=connection, fhir_id="a1", patient=patient, patient_fhir_id="p1",
        start=dt.datetime.fromisoformat(day(2, 15)), call=call,
    )
    return call


def tool(client, call, name, body=None):
    response = client.post(f"/api/bot/{call.pk}/tools/{name}", data=json.dumps(body or {}),
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    return response.status_code, response.json()


def test_confirm_accepts_the_appointment_in_the_ehr(client, on_call, fake_fhir):
    status, answer = tool(client, on_call, "confirm_appointment")

    assert status == 200 and answer["ok"] is True and answer["appointment"]["status"] == "confirmed"
    assert fake_fhir.appointments["a1"]["participant"][0]["status"] == "accepted"
    assert fake_fhir.requests_to("PUT /Appointment/a1")[0]["headers"]["If-Match"] == 'W/"1"'
    [audited] = ToolCall.objects.filter(call=on_call)
    assert (audited.tool, audited.ok, audited.via) == ("confirm_appointment", True, "fhir")
    assert fake_fhir.invalid == []


def test_cancel_cancels_the_appointment_and_call_ended_carries_it(client, on_call, fake_fhir, org):
    endpoint = WebhookEndpoint.objects.create(organization=org, url="http://127.0.0.1:9/hook", events=["call.ended"])

    status, answer = tool(client, on_call, "cancel_appointment", {"reason": "feeling better"})

    assert status == 200 and answer["ok"] is True
    appointment = fake_fhir.appointments["a1"]
    assert appointment["status"] == "cancelled" and appointment["participant"][0]["status"] == "declined"
    on_call.outcome = {"result": "cancelled", "notes": "", "data": {}}
    on_call.save(update_fields=["outcome"])
    transition(on_call.pk, "completed", reason="completed")
    body = json.loads(build_body(on_call.organization.webhook_deliveries.get(endpoint=endpoint)))
    assert body["data"]["appointment"]["change"] == "cancelled"
    assert body["data"]["outcome"]["appointment"]["appointment_id"] == "a1"


def test_a_patient_moves_the_appointment_to_a_free_slot(client, on_call, fake_fhir):
    status, offered = tool(client, on_call, "find_slots")
    assert status == 200 and [s["slot_id"] for s in offered["slots"]] == ["s1", "s2"]  # free ones only

    status, booked = tool(client, on_call, "book_slot", {"slot_id": "s1"})

    assert status == 200 and booked["ok"] is True and booked["appointment"]["status"] == "rescheduled"
    appointment = fake_fhir.appointments["a1"]
    assert (appointment["start"], appointment["slot"]) == (day(3, 15), [{"reference": "Slot/s1"}])
    assert fake_fhir.slots["s1"]["status"] == "busy" and fake_fhir.slots["s-now"]["status"] == "free"
    link = FhirAppointment.objects.get(fhir_id="a1")
    assert link.start == dt.datetime.fromisoformat(day(3, 15)) and link.call_result == "rescheduled"
    [event] = CallEvent.objects.filter(call=on_call, kind="appointment")
    assert event.data["start"] == link.start.isoformat()


def test_booking_twice_books_once(client, on_call, fake_fhir):
    tool(client, on_call, "find_slots")
    first = tool(client, on_call, "book_slot", {"slot_id": "s1"})
    again = tool(client, on_call, "book_slot", {"slot_id": "s1"})

    assert first == again
    assert len(fake_fhir.requests_to("PUT /Slot/s1")) == 1


def test_a_slot_taken_meanwhile_offers_the_next_one(client, on_call, fake_fhir):
    tool(client, on_call, "find_slots")
    fake_fhir.change(fake_fhir.slots["s1"], status="busy")  # someone else booked it

    status, answer = tool(client, on_call, "book_slot", {"slot_id": "s1"})

    assert status == 200 and answer["ok"] is False and answer["reason"] == "slot_taken"
    assert answer["next_slot"]["slot_id"] == "s2"
    status, booked = tool(client, on_call, "book_slot", {"slot_id": "s2"})  # offered now, so bookable
    assert booked["ok"] is True and fake_fhir.appointments["a1"]["start"] == day(4, 15)


def test_a_slot_taken_between_our_read_and_write_is_a_412_and_the_next_one_is_offered(client, on_call, fake_fhir):
    tool(client, on_call, "find_slots")
    fake_fhir.fail_next("PUT /Slot/s1", 412)

    status, answer = tool(client, on_call, "book_slot", {"slot_id": "s1"})

    assert answer["reason"] == "slot_taken" and answer["next_slot"]["slot_id"] == "s2"
    assert fake_fhir.appointments["a1"]["start"] == day(2, 15)  # not moved


def test_only_offered_slots_can_be_booked_and_nothing_else_is_exposed(client, on_call, fake_fhir):
    status, answer = tool(client, on_call, "book_slot", {"slot_id": "s2"})
    assert status == 409 and "offered on this call" in answer["detail"]

    status, offered = tool(client, on_call, "find_slots")
    text = json.dumps(offered)
    assert "a2" not in text and "p2" not in text and "Other" not in text
    assert fake_fhir.appointments["a2"]["meta"]["versionId"] == "1"


def test_a_slow_ehr_means_staff_will_call_back(client, on_call, fake_fhir, settings):
    settings.FHIR_TOOL_TIMEOUT_S = 0.3
    fake_fhir.hang_s = 2
    tool(client, on_call, "find_slots")  # discovery and token first
    fake_fhir.hang_next("GET /Appointment/a1")

    status, answer = tool(client, on_call, "confirm_appointment")

    assert status == 200 and answer["ok"] is False and answer["reason"] == "callback"
    assert "call you back" in answer["say"]
    assert CallEvent.objects.filter(call=on_call, kind="callback_requested").exists()
    assert not ToolCall.objects.get(call=on_call, tool="confirm_appointment").ok


def test_a_call_about_no_appointment_is_refused(client, org, on_call):
    other = factories.make_call(org, on_call.workflow, on_call.patient, status="in_progress",
                                status_token_hash=hashlib.sha256(TOKEN.encode()).hexdigest())
    status, answer = tool(client, other, "confirm_appointment")
    assert status == 409 and answer["detail"] == "This call is not about an EHR appointment."


@pytest.fixture
def org_system():
    server = FakeReceiver().start()
    yield server
    server.stop()


def test_without_fhir_writes_the_tools_go_to_the_signed_webhook(client, on_call, org_system, fake_fhir):
    from fhir.models import FhirConnection

    connection = FhirConnection.objects.get(organization=on_call.organization)
    connection.allow_writes = False
    connection.tool_webhook_url = org_system.hook_url
    connection.save()
    org_system.secret = FhirConnection.objects.get(pk=connection.pk).tool_webhook_secret

    status, answer = tool(client, on_call, "confirm_appointment")

    assert status == 200 and answer["ok"] is True
    [delivered] = org_system.verified  # the signature verified with the standardwebhooks package
    assert delivered["event"]["type"] == "appointment.confirm"
    assert delivered["event"]["data"]["appointment_id"] == "a1"
    assert fake_fhir.requests_to("PUT *") == []
    assert ToolCall.objects.get(call=on_call).via == "webhook"

    slots = {"slots": [{"slot_id": "x1", "start": day(5, 15)}, {"slot_id": "x2", "start": day(6, 15)}]}
    org_system.respond_next("POST /hooks/myrobot", 200, json=slots)  # find_slots
    org_system.respond_next("POST /hooks/myrobot", 409, json={})  # book_slot x1: taken meanwhile
    org_system.respond_next("POST /hooks/myrobot", 200, json=slots)  # the next free one
    assert [s["slot_id"] for s in tool(client, on_call, "find_slots")[1]["slots"]] == ["x1", "x2"]

    status, answer = tool(client, on_call, "book_slot", {"slot_id": "x1"})

    assert answer["reason"] == "slot_taken" and answer["next_slot"]["slot_id"] == "x2"
    sent = [json.loads(r["body"])["type"] for r in org_system.requests_to("POST /hooks/myrobot")]
    assert sent == ["appointment.confirm", "appointment.find_slots", "appointment.book_slot", "appointment.find_slots"]


def test_a_tool_webhook_that_does_not_answer_in_time_asks_for_a_call_back(client, on_call, org_system, settings):
    from fhir.models import FhirConnection

    settings.FHIR_TOOL_TIMEOUT_S = 0.3
    org_system.hang_s = 2
    FhirConnection.objects.filter(organization=on_call.organization).update(allow_writes=False)
    connection = FhirConnection.objects.get(organization=on_call.organization)
    connection.tool_webhook_url = org_system.hook_url
    connection.save()
    org_system.hang_next("POST /hooks/myrobot")

    status, answer = tool(client, on_call, "cancel_appointment")

    assert answer["reason"] == "callback"
    assert CallEvent.objects.filter(call=on_call, kind="callback_requested").count() == 1
