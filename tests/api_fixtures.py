"""Shared fixtures and helpers for the tests/test_api_*.py files.

Import with ``from tests.api_fixtures import *`` (tests/conftest.py is the lead's).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time

import pytest

from calls import webhooks
from organizations.models import ApiKey
from tests import factories

__all__ = [
    "api_key",
    "other_api_key",
    "dialin_org",
    "inbound",
    "auth",
    "post_json",
    "signed_headers",
    "new_secret",
    "is_postgres",
    "requires_postgres",
]


def new_secret() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def is_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


requires_postgres = pytest.mark.skipif(
    not is_postgres(), reason="concurrency against a live server needs PostgreSQL (set DATABASE_URL)"
)


@pytest.fixture
def api_key(org):
    _key, raw = ApiKey.generate(org, name="EHR A")
    return raw


@pytest.fixture
def other_api_key(other_org):
    _key, raw = ApiKey.generate(other_org, name="EHR B")
    return raw


@pytest.fixture
def dialin_org(db):
    return factories.make_org("sunrise", name="Sunrise Clinic", dialin_webhook_secret=new_secret())


@pytest.fixture
def inbound(dialin_org):
    return factories.make_workflow(dialin_org, slug="inbound", direction="dial_in", name="Front desk")


def auth(raw_key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}


def post_json(client, url, body, key=None, method="post", **headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    if key is not None:
        headers.update(auth(key))
    return getattr(client, method)(url, data=data, content_type="application/json", **headers)


def signed_headers(secret: str, raw: bytes, *, timestamp: str | None = None) -> dict:
    """The headers Daily sends (as Django test-client META keys)."""
    ts = timestamp if timestamp is not None else str(int(time.time()))
    return {
        "HTTP_X_PINLESS_TIMESTAMP": ts,
        "HTTP_X_PINLESS_SIGNATURE": webhooks.sign(secret, ts, raw),
    }
