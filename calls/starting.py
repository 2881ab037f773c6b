"""Starting a bot for a call: the one orchestration of the start path.

``start_call`` reads top to bottom, one named step per line:

1. ``order_room_for`` — with a room hint (``room_hint``, sent by the service
   that wrote the call), ask Daily for the call's room (and sign its token) on
   the process's event loop before anything else, so the Daily round trip
   overlaps the next steps.
2. ``load_call`` / ``is_startable`` — a missing, ended or already-started call
   is left alone (a hinted room is dropped again); without a hint the room is
   ordered now (``order_room``).
3. ``mark_starting`` — ``queued → starting`` through the state machine; a
   dial-out takes one of its organisation's slots (``take_slot``) or goes back
   to waiting for one (the dispatcher hands it again when a slot frees).
4. ``wait_for_room`` — the room and token, or a retry / a failed call.
5. ``claim_start`` — only one delivery of the task may send the start; it
   stores the room and the hash of a fresh status token.
6. ``send_start`` — build the AgentRequest and call ``start_bot``; retried only
   when no bot can have started (never ring a patient twice). The bot runner
   at capacity (429) sends the call back to the queue (``defer_start``).

Nothing here knows Celery: a retry is a ``RetryStart`` raised to the task
(``calls.tasks.start_call``), which re-runs the start after its delay.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from concurrent.futures import Future
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

import background
from botrunner import agent_request, daily, http
from botrunner.errors import AmbiguousStartError, BotRunnerError, TransientError
from botrunner.start import check_start_config, is_production, start_bot

from . import policy, rules
from .models import FINAL_STATUSES, CallEvent, CallSession, CallStatus
from .state import transition

log = logging.getLogger(__name__)

MAX_START_RETRIES = 5
RETRY_BASE_S = 2
EAGER_RETRY_BASE_S = 0.1


@dataclass(frozen=True)
class Attempt:
    """Which delivery of the start this is: ``retries`` before it; ``eager`` when it
    runs inline (the embedded default), where a retry waits briefly instead."""

    retries: int = 0
    eager: bool = False

    def retry_delay_s(self) -> float:
        countdown = RETRY_BASE_S * (2 ** self.retries)
        if self.eager:
            return min(countdown, EAGER_RETRY_BASE_S * (2 ** self.retries))
        return countdown


class RetryStart(Exception):
    """A transient fault before any bot was started: run the start again in ``delay_s``."""

    def __init__(self, error: BotRunnerError, delay_s: float) -> None:
        super().__init__(str(error))
        self.error = error
        self.delay_s = delay_s


# --- the start, top to bottom ------------------------------------------------------


def start_call(call_session_id: str, attempt: Attempt = Attempt(), hint: dict | None = None) -> None:
    """queued → starting → room, token, AgentRequest, start_bot.

    ``hint``: ``room_hint(call)``, sent along by whoever just wrote the call, so
    the room is ordered before the call is read. Raises ``RetryStart`` when the
    caller should run it again later.
    """
    problems = check_start_config()
    hint = valid_room_hint(hint) if not problems else None
    room = order_room_for(call_session_id, hint) if hint else None
    call = load_call(call_session_id)
    if call is None or not is_startable(call):
        drop_room(call, room, waiting=call is not None and call.status == CallStatus.QUEUED)
        return
    if call.daily_room_name and not problems:
        room = find_room(call, room)  # an earlier delivery made it (and Daily may have named it)
    if room is None and not problems:
        room = order_room(call)
    if not mark_starting(call):
        drop_room(call, room, waiting=call.status == CallStatus.QUEUED)
        return
    if problems:
        fail_start(call, " ".join(problems), delete_room=False)
        return
    made = wait_for_room(call, room, attempt)
    if made is None:
        return
    daily_room, token = made
    if not keep_room(call, daily_room):
        return
    raw_status_token = claim_start(call, daily_room)
    if raw_status_token is None:
        return
    send_start(call, daily_room, token, raw_status_token, attempt)


# --- its steps, in order -----------------------------------------------------------


def order_room(call: CallSession) -> Future:
    """Start making the call's room and token on the process's background loop,
    while the slot is taken.

    The room's name is fixed by the call, so a second delivery finds the room it
    made; a room made for a call that turns out not to start is dropped again.
    """
    return order_room_for(str(call.pk), room_hint(call))


def room_hint(call: CallSession) -> dict:
    """What ordering the call's room takes besides its id.

    The services that write a call send it with the start task: the worker then
    orders the room before it reads the call, which puts the Daily round trip
    about 5 ms earlier on the caller's hold time (bench/RESULTS.md, "Step 8").
    """
    dialin = call.direction == "dial_in"
    return {
        "dialin": dialin,
        "caller_phone": call.from_number if dialin else None,
        "max_duration_s": call.workflow.max_duration_s,
    }


def valid_room_hint(hint) -> dict | None:
    """``hint``'s three fields, or None when it is not a room hint (then the
    room is ordered once the call is read)."""
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


def order_room_for(session_id: str, hint: dict) -> Future:
    return background.submit(lambda: _make_room_and_token(session_id, **hint))


def find_room(call: CallSession, ordered: Future | None) -> Future:
    """The room an earlier delivery made and stored (``keep_room``), instead of a new one.

    In Daily's HIPAA mode the name is Daily's, so a second room ordered from a hint
    would be a second room: it is deleted. If the stored room is gone (expired,
    deleted), a new one is made and ``keep_room`` replaces the stored name.
    """
    if ordered is not None:
        try:
            made, _token = ordered.result()
        except Exception:  # noqa: BLE001 - nothing was made
            made = None
        if made is not None and made.name == call.daily_room_name:
            return ordered  # the same room (names from the session id)
        if made is not None:
            delete_room(made.name, call.pk)
    return background.submit(lambda: _find_room_and_token(call.daily_room_name, str(call.pk), **room_hint(call)))


def load_call(call_session_id: str) -> CallSession | None:
    """The call with everything its AgentRequest needs, in one query."""
    call = (
        CallSession.objects.select_related("organization", "workflow", "patient")
        # Whether its number is do-not-call (on any patient), for the check at the moment of dialling.
        .annotate(number_dnc=Exists(rules.number_dnc_query(OuterRef("organization_id"), OuterRef("to_number"))))
        .filter(pk=call_session_id).first()
    )
    if call is None:
        log.warning("start_call: no call %s", call_session_id)
    return call


def is_startable(call: CallSession) -> bool:
    """Queued or starting, and no earlier delivery sent the start (a second one could ring twice)."""
    return (
        call.status in (CallStatus.QUEUED, CallStatus.STARTING)
        and call.bot_start_requested_at is None
        and not call.held  # held by its campaign (paused): it waits
    )


def mark_starting(call: CallSession) -> bool:
    """Move a queued call to starting; False when it was canceled or moved on
    meanwhile, or (a dial-out) its organisation has no free slot."""
    if call.status == CallStatus.QUEUED:
        moved = transition(call.pk, CallStatus.STARTING, expected=CallStatus.QUEUED) if call.direction == "dial_in" \
            else take_slot(call)
        if moved:
            call.status = CallStatus.STARTING
        else:
            call.refresh_from_db(fields=["status"])
    return call.status == CallStatus.STARTING


def take_slot(call: CallSession) -> bool:
    """queued → starting when the call may ring now and the organisation has a free slot,
    decided under its row lock.

    Dial-ins never come here (a person is on the line: they start at once, and
    count). At the moment of dialling the rules are asked again (``dial_check``):
    a call refused now is canceled with the reason, one whose window has closed
    goes back to ``scheduled`` for the next opening. A call whose number is
    already in a live call of the organisation, or that finds no free slot,
    waits (``dispatched_at`` cleared): the dispatcher hands it to a worker again
    when the number or a slot frees.
    """
    with policy.slot_lock(call.organization_id) as cap:
        if not dial_check(call):
            return False
        if policy.number_in_call(call):
            if CallSession.objects.filter(pk=call.pk, status=CallStatus.QUEUED).update(dispatched_at=None):
                record(call.pk, "waiting_for_number", {"note": "the number is in another call of the organisation"})
            return False
        if policy.slots_held(call.organization_id) >= cap:
            CallSession.objects.filter(pk=call.pk, status=CallStatus.QUEUED).update(dispatched_at=None)
            return False
        return transition(call.pk, CallStatus.STARTING, expected=CallStatus.QUEUED)


def dial_check(call: CallSession, now=None) -> bool:
    """The rules and the calling window, read afresh at the moment of dialling; False: not now.

    The call, its patient and whether its number is do-not-call were read just
    now (``load_call``), not when it was placed: do-not-call, consent and the
    time zone may have changed while it waited for a slot or its campaign's pace.
    """
    now = now or timezone.now()
    refused = rules.refusal(call.organization, call.workflow, call.patient, call.to_number,
                            number_is_dnc=getattr(call, "number_dnc", None))
    if refused is not None:
        transition(call.pk, CallStatus.CANCELED, reason=refused.code, error=refused.message,
                   expected=CallStatus.QUEUED, data={"checked": "at_dial"})
        log.info("call %s canceled at dial time: %s", call.pk, refused.code)
        return False
    window = policy.window_for(call.workflow, call.patient, call.organization)
    if not policy.is_open(now, window):
        later = policy.next_opening(now, window)
        if CallSession.objects.filter(pk=call.pk, status=CallStatus.QUEUED).update(
            scheduled_for=later, dispatched_at=None
        ):
            transition(call.pk, CallStatus.SCHEDULED, reason="window_closed", expected=CallStatus.QUEUED,
                       data={"scheduled_for": later.isoformat()})
            log.info("call %s: window closed at dial time, rings at %s", call.pk, later.isoformat())
        return False
    return True


def wait_for_room(call: CallSession, room: Future, attempt: Attempt):
    """(room, token) once Daily made them; None when the call failed instead."""
    try:
        return room.result()
    except TransientError as exc:
        retry_or_fail(call, exc, "create the Daily room", attempt)
    except BotRunnerError as exc:
        fail_start(call, exc.reason)
    return None


def keep_room(call: CallSession, room: daily.Room) -> bool:
    """Store the room's name on the call as soon as Daily made it, so a later
    delivery finds it (``find_room``) instead of making a second room (in HIPAA
    mode Daily names rooms at random). A compare-and-swap on the name this
    delivery read; when another delivery stored a different room first, ours is
    deleted and this delivery stops (that one starts the call).

    A crash between Daily's answer and this update leaves a room no call names:
    the reaper deletes such rooms (``calls.reaper.delete_orphan_rooms``).
    """
    read = call.daily_room_name
    if read == room.name:
        return True
    stored = CallSession.objects.filter(
        pk=call.pk, status=CallStatus.STARTING, bot_start_requested_at__isnull=True, daily_room_name=read,
    ).update(daily_room_name=room.name, daily_room_url=room.url)
    if stored:
        call.daily_room_name, call.daily_room_url = room.name, room.url
        return True
    call.refresh_from_db(fields=["daily_room_name", "status", "bot_start_requested_at"])
    if call.daily_room_name == room.name:
        return True  # the same room (names from the session id): the claim decides
    delete_room(room.name, call.pk)
    return False


def claim_start(call: CallSession, room: daily.Room) -> str | None:
    """Claim the start for this delivery; the raw status token, or None when not ours.

    Only one delivery may send the start, and never for a call canceled while its
    room was being made (then the room is deleted here).
    """
    raw_status_token = secrets.token_urlsafe(32)
    requested_at = timezone.now()
    claimed = CallSession.objects.filter(
        pk=call.pk, status=CallStatus.STARTING, bot_start_requested_at__isnull=True, daily_room_name=room.name,
    ).update(
        daily_room_name=room.name,
        daily_room_url=room.url,
        status_token_hash=hash_status_token(raw_status_token),
        bot_start_requested_at=requested_at,
    )
    if not claimed:
        call.refresh_from_db()
        if call.status == CallStatus.CANCELED or call.daily_room_name != room.name:
            delete_room(room.name, call.pk)  # canceled meanwhile, or another delivery's room won
        return None
    call.daily_room_name, call.daily_room_url = room.name, room.url
    call.bot_start_requested_at = requested_at
    return raw_status_token


def send_start(call: CallSession, room: daily.Room, token: str, raw_status_token: str, attempt: Attempt) -> None:
    """Build the AgentRequest and start the bot; record what happened on the call."""
    req = agent_request.build(
        call, room.url, token, status_url_for(call.pk), raw_status_token, tools_url=tools_url_for(call.pk)
    )
    try:
        answer = background.run(lambda: _start_bot(req))
    except TransientError as exc:
        if exc.status == 429:
            defer_start(call, exc)  # the runner is at capacity: back to the queue
            return
        # Certainly not started: release the claim so the retry may send it.
        CallSession.objects.filter(pk=call.pk).update(bot_start_requested_at=None)
        retry_or_fail(call, exc, "start the bot", attempt)
        return
    except AmbiguousStartError as exc:
        record(
            call.pk,
            "bot_start_unconfirmed",
            {"error": str(exc), "note": "not retried: the bot may have started; the reaper fails the call if it never reports"},
        )
        return
    except BotRunnerError as exc:
        fail_start(call, exc.reason)
        return
    data = {"target": "pipecat_cloud" if is_production() else "local_runner"}
    if isinstance(answer, dict) and answer.get("sessionId"):
        data["pipecat_session_id"] = answer["sessionId"]
    # Dated when the request went out, not when the runner answered: a quick bot reports
    # "bot_started" before that answer, and the timeline must not list it first.
    record(call.pk, "bot_start_requested", data, at=call.bot_start_requested_at)


# --- retry and failure ----------------------------------------------------------------


def retry_or_fail(call: CallSession, exc: BotRunnerError, what: str, attempt: Attempt) -> None:
    """Raise ``RetryStart`` with the next backoff, or fail the call once the retries are spent."""
    if attempt.retries >= MAX_START_RETRIES:
        fail_start(call, f"{exc.reason} (gave up after {attempt.retries + 1} attempts to {what})")
        return
    delay_s = attempt.retry_delay_s()
    record(call.pk, "start_retry", {"what": what, "error": str(exc), "retry_in_s": delay_s})
    raise RetryStart(exc, delay_s)


def defer_start(call: CallSession, exc: BotRunnerError) -> None:
    """The bot runner answered 429 (at capacity): no bot started, so the call goes
    back to ``queued`` (a ``start_deferred`` event) to be handed again after a
    backoff; it fails with reason ``capacity`` only once it has waited
    ``CALL_CAPACITY_WAIT_S`` in all.
    """
    now = timezone.now()
    row = CallSession.objects.filter(pk=call.pk).values("deferred_since", "start_deferrals").first() or {}
    since = row.get("deferred_since") or now
    if policy.capacity_wait_over(since, now):
        waited = int((now - since).total_seconds())
        transition(
            call.pk, CallStatus.FAILED, reason="capacity",
            error=f"{exc.reason} The call waited {waited} s for capacity and was given up: "
            "raise the agent's capacity on Pipecat Cloud or place fewer calls at once.",
        )
        call.refresh_from_db(fields=["daily_room_name", "status"])
        delete_call_room(call)
        return
    deferrals = (row.get("start_deferrals") or 0) + 1
    delay = policy.deferral_delay(deferrals)
    # The room goes: by the next try it could be close to its expiry.
    delete_call_room(call)
    CallSession.objects.filter(pk=call.pk, status=CallStatus.STARTING).update(
        bot_start_requested_at=None, dispatched_at=None, start_retry_at=now + delay, deferred_since=since,
        start_deferrals=deferrals, daily_room_name="", daily_room_url="", status_token_hash="",
    )
    if transition(call.pk, CallStatus.QUEUED, reason="capacity", expected=CallStatus.STARTING):
        record(call.pk, "start_deferred", {
            "error": str(exc), "retry_in_s": delay.total_seconds(), "deferrals": deferrals,
            "waiting_since": since.isoformat(),
        })
        log.info("call %s deferred (bot runner at capacity), try %s in %.0f s", call.pk, deferrals + 1, delay.total_seconds())


def fail_start(call: CallSession, reason: str, *, delete_room: bool = True) -> None:
    """The start failed for ``reason`` (a sentence a person can act on); its room goes too."""
    transition(call.pk, CallStatus.FAILED, reason="start_failed", error=reason)
    if delete_room:
        call.refresh_from_db(fields=["daily_room_name", "status"])
        delete_call_room(call)


# --- rooms ----------------------------------------------------------------------------


def drop_room(call: CallSession | None, room: Future | None, *, waiting: bool = False) -> None:
    """The call did not move to starting while its room was being made: delete the room.

    Only for a missing or final call, or (``waiting``) one that waits (for a
    slot, or held by its campaign): its next start makes a fresh room. A call
    another delivery is starting keeps its room (``shared_room``); a room Daily
    named for this delivery alone goes.
    """
    if room is None:
        return
    try:
        made, _token = room.result()
    except Exception:  # noqa: BLE001 - nothing was made, or the failure no longer matters
        return
    if call is None:
        delete_room(made.name)
        return
    if waiting:
        delete_room(made.name, call.pk)
        return
    call.refresh_from_db(fields=["status", "daily_room_name"])
    if call.status in FINAL_STATUSES or not shared_room(call, made):
        delete_room(made.name, call.pk)


def shared_room(call: CallSession, room: daily.Room) -> bool:
    """Whether another delivery may be using ``room``: it is the call's stored room,
    or its name comes from the session id. A room Daily named (HIPAA mode) that
    is not stored is this delivery's alone."""
    return room.name in (call.daily_room_name, daily.room_name_for(str(call.pk)))


def delete_call_room(call: CallSession) -> None:
    """Delete the call's Daily room, if it has one (see ``delete_room``)."""
    if call.daily_room_name:
        delete_room(call.daily_room_name, call.pk)


def delete_room(room_name: str, call_id=None, *, wait: bool = True) -> None:
    """The one way a Daily room is deleted: never raises.

    ``wait`` (sync callers): block until Daily answered, and record a failure
    on the call ``call_id`` as a ``room_delete_failed`` event. Without it (async
    callers, e.g. the bot socket): the deletion runs on the background loop and
    a failure is only logged.
    """
    future = background.submit(_with_session(daily.delete_room, room_name))
    if not wait:
        future.add_done_callback(background.log_failure(f"deleting room {room_name}", log))
        return
    try:
        future.result()
    except BotRunnerError as exc:
        log.warning("could not delete room %s of call %s: %s", room_name, call_id, exc)
        error = str(exc)
    except Exception as exc:  # noqa: BLE001
        log.exception("could not delete room %s of call %s", room_name, call_id)
        error = exc.__class__.__name__
    else:
        return
    if call_id is not None:
        record(call_id, "room_delete_failed", {"error": error})


# --- what the bot is given --------------------------------------------------------------


def hash_status_token(raw: str) -> str:
    """What is stored of the bot's status token (the bot socket compares against it)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def status_url_for(session_id) -> str:
    """The WebSocket URL the bot reports to: PUBLIC_BASE_URL with ws(s)://."""
    base = settings.PUBLIC_BASE_URL
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    return f"{base}/ws/bot/{session_id}/"


def tools_url_for(session_id) -> str:
    """Where the bot calls the server's tools: PUBLIC_BASE_URL + /api/bot/<session id>/tools/ (+ the tool's name)."""
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/api/bot/{session_id}/tools/"


def record(call_id, kind: str, data: dict, at=None) -> None:
    """An event on the call's timeline that is not a status move."""
    CallEvent.objects.create(call_id=call_id, at=at or timezone.now(), kind=kind, data=data)


# --- on the process's event loop ----------------------------------------------------------


async def _make_room_and_token(session_id: str, *, dialin: bool, caller_phone, max_duration_s: int):
    session = await http.get_session()
    room = await daily.create_room(
        session, session_id=session_id, dialin=dialin, caller_phone=caller_phone, max_duration_s=max_duration_s,
    )
    token = await daily.meeting_token(session, room)
    return room, token


async def _find_room_and_token(name: str, session_id: str, *, dialin: bool, caller_phone, max_duration_s: int):
    session = await http.get_session()
    room = await daily.get_room(session, name)
    if room is None:
        room = await daily.create_room(
            session, session_id=session_id, dialin=dialin, caller_phone=caller_phone, max_duration_s=max_duration_s,
        )
    token = await daily.meeting_token(session, room)
    return room, token


async def _start_bot(req):
    session = await http.get_session()
    return await start_bot(req, session)


async def _with_session_coro(fn, *args, **kwargs):
    session = await http.get_session()
    return await fn(session, *args, **kwargs)


def _with_session(fn, *args, **kwargs):
    return lambda: _with_session_coro(fn, *args, **kwargs)
