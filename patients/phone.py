"""E.164 phone numbers, validated and normalised with `phonenumbers`."""

import phonenumbers
from django.core.exceptions import ValidationError

DEFAULT_REGION = "US"


def normalize_phone(value: str, region: str = DEFAULT_REGION) -> str:
    """Return the E.164 form of `value`, or raise ValidationError saying why."""
    raw = (value or "").strip()
    if not raw:
        raise ValidationError("A phone number is required.")
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise ValidationError(f"'{raw}' is not a phone number; use the E.164 form, e.g. +14155550123.")
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(f"'{raw}' is not a valid phone number; use the E.164 form, e.g. +14155550123.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def try_normalize_phone(value: str) -> str | None:
    try:
        return normalize_phone(value)
    except ValidationError:
        return None

