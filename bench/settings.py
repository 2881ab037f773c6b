"""Settings for a benchmark stack that shares its Redis with other runs.

``myrobot.settings`` unchanged, except that with ``BENCH_QUEUE`` set the
Celery queue and the channel-layer prefix carry that name, so two runs on one
Redis (the smoke tests of two sessions, say) never take each other's tasks or
messages. The harness uses it only when given ``--isolate``.
"""

import os

from myrobot.settings import *  # noqa: F401,F403
from myrobot.settings import CHANNEL_LAYERS, CELERY_TASK_QUEUES, REDIS_URL

_queue = os.environ.get("BENCH_QUEUE", "")
if _queue:
    CELERY_TASK_DEFAULT_QUEUE = _queue
    # The worker consumes the declared queues: declare this one instead of `celery`.
    CELERY_TASK_QUEUES = [type(CELERY_TASK_QUEUES[0])(_queue), *CELERY_TASK_QUEUES[1:]]
    if REDIS_URL:
        CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = _queue
