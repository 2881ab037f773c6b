"""Settings for a benchmark stack that shares its Redis with other runs.

``myrobot.settings`` unchanged, except that with ``BENCH_QUEUE`` set the
Celery queue and the channel-layer prefix carry that name, so two runs on one
Redis (the smoke tests of two sessions, say) never take each other's tasks or
messages. The harness uses it only when given ``--isolate``.
"""

import os

from myrobot.settings import *  # noqa: F401,F403
from myrobot.settings import CHANNEL_LAYERS, REDIS_URL

_queue = os.environ.get("BENCH_QUEUE", "")
if _queue:
    CELERY_TASK_DEFAULT_QUEUE = _queue
    if REDIS_URL:
        CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = _queue
