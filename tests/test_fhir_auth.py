"""SMART Backend Services against the fake EHR: discovery, a signed client
assertion (RS384 and ES384), a token kept until it expires, renewed on a 401."""

from __future__ import annotations

import pytest

from fhir.client import FhirClient, FhirError
from tests.fhir_fixtures import CLIENT_ID, make_connection


def _search(connection):
    return list(FhirClient(connection).search("Appointment", {"status": "booked"}))


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
def test_a_signed_assertion_gets_a_token_and_the_search_answers(org, fake_fhir, fhir_keys, algorithm):
    fake_fhir.register_client(CLIENT_ID, fhir_keys[algorithm][1], algorithm)
    connection = make_connection(org, fake_fhir, fhir_keys, algorithm=algorithm)

    [bundle] = _search(connection)

    assert bundle["resourceType"] == "Bundle"
    assert fake_fhir.issued == [{"client_id": CLIENT_ID, "scope": connection.scopes, "kid": f"key-{algorithm.lower()}"}]
    assert fake_fhir.refused_assertions == []
    [discovery] = fake_fhir.requests_to("GET /.well-known/smart-configuration")
    assert discovery["headers"].get("Authorization") is None


def test_the_token_is_kept_until_it_expires_then_a_401_renews_it(org, fake_fhir, fhir_keys):
    connection = make_connection(org, fake_fhir, fhir_keys)
    _search(connection)
    _search(connection)
    assert len(fake_fhir.requests_to("POST /auth/token")) == 1  # kept

    fake_fhir.expire_tokens()
    [bundle] = _search(connection)

    assert bundle["resourceType"] == "Bundle"
    assert len(fake_fhir.requests_to("POST /auth/token")) == 2
    searches = fake_fhir.requests_to("GET /Appointment")
    assert len(searches) == 4  # the third was answered 401, then sent again with the new token
    assert searches[2]["headers"]["Authorization"] != searches[3]["headers"]["Authorization"]


def test_a_key_the_ehr_does_not_know_is_refused_with_a_reason(org, fake_fhir, fhir_keys):
    fake_fhir.register_client(CLIENT_ID, fhir_keys["ES384"][1], "ES384")  # the EHR holds another key
    connection = make_connection(org, fake_fhir, fhir_keys, algorithm="RS384")

    with pytest.raises(FhirError) as refused:
        _search(connection)

    assert refused.value.status == 401
    assert "refused our token request" in str(refused.value) and "key registered" in str(refused.value)
    assert fake_fhir.refused_assertions and fake_fhir.requests_to("GET /Appointment") == []


def test_a_wrong_base_url_names_the_discovery_document(org, fake_fhir, fhir_keys):
    connection = make_connection(org, fake_fhir, fhir_keys)
    connection.base_url = fake_fhir.url + "/not-fhir"

    with pytest.raises(FhirError) as refused:
        _search(connection)

    assert "/.well-known/smart-configuration answered 404" in str(refused.value)


def test_a_next_link_to_another_host_is_not_followed_with_our_token(org, fake_fhir, fhir_keys):
    connection = make_connection(org, fake_fhir, fhir_keys)
    fake_fhir.respond_next("GET /Appointment", 200, json={
        "resourceType": "Bundle", "type": "searchset",
        "link": [{"relation": "next", "url": "http://127.0.0.1:9/steal?page=2"}], "entry": [],
    })

    with pytest.raises(FhirError) as refused:
        _search(connection)

    assert "outside its base URL" in str(refused.value)


def test_the_private_key_is_encrypted_at_rest(org, fake_fhir, fhir_keys):
    from django.db import connection as db

    connection = make_connection(org, fake_fhir, fhir_keys)
    with db.cursor() as cursor:
        cursor.execute("SELECT private_key FROM fhir_fhirconnection WHERE id = %s", [connection.pk])
        [stored] = cursor.fetchone()

    assert "PRIVATE KEY" not in stored and fhir_keys["RS384"][0] not in stored
    assert type(connection).objects.get(pk=connection.pk).private_key == fhir_keys["RS384"][0]


def test_the_ehr_can_fetch_our_public_key_from_the_jwks_url(org, fake_fhir, fhir_keys, live_server):
    connection = make_connection(org, fake_fhir, fhir_keys, algorithm="ES384", key_id="")
    fake_fhir.register_client(CLIENT_ID, jwks_url=f"{live_server.url}/fhir/{org.slug}/jwks.json", algorithm="ES384")

    [bundle] = _search(connection)

    assert bundle["resourceType"] == "Bundle" and fake_fhir.refused_assertions == []
    import json
    import urllib.request

    with urllib.request.urlopen(f"{live_server.url}/fhir/{org.slug}/jwks.json") as response:
        [key] = json.load(response)["keys"]
    assert (key["kty"], key["crv"], key["alg"]) == ("EC", "P-384", "ES384") and "d" not in key  # public only
