"""The OpenAPI description shows real examples (not "string") for every body an integrator sends or reads."""

from __future__ import annotations

import json

from tests.api_fixtures import api_key, post_json  # noqa: F401


def _schema(doc, ref_or_schema):
    ref = ref_or_schema.get("$ref")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else ref_or_schema


def test_request_and_response_bodies_have_examples(client):
    doc = client.get("/api/openapi.json").json()
    missing = []
    for path, ops in doc["paths"].items():
        if "dialin-webhook" in path:
            continue  # Daily's body, documented by its own schema
        for method, op in ops.items():
            bodies = []
            if "requestBody" in op:
                bodies.append(("request", op["requestBody"]["content"]["application/json"]["schema"]))
            for status, response in op.get("responses", {}).items():
                content = response.get("content", {}).get("application/json")
                if status.startswith("2") and content:
                    bodies.append((status, content["schema"]))
            for where, schema in bodies:
                schema = _schema(doc, schema)
                if set(schema.get("properties", {})) >= {"items", "count"}:  # a list page: its items
                    schema = _schema(doc, schema["properties"]["items"]["items"])
                examples = schema.get("examples")
                if not examples or '"string"' in json.dumps(examples):
                    missing.append(f"{method.upper()} {path} {where}")
    assert missing == []


def test_the_patient_example_is_a_valid_body(client, org, api_key):
    doc = client.get("/api/openapi.json").json()
    [example] = doc["components"]["schemas"]["PatientIn"]["examples"]
    response = post_json(client, f"/api/patients/by-external-id/{example['external_id']}", example, api_key, method="put")
    assert response.status_code == 201, response.json()


def test_every_get_documents_the_unknown_parameter_422(client):
    doc = client.get("/api/openapi.json").json()
    gets = {path: ops["get"] for path, ops in doc["paths"].items() if "get" in ops}
    assert "/api/calls" in gets and "/api/webhooks/deliveries" in gets
    missing = [path for path, op in gets.items() if "422" not in op["responses"]]
    assert missing == []
    example = gets["/api/calls"]["responses"]["422"]["content"]["application/json"]["example"]
    assert example["errors"][0]["message"] == "Unknown query parameter."
