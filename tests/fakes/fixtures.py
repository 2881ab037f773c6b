"""Pytest fixtures: the fakes, started once per test session, reset per test,
with the settings a user would set pointed at them.

Use ``from tests.fakes.fixtures import *`` in ``tests/conftest.py``.

- ``fake_daily``: DAILY_API_URL, DAILY_API_KEY (and the token mode ``local``).
- ``fake_pipecat``: PIPECAT_API_URL, PIPECAT_API_KEY, PIPECAT_AGENT_NAME and
  ``ENV="production"`` (starts go to Pipecat Cloud).
- ``fake_runner``: LOCAL_SERVER_URL and ``ENV="development"`` (starts go to
  the local runner). Requesting both ``fake_pipecat`` and ``fake_runner``
  leaves ENV as the last one set it; set ``settings.ENV`` yourself then.
"""

from __future__ import annotations

import pytest

from .daily import FakeDaily
from .pipecat import FakePipecatCloud, FakeRunner

__all__ = [
    "fake_daily_server",
    "fake_pipecat_server",
    "fake_runner_server",
    "fake_daily",
    "fake_pipecat",
    "fake_runner",
    "fake_receiver_server",
    "fake_receiver",
]


@pytest.fixture(scope="session")
def fake_daily_server():
    server = FakeDaily().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_pipecat_server():
    server = FakePipecatCloud().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_runner_server():
    server = FakeRunner().start()
    yield server
    server.stop()


@pytest.fixture
def fake_daily(fake_daily_server, settings):
    from botrunner import daily

    fake_daily_server.reset()
    daily.clear_caches()
    settings.DAILY_API_URL = fake_daily_server.api_url
    settings.DAILY_API_KEY = fake_daily_server.api_key
    settings.DAILY_MEETING_TOKEN_MODE = "local"
    yield fake_daily_server
    fake_daily_server.reset()


@pytest.fixture
def fake_pipecat(fake_pipecat_server, settings):
    fake_pipecat_server.reset()
    settings.ENV = "production"
    settings.PIPECAT_API_URL = fake_pipecat_server.url
    settings.PIPECAT_API_KEY = fake_pipecat_server.api_key
    settings.PIPECAT_AGENT_NAME = sorted(fake_pipecat_server.agents)[0]
    yield fake_pipecat_server
    fake_pipecat_server.reset()


@pytest.fixture
def fake_runner(fake_runner_server, settings):
    fake_runner_server.reset()
    fake_runner_server.cli_transport = None
    settings.ENV = "development"
    settings.LOCAL_SERVER_URL = fake_runner_server.url
    yield fake_runner_server
    fake_runner_server.reset()


@pytest.fixture(scope="session")
def fake_receiver_server():
    from .receiver import FakeReceiver

    server = FakeReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def fake_receiver(fake_receiver_server, settings):
    """A webhook receiver that verifies signatures itself; set ``.secret`` to the endpoint's.

    It listens on 127.0.0.1: webhooks reach loopback only with the allowance on,
    turned on here explicitly (and passed to worker subprocesses).
    """
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    fake_receiver_server.reset()
    return fake_receiver_server
