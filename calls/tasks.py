"""Celery tasks: the one orchestration of a bot start, and the reaper.

`start_call` runs in a worker thread (the worker's pool is threads, see
myrobot/celery.py); its HTTP calls go to the process's one event loop through
`botrunner.http.run`, so many starts overlap their I/O in one process.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from botrunner import agent_request, daily, http
from botrunner.errors import AmbiguousStartError, BotRunnerError, PermanentError, TransientError
from botrunner.start import check_start_config, start_bot

from . import broadcast
from .models import FINAL_STATUSES, CallEvent, CallSession, CallStatus
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


def room_hint(call: CallSession) -> dict:
    """What creating the call's room needs, sent along with the task so that the
    task can ask Daily before it reads the database (``start_call``)."""
    dialin = call.direction == "dial_in"
    return {
        "dialin": dialin,
        "caller_phone": call.from_number if dialin else None,
        "max_duration_s": call.workflow.max_duration_s,
    }


async def _make_room_and_token(session_id: str, *, dialin: bool, caller_phone, max_duration_s: int):
    session = await http.get_session()
    room = await daily.create_room(
        session, session_id=session_id, dialin=dialin, caller_phone=caller_phone, max_duration_s=max_duration_s,
    )
    token = await daily.meeting_token(session, room)
    return room, token


async def _room_and_token(call: CallSession):
    return await _make_room_and_token(str(call.pk), **room_hint(call))


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
def start_call(self, call_session_id: str, room: dict | None = None) -> None:
    """queued → starting → room, token, AgentRequest, start_bot.

    The caller's hold time on dial-in is this task: only what the start needs
    sits on it. Browser updates are sent when the task ends (``deferred``),
    and the Daily room's round trip overlaps the database work: with ``room``
    (``room_hint()``, given by the services that enqueue a start) it is asked
    for before the call is even read.
    """
    with broadcast.deferred(background=not self.request.is_eager):
        _start_call(self, call_session_id, room)


def _drop_room(call: CallSession | None, room_future) -> None:
    """The call ended (e.g. canceled) while its room was being made: delete the room.

    Only for a missing or final call: a call another delivery is starting keeps its room.
    """
    try:
        room, _token = room_future.result()
    except Exception:  # noqa: BLE001 - nothing was made, or the failure no longer matters
        return
    if call is not None:
        call.refresh_from_db(fields=["status"])
        if call.status not in FINAL_STATUSES:
            return
        call.daily_room_name = room.name
        delete_call_room(call)
        return
    try:
        http.run(_with_session(daily.delete_room, room.name))
    except Exception:  # noqa: BLE001
        log.warning("could not delete room %s made for a call that does not exist", room.name)


def _valid_hint(hint) -> dict | None:
    """The room hint's three fields, or None when it is not one (then the room is
    made from the call as read from the database)."""
    if not isinstance(hint, dict):
        return None
    try:
        return {
            "dialin": bool(hint["dialin"]),
            "caller_phone": str(hint["caller_phone"]) if hint.get("caller_phone") else None,
            "max_duration_s": int(hint["max_duration_s"]),
        }
    except (KeyError, TypeError, ValueError):
        return None


def _start_call(self, call_session_id: str, hint: dict | None = None) -> None:
    problems = check_start_config()
    room_future = None
    hint = _valid_hint(hint)
    if hint is not None and not problems:
        # The Daily round trip starts first; everything below overlaps it. The
        # room's name is fixed by the call, so a second delivery finds it, and a
        # room made for a call that turns out to be over is deleted (_drop_room).
        room_future = http.submit(lambda: _make_room_and_token(str(call_session_id), **hint))
    call = CallSession.objects.select_related("organization", "workflow", "patient").filter(pk=call_session_id).first()
    if call is None:
        log.warning("start_call: no call %s", call_session_id)
        if room_future is not None:
            _drop_room(None, room_future)
        return
    if call.status not in (CallStatus.QUEUED, CallStatus.STARTING) or call.bot_start_requested_at is not None:
        # Canceled, failed, or the bot already reported; or a previous delivery
        # sent the start (a second one could ring twice): nothing to do.
        if room_future is not None:
            _drop_room(call, room_future)
        return

    if room_future is None and not problems:
        room_future = http.submit(lambda: _room_and_token(call))
    if call.status == CallStatus.QUEUED:
        if not transition(call.pk, CallStatus.STARTING, expected=CallStatus.QUEUED):
            call.refresh_from_db(fields=["status"])
        else:
            call.status = CallStatus.STARTING
    if call.status != CallStatus.STARTING:
        if room_future is not None:
            _drop_room(call, room_future)
        return  # canceled meanwhile, or another delivery moved it on

    if problems:
        _fail(call, " ".join(problems), delete_room=False)
        return

    try:
        room, token = room_future.result()
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


_background_starts: set[threading.Thread] = set()


def start_in_background(call_session_id: str, room: dict | None = None) -> threading.Thread:
    """The embedded default's start (eager Celery), on its own thread.

    Same task, same code as with a worker; only the thread differs, so the page
    that placed the call answers at once even when the start is retried.
    """
    from django.db import connections

    def run() -> None:
        try:
            start_call.delay(call_session_id, room)
        except Exception:  # noqa: BLE001 - recorded on the call by the task; nothing to raise into
            log.exception("background start of call %s failed", call_session_id)
        finally:
            connections.close_all()  # this thread's connections only
            _background_starts.discard(thread)

    thread = threading.Thread(target=run, name=f"start-{call_session_id[:8]}", daemon=True)
    _background_starts.add(thread)
    thread.start()
    return thread


def wait_for_background_starts(timeout: float = 30.0) -> bool:
    """Join the background starts in flight (tests, shutdown); True when none is left."""
    deadline = time.monotonic() + timeout
    for thread in list(_background_starts):
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in _background_starts)


@shared_task(ignore_result=True)
def reap_stale_calls() -> int:
    """Fail calls that stopped reporting, so nothing stays non-final forever."""
    from .reaper import reap_stale_calls as reap

    return reap()
