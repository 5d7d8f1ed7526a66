"""The OpenAPI document is valid and describes exactly the API's routes."""

from __future__ import annotations

import re

from flask import Flask
from openapi_spec_validator import validate

from consent_registry.api.openapi import openapi_document


def test_document_is_valid_openapi_3_1(client) -> None:
    """The served document passes the OpenAPI validator."""
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.is_json
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def _route_operations(app: Flask) -> set[tuple[str, str]]:
    """(path in OpenAPI form, method) for every API route."""
    operations = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        operations |= {(path, m.lower()) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    return operations


def test_every_route_is_documented_and_nothing_else(app: Flask) -> None:
    """Routes and documented operations are the same set."""
    documented = {
        (path, method)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert documented == _route_operations(app)


def test_every_operation_documents_its_errors_in_the_error_shape() -> None:
    """Authenticated operations list 401 and 403, and every error response is ErrorBody."""
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            if operation.get("security") != []:
                assert {"401", "403"} <= set(responses), (path, method)
            for status, response in responses.items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, method, status)
