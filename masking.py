"""Masking of patient names and phone numbers, the same everywhere.

One module for the server (viewers' pages and sockets, admin, logs, error
reasons recorded on calls) and the bot (its logs), so a masked number reads
the same wherever a person meets it: ``+15550001111`` -> ``+1••••••••11``.

Pure standard library and imports nothing of ours: every app, ``botrunner``,
``botkit`` and ``bot.py`` may import it (docs/architecture.md), and the bot's
image carries it beside ``bot.py``.
"""

from __future__ import annotations

import re

MASK = "•"

# A run of digits with separators that might be a phone number: E.164, dialled
# digits with separators, or a SIP/tel URI's user part. Never inside a word, a
# UUID, a decimal, or an address with a port (``127.0.0.1:8000``).
PHONE_IN_TEXT = re.compile(
    r"(?:(?P<scheme>(?:sip|tel):)|(?<![\w./+\-]))(?P<number>\+?\(?\d[\d\s().\-]*\d)(?![\w+]|[.:]\d)"
)
IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DECIMAL = re.compile(r"\d+\.\d+")


def mask_phone(phone: str | None) -> str:
    """Keep the ``+``, the first digit and the last two: enough to tell two numbers apart."""
    if not phone:
        return ""
    text = str(phone)
    head = "+" if text.startswith("+") else ""
    body = text[len(head):]
    if len(body) <= 4:
        return head + MASK * len(body)
    return head + body[0] + MASK * (len(body) - 3) + body[-2:]


def mask_name(*parts: str | None) -> str:
    """``("Ann", "Smith")`` -> ``A•• S••••``; empty when there is no name."""
    return " ".join(p[0] + MASK * max(len(p) - 1, 1) for p in (str(p).strip() for p in parts if p) if p)


def looks_like_phone(found: str, *, in_uri: bool = False) -> bool:
    """A phone number, not an address, a date, a time or an id: 10 to 15 digits
    (7 with a ``+`` or in a SIP/tel URI), never shaped like an IPv4 address, a
    decimal or a date."""
    digits = sum(c.isdigit() for c in found)
    if IPV4.fullmatch(found) or DECIMAL.fullmatch(found) or DATE.match(found):
        return False
    if found.startswith("+") or in_uri:
        return 7 <= digits <= 15
    return 10 <= digits <= 15


def _mask_match(match: re.Match) -> str:
    found = match.group("number")
    if not looks_like_phone(found, in_uri=bool(match.group("scheme"))):
        return match.group(0)
    digits = re.sub(r"\D", "", found)
    return (match.group("scheme") or "") + mask_phone(("+" if "+" in found else "") + digits)


def mask_phones(text: str | None) -> str:
    """``text`` with every phone-like number in it masked by ``mask_phone``."""
    return PHONE_IN_TEXT.sub(_mask_match, text or "")
