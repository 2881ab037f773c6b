"""Phone numbers are masked in free text (logs, error reasons); addresses, ports, ids and times are not."""

from __future__ import annotations


import pytest

from masking import mask_phones


@pytest.mark.parametrize("text, masked", [
    ("+15550001111", "+1••••••••11"),
    ("call +1 555 000 1111.", "call +1••••••••11."),
    ("+1-555-000-1111", "+1••••••••11"),
    ("+44 20 7946 0958", "+4•••••••••58"),
    ("(555) 000-1111", "5•••••••11"),
    ("555-000-1111", "5•••••••11"),
    ("555.000.1111", "5•••••••11"),
    ("020 7946 0958", "0••••••••58"),
    ("dialing 5550001111...", "dialing 5•••••••11..."),
    ("phone:5550001111", "phone:5•••••••11"),
    ('"phoneNumber": "+15550001111"', '"phoneNumber": "+1••••••••11"'),
    ("sip:+15550001111@sip.daily.co", "sip:+1••••••••11@sip.daily.co"),
    ("tel:+15550001111", "tel:+1••••••••11"),
])
def test_phone_numbers_are_masked(text, masked):
    assert mask_phones(text) == masked


@pytest.mark.parametrize("text", [
    "127.0.0.1",
    "connect to 127.0.0.1:8000 failed",
    "http://127.0.0.1:7871/v1/rooms",
    "10.0.0.12 port 6379",
    "2026-12-06 18:49:41,123 INFO calls.tasks started",
    "2026-12-06T18:49:41.123456+00:00",
    "call 3f2a9c1e-1234-4abc-8def-123456789012 ended",
    "took 1234567 ms",
    "epoch 1765046981.5",
    "at 18:49, 42 calls",
    "pipecat 1.14.0",
])
def test_addresses_ids_and_times_are_left_alone(text):
    assert mask_phones(text) == text


def test_a_log_line_of_the_bot_keeps_the_address_and_masks_the_number():
    """The bot's redaction is what its logs go through."""
    from botkit.phi import redact

    line = redact("Dial-out to +15550001111 via http://127.0.0.1:7860/start (attempt 2)")
    assert line == "Dial-out to +1••••••••11 via http://127.0.0.1:7860/start (attempt 2)"
