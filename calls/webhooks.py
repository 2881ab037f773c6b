"""Verification of Daily's pinless dial-in webhook (the ``room_creation_api`` call).

Daily signs the request as its example servers verify it:

    X-Pinless-Timestamp: <timestamp>
    X-Pinless-Signature: base64( HMAC-SHA256( key = base64-decode(secret),
                                               msg = timestamp + "." + raw body ) )

``secret`` is the organisation's ``dialin_webhook_secret`` (the ``hmac`` value
of the domain's pinless dial-in config, base64). The timestamp's unit is not
documented, so seconds and milliseconds are both accepted; either way it must
lie within ``settings.DIALIN_WEBHOOK_MAX_SKEW_S`` of now, which bounds replays
(and a replayed ``callId`` inside the window maps to the same call anyway).

An organisation without a secret accepts unsigned webhooks only while
``settings.DEBUG`` is on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from django.conf import settings

SIGNATURE_HEADER = "X-Pinless-Signature"
TIMESTAMP_HEADER = "X-Pinless-Timestamp"

# Epoch seconds pass 1e11 only in the year 5138; epoch milliseconds passed it in 1973.
_MILLISECONDS_ABOVE = 1e11


class SignatureError(Exception):
    """The webhook is not (validly) signed; the message says why, for logs."""


def _key(secret_b64: str) -> bytes:
    try:
        return base64.b64decode(secret_b64.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("the organisation's webhook secret is not valid base64") from exc


def sign(secret_b64: str, timestamp: str, body: bytes) -> str:
    """The signature Daily sends for ``body`` at ``timestamp`` (also used by tests)."""
    digest = hmac.new(_key(secret_b64), timestamp.encode() + b"." + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def timestamp_seconds(timestamp: str) -> float:
    """The header's value in epoch seconds, whether Daily sent seconds or milliseconds."""
    try:
        value = float(timestamp.strip())
    except (AttributeError, ValueError) as exc:
        raise SignatureError("the timestamp is not a number") from exc
    if value != value or value in (float("inf"), float("-inf")):  # NaN / inf
        raise SignatureError("the timestamp is not a number")
    return value / 1000.0 if value > _MILLISECONDS_ABOVE else value


def verify_signature(
    secret_b64: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    now: float | None = None,
    max_skew_s: float | None = None,
) -> None:
    """Raise ``SignatureError`` unless ``signature`` is Daily's for this body and a fresh timestamp."""
    if not signature or not timestamp:
        raise SignatureError(f"{SIGNATURE_HEADER} or {TIMESTAMP_HEADER} is missing")
    skew = settings.DIALIN_WEBHOOK_MAX_SKEW_S if max_skew_s is None else max_skew_s
    now = time.time() if now is None else now
    if abs(now - timestamp_seconds(timestamp)) > skew:
        raise SignatureError("the timestamp is outside the accepted window (stale or replayed)")
    expected = sign(secret_b64, timestamp.strip(), body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise SignatureError("the signature does not match")


def verify_request(organization, body: bytes, headers) -> None:
    """Check a webhook request for ``organization``; raise ``SignatureError`` to refuse it."""
    secret = organization.dialin_webhook_secret
    if not secret:
        if settings.DEBUG:
            return
        raise SignatureError(
            "the organisation has no dial-in webhook secret (unsigned webhooks are accepted only with DEBUG on)"
        )
    verify_signature(secret, body, headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER))
