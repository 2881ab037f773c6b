"""Server side of bot call control: validation of the new fields, and what viewers see of new events."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from calls.events import apply_bot_message
from calls.shaping import shape_event
from organizations.validators import TTS_VOICES, validate_caller_id, validate_voicemail_message

from .factories import make_call, make_org, make_workflow

pytestmark = pytest.mark.django_db


def test_the_voice_list_is_the_tts_services_own():
    from pipecat.services.openai.tts import VALID_VOICES

    assert set(TTS_VOICES) == set(VALID_VOICES)


@pytest.mark.parametrize("text", ["", "Call {clinic} on {callback_number}.", "No placeholders."])
def test_voicemail_message_accepts_only_clinic_and_callback_number(text):
    validate_voicemail_message(text)


@pytest.mark.parametrize("text", ["Hi {first_name}", "{appointment} at {clinic}", "{0}", "{clinic.x}", "open {",
                                  "{patient_data}"])
def test_voicemail_message_refuses_anything_else(text):
    with pytest.raises(ValidationError):
        validate_voicemail_message(text)


def test_workflow_full_clean_refuses_a_bad_voice_a_personal_voicemail_and_a_bad_transfer_number():
    org = make_org()
    wf = make_workflow(org, voice="robot", voicemail_message="Hello {first_name}", transfer_number="555")
    with pytest.raises(ValidationError) as exc:
        wf.full_clean()
    assert {"voice", "voicemail_message", "transfer_number"} <= set(exc.value.message_dict)


@pytest.mark.parametrize("value, ok", [
    ("+15551234567", True), ("0b5a7c1e-3f2d-4e6a-8b9c-1d2e3f4a5b6c", True),
    ("0b5a7c1e3f2d4e6a8b9c1d2e3f4a5b6c", True), ("caller-1", False), ("15551234567", False),
])
def test_caller_id_is_e164_or_a_uuid(value, ok):
    if ok:
        validate_caller_id(value)
    else:
        with pytest.raises(ValidationError):
            validate_caller_id(value)


def test_organization_keeps_a_36_character_caller_id():
    org = make_org(dialout_caller_id="0b5a7c1e-3f2d-4e6a-8b9c-1d2e3f4a5b6c", callback_number="+15550001111")
    org.full_clean()
    org.refresh_from_db()
    assert len(org.dialout_caller_id) == 36


def test_viewers_never_see_keypad_digits_but_do_see_metrics():
    dtmf = {"seq": 3, "event": "dtmf", "at": "2026-01-01T00:00:00Z", "data": {"digits": "4"}}
    assert shape_event(dtmf, sees=False)["data"] == {}
    assert shape_event(dtmf, sees=True)["data"] == {"digits": "4"}
    metrics = {"seq": 4, "event": "metrics", "at": "2026-01-01T00:00:00Z", "data": {"turn_ms": 800}}
    assert shape_event(metrics, sees=False)["data"] == {"turn_ms": 800}


def test_remote_ended_after_staff_canceled_changes_nothing():
    org = make_org()
    call = make_call(org, make_workflow(org), status="canceled", end_reason="canceled")
    apply_bot_message(call.pk, {"seq": 1, "event": "ended", "at": "2026-01-01T00:00:00Z",
                                "data": {"reason": "remote_ended"}})
    call.refresh_from_db()
    assert (call.status, call.end_reason) == ("canceled", "canceled")
