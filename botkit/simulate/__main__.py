"""``python -m botkit.simulate SCENARIO.json [--log-level INFO]``: play one call, print its JSON report.

Exit status 0 when the call ran (whatever its outcome), 2 for a scenario file
that cannot be read or is not valid (the fields at fault on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from pydantic import ValidationError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m botkit.simulate", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", help="a scenario JSON file ('-' for stdin)")
    parser.add_argument("--log-level", default=None, help="the bot's log level on stderr (default WARNING)")
    args = parser.parse_args(argv)
    from botkit.simulate import Scenario, quiet_logs, simulate  # after the log set-up above, so Pipecat's import logs stay quiet

    try:
        text = sys.stdin.read() if args.scenario == "-" else open(args.scenario).read()
        scenario = Scenario.model_validate_json(text)
    except OSError as e:
        print(f"cannot read the scenario: {e}", file=sys.stderr)
        return 2
    except ValidationError as e:
        for err in e.errors():
            print(f"scenario field {'.'.join(str(p) for p in err['loc'])}: {err['msg']}", file=sys.stderr)
        return 2
    quiet_logs(args.log_level)
    report = asyncio.run(simulate(scenario))
    json.dump(report, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
