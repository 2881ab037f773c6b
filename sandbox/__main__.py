"""``python -m sandbox``: serve simulated Daily + bot runner for ``make demo``.

    python -m sandbox [--port 7871] [--rates answered=70,no_answer=10,voicemail=10,busy=10] [--max-calls 2]

Environment: ``SANDBOX_PORT``, ``SANDBOX_RATES``, ``SANDBOX_MAX_CALLS``, ``DAILY_API_KEY``
(the key the server sends; any value), ``BOT_LOG_LEVEL`` (the bots' log level,
default WARNING). Refuses ``ENV=production``, and refuses to start without
espeak-ng (the simulated patient's voice).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aiohttp import web

from .calls import SpeechMissing, parse_rates
from .server import DEFAULT_API_KEY, DEFAULT_MAX_CALLS, DEFAULT_PORT, DEFAULT_RATES, Sandbox, SandboxRefused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SANDBOX_PORT", DEFAULT_PORT)))
    parser.add_argument("--rates", default=os.environ.get("SANDBOX_RATES", DEFAULT_RATES))
    parser.add_argument("--max-calls", type=int,
                        default=int(os.environ.get("SANDBOX_MAX_CALLS", DEFAULT_MAX_CALLS)))
    parser.add_argument("--hipaa", action="store_true", default=os.environ.get("SANDBOX_HIPAA") == "1",
                        help="answer as Daily's HIPAA mode: rooms get random names (run the server with DAILY_HIPAA_MODE=1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        rates = parse_rates(args.rates)
        sandbox = Sandbox(api_key=os.environ.get("DAILY_API_KEY") or DEFAULT_API_KEY, rates=rates,
                          max_calls=max(1, args.max_calls), hipaa=args.hipaa)
    except (SandboxRefused, SpeechMissing, ValueError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    # The bot and its models load once, here, not under the first call.
    import bot  # noqa: F401 - bot.py, at the repository's root
    from botkit import phi

    phi.configure_logging(os.environ.get("BOT_LOG_LEVEL") or "WARNING")
    print(f"sandbox: simulated Daily at http://{args.host}:{args.port}/v1 and bot runner at "
          f"http://{args.host}:{args.port} (rates {args.rates})", flush=True)
    web.run_app(sandbox.app(), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
