"""Applying the bot's status messages (docs/architecture.md, "Status protocol").

Each `(call, seq)` is stored once; a replay after a reconnect is ignored, so no
event is ever acted on twice. Transitions go through the state machine: an
event that would make an illegal move is stored, not applied.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import rollup
from .models import FINAL_STATUSES, CallEvent, CallSession, CallStatus
from .opt_out import OPTED_OUT, honour_opt_out
from .starting import hash_status_token
from .state import transition

log = logging.getLogger(__name__)

ENDED_REASON_STATUS = {
    "completed": CallStatus.COMPLETED,
    "no_answer": CallStatus.NO_ANSWER,
    "busy": CallStatus.BUSY,
    "voicemail": CallStatus.NO_ANSWER,
    "dialout_failed": CallStatus.FAILED,
    "max_duration": CallStatus.COMPLETED,
    "canceled": CallStatus.CANCELED,
    # Bot call control: kept as the end reason, so the call policy can schedule a later attempt.
    "declined": CallStatus.NO_ANSWER,
    "transferred": CallStatus.COMPLETED,
    "silence": CallStatus.COMPLETED,
    # Daily ended the meeting under the bot (the server's Cancel deleted the room, or it expired).
    "remote_ended": CallStatus.CANCELED,
    # An LLM or TTS error mid-call: failed, with the bot's error text.
    "service_error": CallStatus.FAILED,
    # Calling law: the patient asked not to be called again (calls.opt_out), or
    # could not confirm who they are (calls.bot_tools.verify_identity).
    "opted_out": CallStatus.COMPLETED,
    "unverified": CallStatus.COMPLETED,
    # The caller asked for a person and the SIP transfer failed: they were promised a call-back.
    "transfer_failed": CallStatus.FAILED,
}

TRANSFER_FAILED_ERROR = "The transfer to staff failed; the caller was promised a call-back. Call them back. ({})"

EVENT_STATUS = {
    "dialin_ready": CallStatus.WAITING,
    "dialin_connected": CallStatus.IN_PROGRESS,
    "dialout_connected": CallStatus.IN_PROGRESS,
    "dialout_answered": CallStatus.IN_PROGRESS,
    "dialout_attempt": CallStatus.RINGING,
}

# The bot heard the patient ask not to be called again ({via: "dtmf"|"voice"}); it then ends ``opted_out``.
OPT_OUT_EVENT = "opt_out"

MAX_EVENT_NAME = 40
# CallEvent.seq is a PositiveIntegerField: 32-bit signed on PostgreSQL.
MAX_SEQ = 2**31 - 1
INVALID_MESSAGE = "invalid_message"


class BadMessage(ValueError):
    pass


def clean_text(value):
    """A JSON value the database can store: no NUL characters (PostgreSQL refuses
    them in text and jsonb) and no lone surrogates (not encodable as UTF-8)."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_text(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None  # NaN/Infinity are not JSON (PostgreSQL's jsonb refuses them)
    return value


@dataclass
class Applied:
    call_id: str
    event: CallEvent
    became_final: bool = False
    room_name: str = ""
    notes: list[str] = field(default_factory=list)


def parse_message(msg) -> tuple[int, str, datetime, dict]:
    if not isinstance(msg, dict):
        raise BadMessage("message must be a JSON object")
    msg = clean_text(msg)
    seq, name, at, data = msg.get("seq"), msg.get("event"), msg.get("at"), msg.get("data", {})
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_SEQ:
        raise BadMessage(f"seq must be an integer from 1 to {MAX_SEQ}")
    if not isinstance(name, str) or not name or len(name) > MAX_EVENT_NAME:
        raise BadMessage(f"event must be a string of 1 to {MAX_EVENT_NAME} characters")
    if name == INVALID_MESSAGE:
        raise BadMessage(f"event {INVALID_MESSAGE} is the server's own")
    try:
        parsed_at = parse_datetime(at) if isinstance(at, str) else None
        if parsed_at is not None:
            if timezone.is_naive(parsed_at):
                parsed_at = timezone.make_aware(parsed_at, dt_timezone.utc)
            parsed_at = parsed_at.astimezone(dt_timezone.utc)  # out of range here, not in the database
    except (ValueError, OverflowError):
        raise BadMessage("at is not a possible date and time")
    if parsed_at is None:
        parsed_at = timezone.now()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadMessage("data must be an object")
    return seq, name, parsed_at, data


def record_invalid_message(call_id, reason: str, msg=None) -> CallEvent:
    """Keep a trace of a message the server could not store (the protocol rule: the socket
    stays open and the rest of the call still lands). The message itself is not
    kept: it may be what the database refused."""
    data = {"reason": clean_text(reason)[:500]}
    if isinstance(msg, dict):
        seq, name = msg.get("seq"), msg.get("event")
        if isinstance(seq, int) and not isinstance(seq, bool) and 1 <= seq <= MAX_SEQ:
            data["seq"] = seq
        if isinstance(name, str):
            data["event"] = clean_text(name)[:MAX_EVENT_NAME]
    return CallEvent.objects.create(call_id=call_id, kind=INVALID_MESSAGE, at=timezone.now(), data=data)


def token_matches(call_id, raw_token: str) -> bool:
    """The per-call status token is valid until the call is final."""
    row = CallSession.objects.filter(pk=call_id).values_list("status_token_hash", "status").first()
    if row is None or not raw_token:
        return False
    stored, status = row
    if not stored or status in FINAL_STATUSES:
        return False
    return hmac.compare_digest(stored, hash_status_token(raw_token))


def apply_bot_message(call_id, msg) -> Applied | None:
    """Store one bot message and apply its effect; None when `seq` was already stored."""
    seq, name, at, data = parse_message(msg)
    now = timezone.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                event = CallEvent.objects.create(call_id=call_id, seq=seq, kind=name, at=at, data=data)
        except IntegrityError:
            return None
        call = CallSession.objects.select_for_update().get(pk=call_id)
        was_final = call.status in FINAL_STATUSES
        updates: dict = {"last_event_at": now}
        target = None
        kwargs: dict = {}

        if name == "bot_started" and call.bot_started_at is None:
            updates["bot_started_at"] = now
        elif name == "dialout_attempt":
            attempt = data.get("attempt")
            if isinstance(attempt, int) and attempt > call.dialout_attempts:
                updates["dialout_attempts"] = attempt
            target = EVENT_STATUS[name]
        elif name in EVENT_STATUS:
            target = EVENT_STATUS[name]
        elif name == "transcript":
            role, text = data.get("role"), data.get("text")
            if role in ("user", "assistant") and isinstance(text, str) and text:
                updates["transcript"] = list(call.transcript or []) + [
                    {"role": role, "text": text, "at": at.isoformat(), "seq": seq}
                ]
        elif name == "outcome":
            updates["outcome"] = {
                "result": data.get("result"),
                "notes": data.get("notes", ""),
                "data": data.get("data") or {},
            }
        elif name == "ended":
            reason = str(data.get("reason") or "completed")[:64]
            target = ENDED_REASON_STATUS.get(reason, CallStatus.FAILED)
            kwargs["reason"] = reason
            if reason == "remote_ended" and was_final:
                target = None  # e.g. already canceled by staff: nothing to change
            if reason == "transfer_failed":
                kwargs["error"] = TRANSFER_FAILED_ERROR.format(str(data.get("error") or "no detail")[:500])
            elif target == CallStatus.FAILED:
                kwargs["error"] = str(data.get("error") or f"The bot ended the call: {reason}.")
        elif name == "error" and data.get("fatal"):
            target = CallStatus.FAILED
            kwargs["reason"] = "bot_error"
            kwargs["error"] = str(data.get("message") or "The bot reported a fatal error.")[:2000]

        recount = was_final and "outcome" in updates  # a late outcome: the dashboard's count moves
        if recount:
            rollup.count_call(call_id, sign=-1)
        if updates:
            # bot_started is a bot event: from then on the bot, not the start task, owns the call
            CallSession.objects.filter(pk=call_id).update(**updates)
        if recount:
            rollup.count_call(call_id)
        applied = Applied(call_id=str(call_id), event=event, room_name=call.daily_room_name)
        if target is not None and target != call.status:
            moved = transition(call_id, target, at=at, broadcast=False, **kwargs)
            if not moved:
                applied.notes.append(f"{name}: illegal move {call.status} → {target} stored, not applied")
            elif target in FINAL_STATUSES and not was_final:
                applied.became_final = True
        if name == OPT_OUT_EVENT or (name == "ended" and kwargs.get("reason") == OPTED_OUT):
            # In this transaction: the end (or the request) and the do-not-call commit together.
            honour_opt_out(call_id, at=at, via=str(data.get("via") or "")[:16])
    return applied
