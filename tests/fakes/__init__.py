"""Fakes of the external HTTP APIs, served for real on 127.0.0.1.

``FakeDaily`` (Daily REST), ``FakePipecatCloud`` (Pipecat Cloud's start
endpoint) and ``FakeRunner`` (Pipecat's dev runner). Pytest fixtures that
start them and point the settings at them live in ``tests.fakes.fixtures``.
"""

from .base import Canned, FakeServer
from .daily import FakeDaily
from .pipecat import FakePipecatCloud, FakeRunner

__all__ = ["Canned", "FakeServer", "FakeDaily", "FakePipecatCloud", "FakeRunner"]
