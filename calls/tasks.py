"""Celery tasks: starting a bot (``calls.starting``) and the stale-call reaper.

`start_call` runs in a worker thread (the worker's pool is threads, see
myrobot/celery.py); its HTTP calls go to the process's one event loop through
`botrunner.http.run`, so many starts overlap their I/O in one process. The
tasks only adapt Celery to the services: delivery, retry and browser updates.
"""

from __future__ import annotations

import time

from celery import shared_task

from . import broadcast, dispatcher, reaper, starting


@shared_task(bind=True, max_retries=starting.MAX_START_RETRIES, acks_late=True, ignore_result=True)
def start_call(self, call_session_id: str, room: dict | None = None) -> None:
    """Start the call's bot (``starting.start_call``); retry when it says so.

    The caller's hold time on dial-in is this task: browser updates are sent
    when it ends (``deferred``), and ``room`` (``starting.room_hint()``, given
    by the services that enqueue a start) lets it ask Daily for the room before
    it reads the call.
    """
    attempt = starting.Attempt(retries=self.request.retries, eager=bool(self.request.is_eager))
    with broadcast.deferred(background=not attempt.eager):
        try:
            starting.start_call(call_session_id, room, attempt)
        except starting.RetryStart as retry:
            if not attempt.eager:
                raise self.retry(countdown=retry.delay_s, exc=retry.error) from None
            # Eager Celery (the embedded default) ignores countdowns and raises
            # Retry into the caller: retry inline after a short pause instead.
            time.sleep(retry.delay_s)
            self.apply(args=[call_session_id], retries=attempt.retries + 1, throw=True)


@shared_task(ignore_result=True)
def reap_stale_calls() -> int:
    """Fail calls that stopped reporting, so nothing stays non-final forever."""
    return reaper.reap_stale_calls()


@shared_task(ignore_result=True)
def dispatch_calls() -> str:
    """The call policy's dispatcher tick (Celery beat, every few seconds): due
    scheduled calls, queued calls with a free slot, lost starts; see calls.dispatcher."""
    return str(dispatcher.dispatch(start_call.delay, reap=False))
