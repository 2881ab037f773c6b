"""Celery tasks of the FHIR app: the periodic sync, and sending the outbox.

Sends run on ``settings.FHIR_QUEUE`` (the webhooks' queue by default: slow
EHRs hold up no call start). Without a broker (Celery eager, the embedded
default) they run on a small thread pool, never inside the transaction or the
bot's socket that ended the call.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from celery import shared_task
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from . import sending
from .client import FhirError
from .models import FhirConnection
from .sync import sync_connection

log = logging.getLogger(__name__)


@shared_task(name="fhir.tasks.sync_all", ignore_result=True)
def sync_all() -> None:
    """Celery beat: each active connection, from now to its ``sync_days_ahead``."""
    now = timezone.now()
    for connection in FhirConnection.objects.filter(is_active=True, organization__is_active=True):
        try:
            sync_connection(connection, now, now + dt.timedelta(days=connection.sync_days_ahead))
        except FhirError as exc:  # recorded on the connection; the next run tries again
            log.warning("FHIR sync of connection %s failed: %s", connection.pk, exc)


@shared_task(name="fhir.tasks.send_write", ignore_result=True)
def send_write(write_id: int) -> None:
    attempt(write_id)


@shared_task(name="fhir.tasks.sweep", ignore_result=True)
def sweep() -> None:
    """Celery beat: due retries, and writes a dead process left behind."""
    for pk in sending.due_writes():
        schedule_write(pk)


def attempt(write_id) -> str | None:
    status, retry_in = sending.send_write(write_id)
    if retry_in is not None and retry_in <= settings.WEBHOOK_SHORT_RETRY_S:
        schedule_write(write_id, countdown=retry_in)
    return status


_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
_pool_lock = threading.Lock()


def _submit(write_id) -> None:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fhir-writes")
            _pool_pid = os.getpid()
    _pool.submit(_run_in_thread, write_id)


def _run_in_thread(write_id) -> None:
    try:
        attempt(write_id)
    except Exception:  # noqa: BLE001 - the sweep tries again; never kill the pool
        log.exception("FHIR write %s failed to send", write_id)
    finally:
        close_old_connections()


def schedule_write(write_id, countdown: float = 0) -> None:
    """Send soon: a task on the FHIR queue, or (no broker) a background thread."""
    if send_write.app.conf.task_always_eager:
        if countdown:
            timer = threading.Timer(countdown, _submit, args=(write_id,))
            timer.daemon = True
            timer.start()
        else:
            _submit(write_id)
        return
    send_write.apply_async(args=[write_id], queue=settings.FHIR_QUEUE, countdown=countdown or None)
