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

# Something that looks like a phone number inside free text: E.164, dialled
# digits with separators, or a SIP URI's user part.
PHONE_IN_TEXT = re.compile(r"(?:sip:)?\+?\d[\d\s().\-]{5,}\d")


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


def _mask_match(match: re.Match) -> str:
    found = match.group(0)
    digits = re.sub(r"\D", "", found)
    return mask_phone(("+" if "+" in found else "") + digits)


def mask_phones(text: str | None) -> str:
    """``text`` with every phone-like number in it masked by ``mask_phone``."""
    return PHONE_IN_TEXT.sub(_mask_match, text or "")
