"""Capacity across processes: PostgreSQL, a real Celery worker and two dispatchers.

Cap 3, twelve calls placed at once: sampled from the database while they run,
never more than three hold a slot; in the end all twelve started, each exactly
once. The test plays the bots' part: a call whose bot start reached the runner
is answered and ended (what the bot's status socket would apply).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings as django_settings
from django.db import close_old_connections, connection

from calls.events import apply_bot_message
from calls.models import HOLDING_STATUSES, CallSession
from calls.services import place_call
from tests import factories
from tests import live

CAP, CALLS = 3, 12


def _dispatcher(queue: str) -> subprocess.Popen:
    env = dict(os.environ)
    env["DATABASE_URL"] = live.test_database_url()
    env["CELERY_QUEUE"] = queue
    env.pop("TEST_DATABASE_NAME", None)
    for name in ("DAILY_API_URL", "DAILY_API_KEY", "ENV", "LOCAL_SERVER_URL", "PUBLIC_BASE_URL",
                 "DISPATCH_LOST_START_AFTER_S", "STALE_START_AFTER_S"):
        env[name] = str(getattr(django_settings, name))
    return subprocess.Popen(
        [sys.executable, "manage.py", "dispatch_calls", "--loop", "--interval", "0.2"],
        cwd=live.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.mark.skipif(not django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                    reason="row locks across processes: PostgreSQL")
def test_cap_holds_across_worker_and_two_dispatchers(fake_daily, fake_runner, celery_worker):
    from myrobot.celery import app

    org = factories.make_org("busy-clinic", max_concurrent_calls=CAP)
    workflow = factories.make_workflow(org)
    patients = [factories.make_patient(org) for _ in range(CALLS)]
    dispatchers = [_dispatcher(app.conf.task_default_queue) for _ in range(2)]
    output: list[str] = []
    for proc in dispatchers:
        threading.Thread(target=lambda p=proc: output.extend(p.stdout), daemon=True).start()
    try:
        def place(patient):
            try:
                return place_call(organization=org, workflow=workflow, patient=patient)
            finally:
                close_old_connections()

        with ThreadPoolExecutor(CALLS) as pool:
            calls = list(pool.map(place, patients))
        ids = {str(c.pk) for c in calls}

        most_held, answered = 0, {}
        deadline = time.monotonic() + 90
        while True:
            held = CallSession.objects.filter(organization=org, status__in=list(HOLDING_STATUSES)).count()
            most_held = max(most_held, held)
            started = {body["session_id"] for body in fake_runner.started}
            done = CallSession.objects.filter(organization=org, status="completed").count()
            if done == CALLS:
                break
            assert time.monotonic() < deadline, (
                f"{done} of {CALLS} done, {len(started)} started\n" + "".join(celery_worker.output[-30:])
                + "".join(output[-30:])
            )
            # The bots: answer a started call, and end it a moment later.
            for sid in started - set(answered):
                apply_bot_message(sid, {"seq": 1, "event": "dialout_answered", "data": {}})
                answered[sid] = time.monotonic()
            for sid, at in list(answered.items()):
                if at and time.monotonic() - at > 0.3:
                    apply_bot_message(sid, {"seq": 2, "event": "ended", "data": {"reason": "completed"}})
                    answered[sid] = 0
            time.sleep(0.02)
    finally:
        for proc in dispatchers:
            proc.terminate()
        for proc in dispatchers:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    starts = [body["session_id"] for body in fake_runner.started]
    assert sorted(starts) == sorted(ids)  # all twelve, each exactly once
    assert most_held <= CAP, most_held
    assert most_held == CAP  # the cap was reached, so the test did test it
    assert connection.vendor == "postgresql"
    # Nine calls found no slot at first: the dispatchers handed them on as slots freed.
    assert any(re.search(r"handed [1-9]", line) for line in output), "".join(output[-30:])
