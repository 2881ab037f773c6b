"""Celery tasks: starting a bot (``calls.starting``) and the stale-call reaper.

`start_call` runs in a worker thread (the worker's pool is threads, see
myrobot/celery.py); its HTTP calls go to the process's one event loop through
the background loop (`background.run`), so many starts overlap their I/O in one process. The
tasks only adapt Celery to the services: delivery, retry and browser updates.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import shared_task
from django.db import InterfaceError, OperationalError, close_old_connections, connections

from . import broadcast, dispatcher, reaper, retention, starting

log = logging.getLogger(__name__)


# A database outage longer than about a minute is left to the dispatcher's sweep.
DB_ERROR_RETRIES = 8


@shared_task(bind=True, max_retries=starting.MAX_START_RETRIES, acks_late=True, ignore_result=True)
def start_call(self, call_session_id: str, room_hint: dict | None = None) -> None:
    """Start the call's bot (``starting.start_call``); retry when it says so.

    The caller's hold time on dial-in is this task: browser updates are sent
    when it ends (``deferred``). ``room_hint``: ``starting.room_hint(call)``,
    when the sender had the call at hand (the room is then ordered first).
    """
    attempt = starting.Attempt(retries=self.request.retries, eager=bool(self.request.is_eager))
    with broadcast.deferred(background=not attempt.eager):
        try:
            starting.start_call(call_session_id, attempt, room_hint)
        except (OperationalError, InterfaceError) as exc:
            # The database dropped the connection (restart, failover, terminated
            # backend). Acking would lose the start: drop the dead connection and
            # deliver again. The start claim keeps a second delivery from ringing twice.
            close_old_connections()
            _note_db_error(call_session_id, exc)
            if attempt.eager or attempt.retries >= DB_ERROR_RETRIES:
                raise
            raise self.retry(countdown=min(2 ** attempt.retries, 30), exc=exc, max_retries=DB_ERROR_RETRIES) from None
        except starting.RetryStart as retry:
            if not attempt.eager:
                raise self.retry(countdown=retry.delay_s, exc=retry.error) from None
            # Eager Celery (the embedded default) ignores countdowns and raises
            # Retry into the caller: retry inline after a short pause instead.
            time.sleep(retry.delay_s)
            self.apply(args=[call_session_id, room_hint], retries=attempt.retries + 1, throw=True)


_background_starts: set[threading.Thread] = set()


def start_in_background(call_session_id: str) -> threading.Thread:
    """The embedded default's start (eager Celery), on its own thread.

    Same task, same code as with a worker; only the thread differs, so the page
    that placed the call answers at once even when the start is retried.
    """

    def run() -> None:
        try:
            start_call.delay(call_session_id)
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


def _note_db_error(call_session_id: str, exc: Exception) -> None:
    """Leave a trace for the reaper's reason, if the database takes writes again."""
    try:
        starting.record(call_session_id, "start_db_error", {"error": exc.__class__.__name__})
    except Exception:  # noqa: BLE001 - still down: the retry is what matters
        close_old_connections()


@shared_task(ignore_result=True)
def reap_stale_calls() -> int:
    """Fail calls that stopped reporting, so nothing stays non-final forever."""
    return reaper.reap_stale_calls()


@shared_task(ignore_result=True)
def purge_call_data() -> int:
    """Retention (Celery beat, daily): purge what organisations keep for a limited time (calls.retention)."""
    return sum(retention.purge_expired().values())


@shared_task(ignore_result=True)
def dispatch_calls() -> str:
    """The call policy's dispatcher tick (Celery beat, every few seconds): due
    scheduled calls, queued calls with a free slot, lost starts; see calls.dispatcher."""
    return str(dispatcher.dispatch(start_call.delay, reap=False))
