"""The reference row: Pipecat's own development runner with a bot that only records.

``python -m bench.reference_bot --host 127.0.0.1 --port 7861 -t daily --dialin``
serves ``pipecat.runner.run``'s FastAPI app: ``POST /daily-dialin-webhook``
(room via ``configure()``: ``POST /rooms`` then ``POST /meeting-tokens``, on a
new ``aiohttp.ClientSession`` per request) and ``POST /start``. The runner
starts bots in-process, so the hold time ends when ``bot()`` is entered: this
bot appends one JSON line — ``time.monotonic()``, the dial-in ``callId`` or
the body's ``bench_id`` — to ``$BENCH_REFERENCE_LOG`` and returns.

Point it at the Daily fake with ``DAILY_API_URL`` / ``DAILY_API_KEY``, as the
runner reads them from the environment.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

_LOG = os.environ.get("BENCH_REFERENCE_LOG", "")
_fh = open(_LOG, "a", buffering=1) if _LOG else None


async def bot(runner_args: Any) -> None:
    at = time.monotonic()
    body = getattr(runner_args, "body", None) or {}
    key = None
    if isinstance(body, dict):
        dialin = body.get("dialin_settings")
        if isinstance(dialin, dict):
            key = dialin.get("call_id")
        key = key or body.get("bench_id")
    if _fh is not None:
        _fh.write(json.dumps({"at": at, "key": key, "room_url": getattr(runner_args, "room_url", None),
                              "has_token": bool(getattr(runner_args, "token", None))}) + "\n")


def main() -> None:
    from loguru import logger

    from pipecat.runner.run import main as runner_main

    # The runner logs every request body at DEBUG; our bot.py silences it too
    # (Pipecat logs them at DEBUG), so both rows pay the same logging cost.
    logger.disable("pipecat.runner.run")
    runner_main()


if __name__ == "__main__":
    main()
