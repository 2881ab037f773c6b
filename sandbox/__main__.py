"""``python -m sandbox``: serve simulated Daily + bot runner for ``make demo``.

    python -m sandbox [--port 7871] [--rates answered=70,no_answer=10,voicemail=10,busy=10] [--step 0.8]

Environment: ``SANDBOX_PORT``, ``SANDBOX_RATES``, ``SANDBOX_STEP_S``, ``DAILY_API_KEY``
(the key the server sends; any value). Refuses ``ENV=production``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aiohttp import web

from .script import parse_rates
from .server import DEFAULT_API_KEY, DEFAULT_PORT, DEFAULT_RATES, Sandbox, SandboxRefused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SANDBOX_PORT", DEFAULT_PORT)))
    parser.add_argument("--rates", default=os.environ.get("SANDBOX_RATES", DEFAULT_RATES))
    parser.add_argument("--step", type=float, default=float(os.environ.get("SANDBOX_STEP_S", "0.8")))
    parser.add_argument("--hipaa", action="store_true", default=os.environ.get("SANDBOX_HIPAA") == "1",
                        help="answer as Daily's HIPAA mode: rooms get random names (run the server with DAILY_HIPAA_MODE=1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        rates = parse_rates(args.rates)
        sandbox = Sandbox(api_key=os.environ.get("DAILY_API_KEY") or DEFAULT_API_KEY, rates=rates, step_s=args.step,
                          hipaa=args.hipaa)
    except (SandboxRefused, ValueError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    print(f"sandbox: simulated Daily at http://{args.host}:{args.port}/v1 and bot runner at "
          f"http://{args.host}:{args.port} (rates {args.rates})", flush=True)
    web.run_app(sandbox.app(), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
