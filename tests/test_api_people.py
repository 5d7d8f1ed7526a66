"""The people API works as written, answers match the OpenAPI document, and bad input never gives a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent_registry.audit import AuditEvent
from consent_registry.db import db
from consent_registry.people.models import Guardian, Person

from api_helpers import api_caller, conforms
from conftest import bearer


def pupil(**changes: Any) -> dict[str, Any]:
    """A valid new pupil with one guardian."""
    body = {
        "external_id": "100234", "given_name": "Daan", "family_name": "de Vries",
        "birth_date": "2012-05-17", "role": "pupil", "group": "2B",
        "guardians": [{"name": "Sanne de Vries", "email": "Sanne@Example.nl", "relation": "moeder"}],
    }
    body.update(changes)
    return body


@pytest.fixture
def api(app: Flask, tokens: dict[str, str]):
    """A function that calls the API as a role."""
    return api_caller(app, tokens, "admin")


def test_create_get_list_and_patch(api) -> None:
    """The happy path of every route, each answer checked against the document."""
    created = conforms(api("POST", "/people", json=pupil()))
    assert created.status_code == 201
    person = created.get_json()
    assert person["id"] > 0 and person["guardians"][0]["email"] == "sanne@example.nl"
    assert created.headers["Location"].endswith(f"/api/v1/people/{person['id']}")

    fetched = conforms(api("GET", f"/people/{person['id']}", role="dpo"))
    assert fetched.get_json() == person

    listed = conforms(api("GET", "/people?q=vries&page=1&per_page=10", role="communications"))
    assert listed.get_json()["total"] == 1 and listed.get_json()["items"][0]["id"] == person["id"]

    patched = conforms(api("PATCH", f"/people/{person['id']}", role="staff",
                           json={"group": "3B", "email": "daan@school.nl"}))
    assert patched.status_code == 200
    assert patched.get_json()["group"] == "3B" and patched.get_json()["email"] == "daan@school.nl"
    assert patched.get_json()["guardians"] == person["guardians"]


def test_changes_are_audited_with_field_names_not_values(api) -> None:
    """Create and update write audit events in the same transaction, without personal values."""
    person = api("POST", "/people", json=pupil()).get_json()
    api("PATCH", f"/people/{person['id']}", json={"family_name": "Bakker"})
    actions = [e.action for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]
    assert actions[-1] == "person:update" and "person:create" in actions
    assert "guardian:link" in actions
    update = db.session.query(AuditEvent).order_by(AuditEvent.id.desc()).first()
    assert update.details == {"fields": ["family_name"]}
    assert "Bakker" not in json.dumps(update.details)


def test_patch_replaces_guardians_and_keeps_shared_ones(api) -> None:
    """Guardians are one row per e-mail address, shared between siblings."""
    first = api("POST", "/people", json=pupil()).get_json()
    second = api("POST", "/people", json=pupil(external_id="100235", given_name="Fleur")).get_json()
    assert first["guardians"][0]["id"] == second["guardians"][0]["id"]
    new = [{"name": "Joost de Vries", "email": "joost@example.nl", "relation": "vader"}]
    changed = conforms(api("PATCH", f"/people/{first['id']}", json={"guardians": new})).get_json()
    assert [g["email"] for g in changed["guardians"]] == ["joost@example.nl"]
    assert db.session.query(Guardian).count() == 2  # Sanne stays: she is Fleur's guardian too


def test_leaving_and_returning(api) -> None:
    """Marking someone as left records the date; returning clears it."""
    person = api("POST", "/people", json=pupil()).get_json()
    left = conforms(api("PATCH", f"/people/{person['id']}",
                        json={"status": "left", "left_on": "2026-07-31"})).get_json()
    assert left["status"] == "left" and left["left_on"] == "2026-07-31"
    back = conforms(api("PATCH", f"/people/{person['id']}", json={"status": "active"})).get_json()
    assert back["status"] == "active" and back["left_on"] is None
    assert conforms(api("GET", "/people?status=left")).get_json()["total"] == 0


def test_duplicate_external_id_is_a_conflict(api) -> None:
    """409 on create and on patch, with nothing written."""
    api("POST", "/people", json=pupil())
    other = api("POST", "/people", json=pupil(external_id="999")).get_json()
    before = db.session.query(AuditEvent).count()
    again = conforms(api("POST", "/people", json=pupil()), check_request=True)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "duplicate"
    clash = conforms(api("PATCH", f"/people/{other['id']}", json={"external_id": "100234"}))
    assert clash.status_code == 409
    assert db.session.query(Person).count() == 2
    assert db.session.query(AuditEvent).count() == before


def test_paging(api) -> None:
    """Pages hold per_page items and say the total."""
    for n in range(7):
        api("POST", "/people", json=pupil(external_id=f"P{n}", guardians=[]))
    body = conforms(api("GET", "/people?page=2&per_page=3")).get_json()
    assert (body["page"], body["per_page"], body["total"], len(body["items"])) == (2, 3, 7, 3)
    assert conforms(api("GET", "/people?page=9&per_page=3")).get_json()["items"] == []


def test_search_treats_wildcards_literally(api) -> None:
    """A % or _ in the query matches only itself."""
    api("POST", "/people", json=pupil(guardians=[]))
    assert api("GET", "/people?q=%25").get_json()["total"] == 0
    assert api("GET", "/people?q=_").get_json()["total"] == 0


# Bad input: every route, every kind of mistake. (status, error code, field named or None)
BAD_BODIES = [
    ("not json at all", "application/json", 400, "malformed_json", None),
    ('{"external_id": ', "application/json", 400, "malformed_json", None),
    ("[1, 2]", "application/json", 400, "not_an_object", None),
    ('{"a": NaN}', "application/json", 400, "malformed_json", None),
    ("[" * 5000 + "]" * 5000, "application/json", 400, None, None),
    ("external_id=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type", None),
    ("\xff\xfe", "application/json", 400, "malformed_json", None),
]
BAD_FIELDS = [
    ({"surprise": 1}, "surprise"),
    ({"given_name": 5}, "given_name"),
    ({"given_name": ""}, "given_name"),
    ({"given_name": "x" * 101}, "given_name"),
    ({"given_name": "Ada\x00"}, "given_name"),
    ({"birth_date": "17-05-2012"}, "birth_date"),
    ({"birth_date": "2012-02-30"}, "birth_date"),
    ({"birth_date": 1337000000}, "birth_date"),
    ({"birth_date": "2999-01-01"}, "birth_date"),
    ({"role": "teacher"}, "role"),
    ({"email": "not-an-address"}, "email"),
    ({"guardians": "Sanne"}, "guardians"),
    ({"guardians": [{"name": "Sanne"}]}, "guardians.0.email"),
    ({"guardians": [{"name": "Sanne", "email": "s@x.nl", "age": 40}]}, "guardians.0.age"),
    ({"role": "staff"}, "guardians"),
    ({"guardians": [{"name": "A", "email": "s@x.nl"}, {"name": "B", "email": "S@x.nl"}]}, "guardians"),
]


@pytest.mark.parametrize(("raw", "content_type", "status", "code", "field"), BAD_BODIES)
def test_bad_bodies_on_every_write_route(api, raw: str, content_type: str, status: int,
                                         code: str | None, field: str | None) -> None:
    """Unreadable bodies get 400 or 415 on POST and PATCH, and nothing is written."""
    person = api("POST", "/people", json=pupil()).get_json()
    for method, path in (("POST", "/people"), ("PATCH", f"/people/{person['id']}")):
        response = conforms(api(method, path, data=raw.encode("latin-1"),
                                content_type=content_type), check_request=False)
        assert response.status_code == status, (method, raw[:20], response.get_json())
        if code:
            assert response.get_json()["error"]["code"] == code
    assert db.session.query(Person).count() == 1


@pytest.mark.parametrize(("changes", "field"), BAD_FIELDS)
def test_invalid_fields_are_named(api, changes: dict[str, Any], field: str) -> None:
    """Wrong types, unknown fields and impossible values give 422 naming the field."""
    response = conforms(api("POST", "/people", json=pupil(**changes)), check_request=False)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid" and field in error["fields"], error
    assert db.session.query(Person).count() == 0


@pytest.mark.parametrize("changes", [
    {"given_name": None}, {"birth_date": None}, {"role": None}, {"status": "gone"},
    {"status": "active", "left_on": "2026-01-01"}, {"left_on": "yesterday"}, {"id": 5},
    {"role": "staff"},
])
def test_invalid_patches_change_nothing(api, changes: dict[str, Any]) -> None:
    """A refused PATCH leaves the person exactly as they were."""
    person = api("POST", "/people", json=pupil()).get_json()
    response = conforms(api("PATCH", f"/people/{person['id']}", json=changes), check_request=False)
    assert response.status_code == 422, response.get_json()
    assert api("GET", f"/people/{person['id']}").get_json() == person


@pytest.mark.parametrize("query", [
    "page=0", "page=-1", "page=abc", "per_page=0", "per_page=100000", "status=gone", "page=1e3",
])
def test_bad_query_parameters_name_the_parameter(api, query: str) -> None:
    """Paging and filters outside their range get 400 naming the parameter."""
    response = conforms(api("GET", f"/people?{query}"), check_request=False)
    assert response.status_code == 400
    assert query.split("=")[0] in response.get_json()["error"]["fields"]


@pytest.mark.parametrize("path", ["/people/424242", "/people/99999999999999999999", "/people/0",
                                  "/people/abc", "/nowhere"])
def test_unknown_people_and_paths_are_404(api, path: str) -> None:
    """Missing ids, ids too large for the database and unknown paths are 404 in the error shape."""
    for method in ("GET", "PATCH"):
        response = api(method, path, json={"group": "1A"})
        assert response.status_code in (404, 405), (method, path)
        assert response.get_json()["error"]["code"] in ("not_found", "method_not_allowed")


def test_wrong_method_is_405_in_the_error_shape(api) -> None:
    """DELETE is not offered."""
    response = api("DELETE", "/people")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_too_large_body_is_413(app: Flask, api) -> None:
    """Bodies over the configured limit are refused before they are read."""
    app.config["MAX_CONTENT_LENGTH"] = 10_000
    response = api("POST", "/people", data=b'{"x": "' + b"a" * 20_000 + b'"}',
                   content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"


def test_roles_that_may_not_write_get_403(api) -> None:
    """Communications and the DPO read the register but do not change it."""
    for role in ("communications", "dpo"):
        response = conforms(api("POST", "/people", role=role, json=pupil()), check_request=False)
        assert response.status_code == 403
    assert db.session.query(Person).count() == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
near_valid = st.builds(
    lambda base, key, value: {**base, key: value},
    st.just(pupil()),
    st.sampled_from(["external_id", "given_name", "family_name", "birth_date", "role", "email",
                     "group", "guardians", "status"]),
    json_values,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, near_valid))
def test_no_json_body_ever_gives_a_500(client: FlaskClient, tokens: dict[str, str], body: Any) -> None:
    """Whatever JSON arrives, the answer is documented and never a server error."""
    response = client.post("/api/v1/people", data=json.dumps(body), content_type="application/json",
                           headers=bearer(tokens["admin"]))
    assert response.status_code in (201, 400, 409, 422), response.get_json()
    conforms(response, check_request=False)


def test_language_of_mails_is_kept_per_person_and_guardian(api) -> None:
    """Dutch unless given; a guardian's language is kept when later rows leave it out."""
    body = pupil(language="en", guardians=[{"name": "Sam Lee", "email": "sam@example.org",
                                            "language": "en"}])
    person = conforms(api("POST", "/people", json=body)).get_json()
    assert person["language"] == "en" and person["guardians"][0]["language"] == "en"
    sibling = conforms(api("POST", "/people", json=pupil(
        external_id="S2", guardians=[{"name": "Sam Lee", "email": "sam@example.org"}]))).get_json()
    assert sibling["language"] == "nl" and sibling["guardians"][0]["language"] == "en"
    cleared = conforms(api("PATCH", f"/people/{person['id']}", json={"language": None}),
                       check_request=False)
    assert cleared.status_code == 422 and "language" in cleared.get_json()["error"]["fields"]
    wrong = conforms(api("PATCH", f"/people/{person['id']}", json={"language": "de"}),
                     check_request=False)
    assert wrong.status_code == 422
