"""Celery tasks: the one orchestration of a bot start, and the reaper.

`start_call` runs in a worker thread (the worker's pool is threads, see
myrobot/celery.py); its HTTP calls go to the process's one event loop through
`botrunner.http.run`, so many starts overlap their I/O in one process.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from botrunner import agent_request, daily, http
from botrunner.errors import AmbiguousStartError, BotRunnerError, PermanentError, TransientError
from botrunner.start import check_start_config, start_bot

from .models import CallEvent, CallSession, CallStatus
from .state import transition

log = logging.getLogger(__name__)

MAX_START_RETRIES = 5
RETRY_BASE_S = 2
EAGER_RETRY_BASE_S = 0.1


def hash_status_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def status_url_for(session_id) -> str:
    base = settings.PUBLIC_BASE_URL
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    return f"{base}/ws/bot/{session_id}/"


def _record(call_id, kind: str, data: dict) -> None:
    CallEvent.objects.create(call_id=call_id, at=timezone.now(), kind=kind, data=data)


def delete_call_room(call: CallSession) -> None:
    """Delete the call's Daily room; a failure is recorded, never raised."""
    if not call.daily_room_name:
        return
    try:
        http.run(_with_session(daily.delete_room, call.daily_room_name))
    except BotRunnerError as exc:
        log.warning("could not delete room %s of call %s: %s", call.daily_room_name, call.pk, exc)
        _record(call.pk, "room_delete_failed", {"error": str(exc)})
    except Exception as exc:  # noqa: BLE001
        log.exception("could not delete room %s of call %s", call.daily_room_name, call.pk)
        _record(call.pk, "room_delete_failed", {"error": exc.__class__.__name__})


def _fail(call: CallSession, reason: str, *, delete_room: bool = True) -> None:
    transition(call.pk, CallStatus.FAILED, reason="start_failed", error=reason)
    if delete_room:
        call.refresh_from_db(fields=["daily_room_name", "status"])
        delete_call_room(call)


async def _with_session_coro(fn, *args, **kwargs):
    session = await http.get_session()
    return await fn(session, *args, **kwargs)


def _with_session(fn, *args, **kwargs):
    return lambda: _with_session_coro(fn, *args, **kwargs)


async def _room_and_token(call: CallSession):
    session = await http.get_session()
    room = await daily.create_room(
        session,
        session_id=str(call.pk),
        dialin=call.direction == "dial_in",
        caller_phone=call.from_number if call.direction == "dial_in" else None,
        max_duration_s=call.workflow.max_duration_s,
    )
    token = await daily.meeting_token(session, room)
    return room, token


async def _start(req):
    session = await http.get_session()
    return await start_bot(req, session)


def _retry_or_fail(task, call: CallSession, exc: BotRunnerError, what: str) -> None:
    if task.request.retries >= MAX_START_RETRIES:
        _fail(call, f"{exc.reason} (gave up after {task.request.retries + 1} attempts to {what})")
        return
    countdown = RETRY_BASE_S * (2 ** task.request.retries)
    if task.request.is_eager:
        # Eager Celery (the embedded default) ignores countdowns and raises Retry
        # into the caller: retry inline with a short pause instead.
        pause = min(countdown, EAGER_RETRY_BASE_S * (2 ** task.request.retries))
        _record(call.pk, "start_retry", {"what": what, "error": str(exc), "retry_in_s": pause})
        time.sleep(pause)
        task.apply(args=[str(call.pk)], retries=task.request.retries + 1, throw=True)
        return
    _record(call.pk, "start_retry", {"what": what, "error": str(exc), "retry_in_s": countdown})
    raise task.retry(countdown=countdown, exc=exc)


@shared_task(bind=True, max_retries=MAX_START_RETRIES, acks_late=True, ignore_result=True)
def start_call(self, call_session_id: str) -> None:
    """queued → starting → room, token, AgentRequest, start_bot."""
    call = CallSession.objects.select_related("organization", "workflow", "patient").filter(pk=call_session_id).first()
    if call is None:
        log.warning("start_call: no call %s", call_session_id)
        return
    if call.status == CallStatus.QUEUED:
        if not transition(call.pk, CallStatus.STARTING):
            call.refresh_from_db(fields=["status"])
        else:
            call.status = CallStatus.STARTING
    if call.status != CallStatus.STARTING:
        return  # canceled, failed, or the bot already reported: nothing to do
    if call.bot_start_requested_at is not None:
        return  # a previous delivery sent the start; a second one could ring twice

    problems = check_start_config()
    if problems:
        _fail(call, " ".join(problems), delete_room=False)
        return

    try:
        room, token = http.run(lambda: _room_and_token(call))
    except TransientError as exc:
        return _retry_or_fail(self, call, exc, "create the Daily room")
    except BotRunnerError as exc:
        _fail(call, exc.reason)
        return

    raw_status_token = secrets.token_urlsafe(32)
    now = timezone.now()
    # Claim the start: only one delivery may send it, and never for a call
    # canceled while the room was being made.
    claimed = CallSession.objects.filter(
        pk=call.pk, status=CallStatus.STARTING, bot_start_requested_at__isnull=True
    ).update(
        daily_room_name=room.name,
        daily_room_url=room.url,
        status_token_hash=hash_status_token(raw_status_token),
        bot_start_requested_at=now,
    )
    if not claimed:
        call.refresh_from_db()
        if call.status == CallStatus.CANCELED:
            call.daily_room_name = room.name
            delete_call_room(call)
        return
    call.daily_room_name, call.daily_room_url = room.name, room.url

    req = agent_request.build(call, room.url, token, status_url_for(call.pk), raw_status_token)
    try:
        answer = http.run(lambda: _start(req))
    except TransientError as exc:
        # Certainly not started: release the claim so the retry may send it.
        CallSession.objects.filter(pk=call.pk).update(bot_start_requested_at=None)
        return _retry_or_fail(self, call, exc, "start the bot")
    except AmbiguousStartError as exc:
        _record(
            call.pk,
            "bot_start_unconfirmed",
            {"error": str(exc), "note": "not retried: the bot may have started; the reaper fails the call if it never reports"},
        )
        return
    except PermanentError as exc:
        _fail(call, exc.reason)
        return
    except BotRunnerError as exc:
        _fail(call, exc.reason)
        return
    data = {"target": "pipecat_cloud" if settings.ENV == "production" else "local_runner"}
    if isinstance(answer, dict) and answer.get("sessionId"):
        data["pipecat_session_id"] = answer["sessionId"]
    _record(call.pk, "bot_start_requested", data)


@shared_task(ignore_result=True)
def reap_stale_calls() -> int:
    """Fail calls that stopped reporting, so nothing stays non-final forever."""
    from .reaper import reap_stale_calls as reap

    return reap()
