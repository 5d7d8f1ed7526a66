"""The OpenAPI document is valid and describes exactly the API's routes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from pydantic import ValidationError

from consent_registry.api.appearances import AppearanceCreate
from consent_registry.api.openapi import openapi_document

from conftest import bearer, make_app


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


# --- the document and the code agree (issue 12, point 15) ---------------------------------------

def _api_get(client: FlaskClient, token: str, path: str) -> Any:
    """A GET of the API with a bearer token."""
    return client.get(path, headers=bearer(token))


@pytest.mark.parametrize(("path", "status"), [
    ("/api/v1/media?kind=", 400), ("/api/v1/media?status=", 400), ("/api/v1/media?kind=photo", 200),
    ("/api/v1/people?q=" + "x" * 201, 400), ("/api/v1/people?q=" + "x" * 200, 200),
    ("/api/v1/people?q=", 200), ("/api/v1/people?status=", 400),
    ("/api/v1/people?group=" + "g" * 41, 400), ("/api/v1/people?group=" + "g" * 40, 200),
    ("/api/v1/publications?media_id=0", 400), ("/api/v1/publications?media_id=1", 200),
    ("/api/v1/publications?media_id=2147483648", 400), ("/api/v1/publications?channel=", 400),
    ("/api/v1/publications?channel=intranet", 400), ("/api/v1/publications?channel=website", 200),
    ("/api/v1/publications?state=", 400),
    ("/api/v1/people?page=100000", 200), ("/api/v1/people?page=100001", 400),
    ("/api/v1/people?page=", 400), ("/api/v1/people?page=%C2%B2", 400),
    ("/api/v1/people?page=+7", 400), ("/api/v1/people?per_page=", 400),
    ("/api/v1/audit?until=", 400), ("/api/v1/audit?actor_id=", 400), ("/api/v1/audit?text=", 200),
])
def test_query_arguments_are_held_to_the_document(client: FlaskClient, tokens: dict[str, str],
                                                  path: str, status: int) -> None:
    """Empty enum values, texts over their maxLength, ids of 0 and pages past the maximum: 400."""
    assert _api_get(client, tokens["admin"], path).status_code == status


def test_the_documented_bounds_are_the_codes(client: FlaskClient) -> None:
    """Every page parameter says its maximum, every id its range, the search its maxLength."""
    document = client.get("/api/v1/openapi.json").get_json()
    for path, item in document["paths"].items():
        parameters = list(item.get("parameters", []))
        for operation in item.values():
            if isinstance(operation, dict):
                parameters += operation.get("parameters", [])
        for parameter in parameters:
            schema = parameter["schema"]
            if parameter["name"] == "page":
                assert (schema["minimum"], schema["maximum"]) == (1, 100_000), path
            if parameter["name"].endswith("_id"):
                assert schema["maximum"] == 2**31 - 1, (path, parameter["name"])
    people = document["paths"]["/api/v1/people"]["get"]["parameters"]
    assert {p["name"]: p["schema"].get("maxLength") for p in people}["q"] == 200


def test_the_document_names_the_schools_channels(database_url: str, tmp_path: Path) -> None:
    """Channels are enums of the configured channels (consent also biometric), in bodies and queries."""
    app = make_app(database_url, tmp_path, CHANNELS=("website", "yearbook"))
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    assert schemas["ConsentIn"]["properties"]["channel"]["enum"] == ["website", "yearbook", "biometric"]
    assert schemas["ConsentRequestIn"]["properties"]["channels"]["items"]["enum"] == [
        "website", "yearbook", "biometric"]
    assert schemas["PublishIn"]["properties"]["channel"]["enum"] == ["website", "yearbook"]
    assert schemas["AlbumPublishIn"]["properties"]["channel"]["enum"] == ["website", "yearbook"]
    for path, method in (("/api/v1/publications", "get"), ("/api/v1/media/{media_id}/gate", "get")):
        [channel] = [p for p in document["paths"][path][method]["parameters"] if p["name"] == "channel"]
        assert channel["schema"]["enum"] == ["website", "yearbook"], path
    validate(document)
    default = openapi_document()
    assert default["components"]["schemas"]["PublishIn"]["properties"]["channel"]["enum"] == [
        "facebook", "website", "newsletter", "schoolguide"]


def test_nulls_are_allowed_exactly_where_the_document_allows_them(
        client: FlaskClient, tokens: dict[str, str]) -> None:
    """PersonPatch: fields a person must have are never null in the document and refused as null;
    the e-mail address may be null (cleared) in both. Upload fields are never null (a form)."""
    schemas = openapi_document()["components"]["schemas"]
    patch = schemas["PersonPatch"]["properties"]
    for name in ("external_id", "given_name", "family_name", "birth_date", "role", "status", "language"):
        assert "anyOf" not in patch[name] and patch[name].get("type") != "null", name
    assert {"type": "null"} in patch["email"]["anyOf"]
    created = client.post("/api/v1/people", headers=bearer(tokens["admin"]), json={
        "external_id": "N1", "given_name": "Noor", "family_name": "Visser", "birth_date": "1990-01-01",
        "role": "staff", "email": "noor@school.example"})
    assert created.status_code == 201
    url = f"/api/v1/people/{created.get_json()['id']}"
    assert client.patch(url, headers=bearer(tokens["admin"]), json={"role": None}).status_code == 422
    cleared = client.patch(url, headers=bearer(tokens["admin"]), json={"email": None})
    assert cleared.status_code == 200 and cleared.get_json()["email"] is None
    upload = openapi_document()["paths"]["/api/v1/media"]["post"]["requestBody"]["content"]
    fields = upload["multipart/form-data"]["schema"]["properties"]
    assert fields["taken_on"]["type"] == "string" and "anyOf" not in fields["title"]


@pytest.mark.parametrize(("box", "accepted"), [
    ({"x": 10.0, "y": 0, "w": 30.0, "h": 30}, True), ({"x": 10, "y": 0, "w": 30, "h": 30}, True),
    ({"x": 10.5, "y": 0, "w": 30, "h": 30}, False), ({"x": "10", "y": 0, "w": 30, "h": 30}, False),
    ({"x": True, "y": 0, "w": 30, "h": 30}, False), ({"x": -1.0, "y": 0, "w": 30, "h": 30}, False),
])
def test_a_box_of_integer_valued_numbers_is_accepted(box: dict[str, Any], accepted: bool) -> None:
    """JSON Schema's integer includes 10.0: the box takes it as 10; fractions, text and booleans not."""
    try:
        made = AppearanceCreate.model_validate({"box": box})
    except ValidationError:
        assert not accepted
    else:
        assert accepted and made.box is not None and made.box.x == int(box["x"])
        assert type(made.box.x) is int


@pytest.mark.parametrize(("path", "allowed"), [
    ("/api/v1/people", {"GET", "HEAD", "OPTIONS", "POST"}),
    ("/api/v1/openapi.json", {"GET", "HEAD", "OPTIONS"}),
    ("/login", {"GET", "HEAD", "OPTIONS", "POST"}),
])
def test_a_405_names_the_allowed_methods(client: FlaskClient, path: str, allowed: set[str]) -> None:
    """RFC 9110: a 405 carries Allow, in the API's JSON and on the pages alike."""
    response = client.put(path)
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed
