"""The Celery app.

Bot starts spend nearly all their time waiting on Daily and Pipecat, so the
worker runs a thread pool by default: many starts in flight per process, each
handing its HTTP I/O to the process's background event loop (background.py). A plain
``celery -A myrobot worker`` therefore runs as intended.
"""

import gc
import os

from celery import Celery
from celery.signals import beat_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myrobot.settings")

app = Celery("myrobot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def freeze_start_up_objects(**kwargs):
    """As in myrobot/asgi.py: what start-up loaded stays out of the collector's full passes."""
    gc.freeze()


@worker_ready.connect
def start_worker_heartbeat(sender=None, **kwargs):
    """A live worker, and the queues it consumes, for /readyz (myrobot/heartbeat.py)."""
    from django.conf import settings

    if not settings.REDIS_URL:
        return
    from . import heartbeat  # the project package loads before the apps are ready; models and Redis only when asked

    queues = sorted(q.name for q in getattr(sender.task_consumer, "queues", []) or [])
    heartbeat.start("worker", sender.hostname, queues)


@beat_init.connect
def start_beat_heartbeat(sender=None, **kwargs):
    """A live beat (the dispatcher's clock), for /readyz."""
    import socket

    from django.conf import settings

    if not settings.REDIS_URL:
        return
    from . import heartbeat  # the project package loads before the apps are ready; models and Redis only when asked

    heartbeat.start("beat", f"{socket.gethostname()}:{os.getpid()}")
