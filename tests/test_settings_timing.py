"""Timing settings that defeat each other stop start-up with one line naming them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("STALE_START_AFTER_S", "STALE_MARGIN_S", "DISPATCH_INTERVAL_S", "DISPATCH_LOST_START_AFTER_S",
          "DISPATCH_STALLED_START_AFTER_S", "BOTRUNNER_START_TIMEOUT_S", "CALL_CAPACITY_BACKOFF_S",
          "CALL_CAPACITY_BACKOFF_MAX_S", "CALL_CAPACITY_WAIT_S", "CELERY_VISIBILITY_TIMEOUT_S")


def _run(args, **env):
    full = {k: v for k, v in os.environ.items() if k not in TIMING + ("ENV", "SECRET_KEY")}
    full.update(env)
    return subprocess.run(args, cwd=ROOT, env=full, capture_output=True, text=True, timeout=60)


def _check(**env):
    return _run([sys.executable, "manage.py", "check"], **env)


@pytest.mark.parametrize("env, named", [
    ({"STALE_START_AFTER_S": "30"}, ["STALE_START_AFTER_S=30", "DISPATCH_STALLED_START_AFTER_S=60"]),
    ({"STALE_START_AFTER_S": "100", "DISPATCH_STALLED_START_AFTER_S": "99"},
     ["STALE_START_AFTER_S=100", "DISPATCH_STALLED_START_AFTER_S=99"]),
    ({"DISPATCH_LOST_START_AFTER_S": "200"}, ["STALE_START_AFTER_S=120", "DISPATCH_LOST_START_AFTER_S=200"]),
    ({"CALL_CAPACITY_BACKOFF_S": "120"}, ["CALL_CAPACITY_BACKOFF_S=120", "CALL_CAPACITY_BACKOFF_MAX_S=60"]),
    ({"CALL_CAPACITY_WAIT_S": "30"}, ["CALL_CAPACITY_BACKOFF_MAX_S=60", "CALL_CAPACITY_WAIT_S=30"]),
    ({"DISPATCH_INTERVAL_S": "0"}, ["DISPATCH_INTERVAL_S=0 must be more than 0"]),
    ({"REDIS_URL": "redis://127.0.0.1:1/0", "CELERY_VISIBILITY_TIMEOUT_S": "10"},
     ["CELERY_VISIBILITY_TIMEOUT_S=10", "BOTRUNNER_START_TIMEOUT_S=15"]),
])
def test_conflicting_timings_stop_manage_py_with_one_line(env, named):
    result = _check(**env)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("myrobot: configuration error:")
    for text in named:
        assert text in line


def test_the_defaults_and_a_consistent_change_pass():
    assert _check().returncode == 0
    assert _check(STALE_START_AFTER_S="40", DISPATCH_STALLED_START_AFTER_S="30",
                  DISPATCH_LOST_START_AFTER_S="10").returncode == 0


def test_the_server_refuses_too():
    """daphne loads the settings as manage.py does, and says the same line."""
    result = _run([sys.executable, "-m", "daphne", "-p", "0", "myrobot.asgi:application"], STALE_START_AFTER_S="30")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("myrobot: configuration error: STALE_START_AFTER_S=30")


def test_a_missing_secret_key_in_production_is_one_line_not_a_traceback():
    result = _check(ENV="production")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line == "myrobot: configuration error: SECRET_KEY is empty and ENV=production: set SECRET_KEY to a long random string."


def test_the_dev_server_logs_each_request_once(settings):
    """Every handler a request line meets on its way up: exactly one (the root's console)."""
    import logging

    from django.utils.log import configure_logging

    settings.DEBUG = True
    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
    for name in ("django.channels.server", "django.request"):
        logger, met = logging.getLogger(name), []
        while logger:
            met += [h for h in logger.handlers if not type(h).__module__.startswith("_pytest")]
            logger = logger.parent if logger.propagate else None
        assert len(met) == 1, (name, met)
