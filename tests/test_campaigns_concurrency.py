"""Two dispatcher processes on PostgreSQL: the pace holds between them and each target starts once.

Both run the calls' dispatcher (with the campaigns' release step) in a loop
against the test database (Celery eager in each, so a call handed to a worker
starts inside the dispatcher process, against the fake Daily and bot runner). Fifty patients at 30 a minute: the
first minute's 30 start, and no more, whichever process releases them; the
test then moves those starts a minute into the past (time passing, without
waiting for it) and the other 20 start. Every target's bot was started
exactly once.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings as django_settings
from django.db import connection

from calls.models import CallSession
from campaigns import services
from tests import factories, live

PATIENTS, PACE = 50, 30


def _dispatcher() -> subprocess.Popen:
    env = dict(os.environ)
    env["DATABASE_URL"] = live.test_database_url()
    env.pop("TEST_DATABASE_NAME", None)
    env.pop("REDIS_URL", None)  # Celery eager: the releasing process starts the call itself
    for name in ("DAILY_API_URL", "DAILY_API_KEY", "ENV", "LOCAL_SERVER_URL", "PUBLIC_BASE_URL"):
        env[name] = str(getattr(django_settings, name))
    return subprocess.Popen(
        [sys.executable, "manage.py", "dispatch_calls", "--loop", "--interval", "0.1", "-v", "2"],
        cwd=live.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _wait_for(check, what, output, timeout=60):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n" + "".join(output[-40:])
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                    reason="row locks across processes: PostgreSQL")
def test_two_dispatchers_pace_and_start_each_target_once(fake_daily, fake_runner):
    fake_runner.cli_transport = "daily"
    org = factories.make_org("busy-clinic", max_concurrent_calls=PATIENTS)
    workflow = factories.make_workflow(org)
    patients = [factories.make_patient(org) for _ in range(PATIENTS)]
    campaign = services.create_campaign(organization=org, workflow=workflow, name="Race", patients=patients,
                                        pace_per_minute=PACE)
    calls = CallSession.objects.filter(campaign_id=campaign.pk)
    output: list[str] = []
    ticks = [0, 0]  # each process's finished ticks (it prints every one with -v 2)
    dispatchers = [_dispatcher() for _ in range(2)]

    def read(i, proc):
        for line in proc.stdout:
            output.append(line)
            if line.startswith("promoted "):
                ticks[i] += 1

    for i, proc in enumerate(dispatchers):
        threading.Thread(target=read, args=(i, proc), daemon=True).start()

    def ten_more_ticks_each():
        seen = list(ticks)
        _wait_for(lambda: all(t >= s + 10 for t, s in zip(ticks, seen)), "ten more ticks of each dispatcher", output)
    try:
        _wait_for(lambda: len(fake_runner.started) >= PACE, "the first minute's starts", output)
        # Both processes tick on (ten whole ticks each): nothing more may start this minute.
        ten_more_ticks_each()
        assert calls.filter(started_at__isnull=False).count() == PACE
        assert len(fake_runner.started) == PACE
        # A minute passes for the campaign: its starts leave the 60-second span.
        calls.filter(started_at__isnull=False).update(started_at=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
        _wait_for(lambda: len(fake_runner.started) >= PATIENTS, "the remaining starts", output)
        ten_more_ticks_each()  # and no target starts a second time
    finally:
        for proc in dispatchers:
            proc.terminate()
        for proc in dispatchers:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    starts = [body["session_id"] for body in fake_runner.started]
    assert sorted(starts) == sorted(str(pk) for pk in calls.values_list("pk", flat=True))  # each exactly once
    assert connection.vendor == "postgresql"
    # The dispatcher processes handed the calls (the test released and started nothing itself).
    assert any("handed" in line for line in output), output[-20:]
