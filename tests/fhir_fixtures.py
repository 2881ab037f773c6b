"""Fixtures for the FHIR app: the fake EHR (one per session, reset per test), key
pairs, and a connection of an organisation pointed at the fake."""

from __future__ import annotations

import pytest

from tests import factories
from tests.fakes.fhir import FakeFhir, new_key_pair

CLIENT_ID = "myrobot-backend"


@pytest.fixture(scope="session")
def fhir_keys():
    """{"RS384": (private, public), "ES384": (private, public)}."""
    return {alg: new_key_pair(alg) for alg in ("RS384", "ES384")}


@pytest.fixture(scope="session")
def fake_fhir_server():
    server = FakeFhir().start()
    yield server
    server.stop()


@pytest.fixture
def fake_fhir(fake_fhir_server, fhir_keys):
    from fhir import client

    fake_fhir_server.reset()
    client.forget_tokens()
    fake_fhir_server.register_client(CLIENT_ID, fhir_keys["RS384"][1], "RS384")
    yield fake_fhir_server
    fake_fhir_server.reset()
    client.forget_tokens()


def make_connection(org, fake, keys, *, algorithm="RS384", workflow=None, **kwargs):
    from fhir.models import FhirConnection

    kwargs.setdefault("key_id", f"key-{algorithm.lower()}")
    return FhirConnection.objects.create(
        organization=org, base_url=fake.api_url, client_id=CLIENT_ID, algorithm=algorithm,
        private_key=keys[algorithm][0], workflow=workflow or factories.make_workflow(org, slug="fhir-reminder"),
        **kwargs,
    )
