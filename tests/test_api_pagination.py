"""The API's lists: django-ninja's pagination with the bounds and errors the API documents (myrobot/pagination.py)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests import factories
from tests.api_fixtures import api_key, auth  # noqa: F401

LISTS = ["/api/patients", "/api/calls", "/api/workflows", "/api/webhooks/deliveries", "/api/campaigns"]
INT64_MAX = 2**63 - 1


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("params,field", [
    ({"limit": 0}, "limit"), ({"limit": 201}, "limit"), ({"limit": "x"}, "limit"),
    ({"offset": -1}, "offset"), ({"offset": INT64_MAX + 1}, "offset"),
])
def test_bad_limit_or_offset_is_the_422_envelope_naming_it(client, api_key, url, params, field):
    response = client.get(url, params, **auth(api_key))
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"detail", "errors"} and field in body["detail"]
    assert [e["field"] for e in body["errors"]] == [field]


@pytest.mark.parametrize("url", LISTS)
def test_the_largest_offset_is_an_empty_page(client, api_key, url):
    response = client.get(url, {"limit": 200, "offset": INT64_MAX}, **auth(api_key))
    assert response.status_code == 200
    assert response.json() == {"items": [], "count": 0}


def test_lists_document_their_page_and_their_errors(client):
    doc = client.get("/api/openapi.json").json()
    for url in LISTS:
        op = doc["paths"][url]["get"]
        assert set(op["responses"]) == {"200", "401", "422"}, url
        page = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert set(doc["components"]["schemas"][page]["properties"]) == {"items", "count"}, url
        assert op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut"), url
        params = {p["name"]: p["schema"] for p in op["parameters"]}
        assert (params["limit"]["minimum"], params["limit"]["maximum"], params["limit"]["default"]) == (1, 200, 50)
        assert (params["offset"]["minimum"], params["offset"]["maximum"]) == (0, INT64_MAX)


def _list_queries(client, key, url, table):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, **auth(key))
    assert response.status_code == 200, response.json()
    sql = [q["sql"] for q in ctx.captured_queries if f'FROM "{table}"' in q["sql"]]
    return response.json(), sql


@pytest.mark.parametrize("rows", [2, 6])
def test_a_page_is_one_count_and_one_page_query(client, org, api_key, rows):
    wf = factories.make_workflow(org, slug="remind")
    for i in range(rows):
        factories.make_call(org, wf, factories.make_patient(org, external_id=f"E{i}"))
    client.get("/api/workflows", **auth(api_key))  # the key's first use writes last_used_at

    for url, table in [("/api/calls?limit=4&offset=1", "calls_callsession"),
                       ("/api/patients?limit=4&offset=1", "patients_patient")]:
        body, sql = _list_queries(client, api_key, url, table)
        assert body["count"] == rows and len(body["items"]) == min(4, rows - 1)
        assert len(sql) == 2, sql
        assert "COUNT(" in sql[0] and "LIMIT 4 OFFSET 1" in sql[1], sql


def test_filters_unknown_parameters_and_pages_together(client, org, api_key):
    wf = factories.make_workflow(org, slug="remind")
    for i in range(3):
        factories.make_call(org, wf, factories.make_patient(org, external_id=f"E{i}"), status="completed")
    factories.make_call(org, wf, factories.make_patient(org, external_id="E9"))
    body = client.get("/api/calls?status=completed&limit=2&offset=0", **auth(api_key)).json()
    assert body["count"] == 3 and len(body["items"]) == 2
    assert {item["status"] for item in body["items"]} == {"completed"}
    refused = client.get("/api/calls?status=completed&limit=2&page=1", **auth(api_key))
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"field": "page", "message": "Unknown query parameter."}]
