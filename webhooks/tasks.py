"""Celery tasks of the webhooks app (on ``settings.WEBHOOK_QUEUE``), and where sends are scheduled.

Without a broker (Celery eager, the embedded default) sends run on a small
thread pool in the process instead — never inline in the request or the bot's
status socket that made the event.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from celery import shared_task
from django.conf import settings
from django.db import close_old_connections

from . import sending

log = logging.getLogger(__name__)


@shared_task(name="webhooks.tasks.deliver", ignore_result=True)
def deliver(delivery_id: int) -> None:
    """One attempt of one delivery (no-op unless it is due and unclaimed)."""
    attempt(delivery_id)


@shared_task(name="webhooks.tasks.sweep", ignore_result=True)
def sweep() -> None:
    """Celery beat: send what is due — retries, and rows a crashed process left behind."""
    for pk in sending.due_deliveries():
        schedule_send(pk)


def attempt(delivery_id) -> str | None:
    """Send once now; time a short retry here (longer ones are the sweep's: broker ETAs
    of hours are not reliable). Returns the delivery's new status (None: not sent)."""
    status, retry_in = sending.send_delivery(delivery_id)
    if retry_in is not None and retry_in <= settings.WEBHOOK_SHORT_RETRY_S:
        schedule_send(delivery_id, countdown=retry_in)
    return status


_inline_pool: ThreadPoolExecutor | None = None
_inline_pid: int | None = None
_inline_lock = threading.Lock()


def _inline_submit(fn, *args) -> None:
    """Without a broker (Celery eager) sends run on a small thread pool, never in the caller.

    One pool per process: a forked child (a server's worker process) must not
    queue work on its parent's pool, whose threads did not survive the fork.
    """
    global _inline_pool, _inline_pid
    with _inline_lock:
        if _inline_pool is None or _inline_pid != os.getpid():
            _inline_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhooks")
            _inline_pid = os.getpid()
    _inline_pool.submit(fn, *args)


def _send_in_thread(delivery_id) -> None:
    try:
        attempt(delivery_id)
    except Exception:  # noqa: BLE001 - the sweep retries; never kill the pool
        log.exception("webhook delivery %s failed to send", delivery_id)
    finally:
        close_old_connections()


def schedule_send(delivery_id, countdown: float = 0) -> None:
    """Send soon: a task on the webhooks queue, or (no broker) a background thread."""
    if deliver.app.conf.task_always_eager:
        if countdown:
            timer = threading.Timer(countdown, _inline_submit, args=(_send_in_thread, delivery_id))
            timer.daemon = True
            timer.start()
        else:
            _inline_submit(_send_in_thread, delivery_id)
        return
    deliver.apply_async(args=[delivery_id], queue=settings.WEBHOOK_QUEUE, countdown=countdown or None)


