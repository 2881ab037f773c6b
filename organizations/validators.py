"""Validators for the call-control fields of organisations and workflows (pure: no other app)."""

from __future__ import annotations

import re
import string
import uuid

from django.core.exceptions import ValidationError

_E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")

# The text-to-speech service's voices (OpenAI TTS, as pipecat 1.14's
# ``pipecat.services.openai.tts.VALID_VOICES`` lists them; a test keeps the two
# in step without making the server import pipecat).
TTS_VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx",
              "sage", "shimmer", "verse")
VOICE_CHOICES = [(v, v.capitalize()) for v in TTS_VOICES]

# The only placeholders a voicemail message may use: a mailbox may be heard by
# anyone, so nothing about the patient may be in it.
VOICEMAIL_PLACEHOLDERS = ("clinic", "callback_number")

CALLER_ID_MAX_LENGTH = 64
_LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def validate_e164(value: str) -> None:
    if value and not _E164_RE.match(value):
        raise ValidationError("Enter a phone number in E.164 form, e.g. +15551234567.")


def is_caller_id(value: str) -> bool:
    """A Daily caller id: an E.164 number or a purchased number's id (a UUID)."""
    if _E164_RE.match(value or ""):
        return True
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return len(value) in (32, 36)


def validate_caller_id(value: str) -> None:
    if value and not is_caller_id(value):
        raise ValidationError("Enter an E.164 number (+15551234567) or a Daily phone-number id (a UUID).")


def validate_voicemail_message(value: str) -> None:
    """Only ``{clinic}`` and ``{callback_number}``; any other ``{…}`` (or a stray brace) is refused."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(value or "") if name is not None]
    except ValueError:
        raise ValidationError("Unbalanced braces: use {clinic} and {callback_number} only.")
    bad = sorted({f for f in fields if f not in VOICEMAIL_PLACEHOLDERS})
    if bad:
        raise ValidationError(
            "Only {clinic} and {callback_number} may be used in a voicemail message (never patient data); "
            "not allowed: " + ", ".join("{" + b + "}" for b in bad)
        )


# A disclosure is said before anyone is known to be the patient: the same rule.
DISCLOSURE_PLACEHOLDERS = ("clinic", "callback_number", "opt_out_digit")


def validate_disclosure_message(value: str) -> None:
    """Only ``{clinic}``, ``{callback_number}`` and ``{opt_out_digit}``: it is said before anyone is verified."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(value or "") if name is not None]
    except ValueError:
        raise ValidationError("Unbalanced braces: use {clinic}, {callback_number} and {opt_out_digit} only.")
    bad = sorted({f for f in fields if f not in DISCLOSURE_PLACEHOLDERS})
    if bad:
        raise ValidationError(
            "Only {clinic}, {callback_number} and {opt_out_digit} may be used in the disclosure "
            "(it is said before the person is known to be the patient); not allowed: "
            + ", ".join("{" + b + "}" for b in bad)
        )


def validate_voice(value: str) -> None:
    if value and value not in TTS_VOICES:
        raise ValidationError(f"Unknown voice {value!r}; choose one of: {', '.join(TTS_VOICES)}.")


def validate_language(value: str) -> None:
    if value and not _LANGUAGE_RE.match(value):
        raise ValidationError("Enter a BCP-47 language code, e.g. en, es or en-US.")
