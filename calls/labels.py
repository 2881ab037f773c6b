"""What staff read for the codes a call carries: its end reason, who spoke.

The codes stay in the API, webhooks and CSV (systems read them); pages, the
admin and the live pages' script (through the ``end_reason_label`` the call's
socket message carries) show these words instead.
"""

from __future__ import annotations

END_REASONS = {
    "completed": "Completed",
    "no_answer": "No answer",
    "busy": "Line busy",
    "voicemail": "Voicemail answered",
    "declined": "Patient declined",
    "transferred": "Transferred to staff",
    "silence": "Patient stayed silent",
    "max_duration": "Reached the maximum duration",
    "dialout_failed": "The number could not be dialled",
    "canceled": "Canceled by staff",
    "campaign_canceled": "Campaign canceled",
    "remote_ended": "The call's room was closed",
    "start_failed": "The bot did not start",
    "stale": "The bot stopped reporting",
    "bot_error": "Bot error",
    "capacity": "No bot free in time",
    "opted_out": "Opted out",
    "unverified": "Identity not confirmed",
    "do_not_call": "Do-not-call",
    "frequency_cap": "Call limit reached",
    "transfer_failed": "Transfer to staff failed",
}

SPEAKERS = {"assistant": "Bot", "user": "Patient"}


def end_reason(code: str | None) -> str:
    """Words for an end reason; an unknown code readable as words ("" for none)."""
    if not code:
        return ""
    return END_REASONS.get(code, code.replace("_", " ").capitalize())


def speaker(role: str | None) -> str:
    return SPEAKERS.get(role or "", "Patient")
