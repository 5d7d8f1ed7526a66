"""Every route declares its roles; walk every route with every role and anonymously."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from consent_registry.audit import SYSTEM
from consent_registry.auth.models import ApiToken, User
from consent_registry.db import db
from consent_registry.people.importing import ImportBatch
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person

from conftest import StaffUser, bearer, log_in

ALL = frozenset({"admin", "communications", "staff", "dpo"})
WRITERS = frozenset({"admin", "staff"})
ADMIN = frozenset({"admin"})
REQUESTERS = frozenset({"admin", "staff", "communications"})
UPLOADERS = frozenset({"admin", "communications"})
ORIGINAL_VIEWERS = frozenset({"admin", "communications", "dpo"})
PUBLIC = "public"

# The specification: (endpoint, method) -> who may use it. A new route must be added here.
EXPECTED: dict[tuple[str, str], frozenset[str] | str] = {
    ("static", "GET"): PUBLIC,
    ("main.healthz", "GET"): PUBLIC,
    ("main.favicon", "GET"): PUBLIC,
    ("school.page", "GET"): ADMIN,
    ("school.submit", "POST"): ADMIN,
    ("media.analysis_status", "GET"): ALL,
    ("main.index", "GET"): ALL,
    ("i18n.set_language", "POST"): PUBLIC,
    ("auth.login", "GET"): PUBLIC,
    ("auth.login_submit", "POST"): PUBLIC,
    ("auth.logout", "POST"): ALL,
    ("auth.account", "GET"): ALL,
    ("auth.change_password", "GET"): ALL,
    ("auth.change_password_submit", "POST"): ALL,
    ("auth.create_token", "POST"): ALL,
    ("auth.revoke_own_token", "POST"): ALL,
    ("auth.revoke_token_page", "GET"): ALL,
    ("users.list_users", "GET"): ADMIN,
    ("users.create", "POST"): ADMIN,
    ("users.change_role", "POST"): ADMIN,
    ("users.change_active", "POST"): ADMIN,
    ("users.reset", "POST"): ADMIN,
    ("people.list_people", "GET"): ALL,
    ("people.detail", "GET"): ALL,
    ("people.new", "GET"): WRITERS,
    ("people.create", "POST"): WRITERS,
    ("people.edit", "GET"): WRITERS,
    ("people.update", "POST"): WRITERS,
    ("people.add_guardian", "POST"): WRITERS,
    ("people.remove_guardian", "POST"): WRITERS,
    ("people_import.upload_form", "GET"): ADMIN,
    ("people_import.upload", "POST"): ADMIN,
    ("people_import.preview", "GET"): ADMIN,
    ("people_import.set_mapping", "POST"): ADMIN,
    ("people_import.apply", "POST"): ADMIN,
    ("consent.person_consents", "GET"): ALL,
    ("consent.record_paper", "POST"): WRITERS,
    ("consent.scan", "GET"): frozenset({"admin", "staff", "dpo"}),
    ("consent.print_forms", "POST"): WRITERS,
    ("consent.overview", "GET"): ALL,
    ("consent.requests_list", "GET"): ALL,
    ("consent.request_detail", "GET"): ALL,
    ("consent.new_request", "GET"): REQUESTERS,
    ("consent.request_preview_or_send", "POST"): REQUESTERS,
    ("consent_public.answer", "GET"): PUBLIC,
    ("consent_public.answer_submit", "POST"): PUBLIC,
    ("consent_public.withdraw", "GET"): PUBLIC,
    ("consent_public.withdraw_submit", "POST"): PUBLIC,
    ("consent_public.manage", "GET"): PUBLIC,
    ("consent_public.manage_submit", "POST"): PUBLIC,
    ("consent_public.ask_manage_link", "GET"): PUBLIC,
    ("consent_public.ask_manage_link_submit", "POST"): PUBLIC,
    ("consent_public.answer_preview", "GET"): PUBLIC,
    ("media.rendition", "GET"): ORIGINAL_VIEWERS,
    ("api.get_consents", "GET"): ALL,
    ("api.post_consent", "POST"): WRITERS,
    ("api.post_consent_request", "POST"): REQUESTERS,
    ("api.get_consent_request", "GET"): ALL,
    ("api.openapi_json", "GET"): PUBLIC,
    ("api.list_people", "GET"): ALL,
    ("api.get_person_route", "GET"): ALL,
    ("api.create_person_route", "POST"): WRITERS,
    ("api.patch_person_route", "PATCH"): WRITERS,
    ("media.list_media", "GET"): ALL,
    ("media.upload_page", "GET"): UPLOADERS,
    ("media.upload_form", "POST"): UPLOADERS,
    ("media.upload_file", "POST"): UPLOADERS,
    ("media.detail", "GET"): ALL,
    ("media.display", "GET"): ALL,
    ("media.original", "GET"): ORIGINAL_VIEWERS,
    ("media.delete", "POST"): UPLOADERS,
    ("media.delete_page", "GET"): UPLOADERS,
    ("api.list_media", "GET"): ALL,
    ("api.get_media_route", "GET"): ALL,
    ("api.upload_media", "POST"): UPLOADERS,
    ("api.delete_media_route", "DELETE"): UPLOADERS,
    ("settings.face_matching_page", "GET"): frozenset({"admin", "dpo"}),
    ("settings.face_matching_submit", "POST"): ADMIN,
    ("reference_photos.upload", "POST"): UPLOADERS,
    ("reference_photos.delete", "POST"): UPLOADERS,
    ("api.get_face_matching", "GET"): frozenset({"admin", "dpo"}),
    ("api.put_face_matching", "PUT"): ADMIN,
    ("api.list_reference_photos", "GET"): ORIGINAL_VIEWERS,
    ("api.add_reference_photo", "POST"): UPLOADERS,
    ("api.delete_reference_photo", "DELETE"): UPLOADERS,
    ("settings.voice_matching_page", "GET"): frozenset({"admin", "dpo"}),
    ("settings.voice_matching_submit", "POST"): ADMIN,
    ("reference_photos.upload_voice", "POST"): UPLOADERS,
    ("reference_photos.delete_voice", "POST"): UPLOADERS,
    ("api.get_voice_matching", "GET"): frozenset({"admin", "dpo"}),
    ("api.put_voice_matching", "PUT"): ADMIN,
    ("api.list_reference_voices", "GET"): ORIGINAL_VIEWERS,
    ("api.add_reference_voice", "POST"): UPLOADERS,
    ("api.delete_reference_voice", "DELETE"): UPLOADERS,
    ("media.appearance_crop", "GET"): ALL,
    ("media.tag_appearance", "POST"): UPLOADERS,
    ("media.decide_suggestion", "POST"): UPLOADERS,
    ("media.set_appearance_resolution", "POST"): UPLOADERS,
    ("media.add_appearance_form", "POST"): UPLOADERS,
    ("api.get_appearance", "GET"): ALL,
    ("api.patch_appearance", "PATCH"): UPLOADERS,
    ("api.create_appearance", "POST"): UPLOADERS,
    ("api.person_media", "GET"): ALL,
    ("api.publish_media", "POST"): UPLOADERS,
    ("api.publish_album", "POST"): UPLOADERS,
    ("api.list_publications", "GET"): ALL,
    ("api.get_publication_route", "GET"): ALL,
    ("api.delete_publication", "DELETE"): UPLOADERS,
    ("publications.list_publications", "GET"): ALL,
    ("publications.detail", "GET"): ALL,
    ("publications.publish", "POST"): UPLOADERS,
    ("publications.publish_album", "POST"): UPLOADERS,
    ("publications.take_down", "POST"): UPLOADERS,
    ("publications.take_down_page", "GET"): UPLOADERS,
    ("publications.removed_by_hand", "POST"): UPLOADERS,
    ("publications.download", "GET"): ORIGINAL_VIEWERS,
    ("api.media_gate", "GET"): ALL,
    ("media.request_missing_consent", "POST"): REQUESTERS,
    ("dpo.audit", "GET"): frozenset({"admin", "dpo"}),
    ("dpo.audit_csv", "GET"): frozenset({"admin", "dpo"}),
    ("dpo.audit_jsonl", "GET"): frozenset({"admin", "dpo"}),
    ("dpo.audit_verify", "GET"): frozenset({"admin", "dpo"}),
    ("api.list_audit_events", "GET"): frozenset({"admin", "dpo"}),
    ("dpo.erase_page", "GET"): ADMIN,
    ("dpo.erase", "POST"): ADMIN,
    ("dpo.person_file_page", "GET"): frozenset({"admin", "dpo"}),  # G2
    ("dpo.publication_proof_page", "GET"): frozenset({"admin", "dpo"}),  # G2
    ("api.get_person_file", "GET"): frozenset({"admin", "dpo"}),  # G2
    ("api.get_publication_proof", "GET"): frozenset({"admin", "dpo"}),  # G2
    ("dpo.request_person_export", "POST"): frozenset({"admin", "dpo"}),
    ("dpo.export_status", "GET"): frozenset({"admin", "dpo"}),
    ("dpo.export_download", "GET"): frozenset({"admin", "dpo"}),
    ("api.request_person_export_api", "POST"): frozenset({"admin", "dpo"}),
    ("api.get_export_route", "GET"): frozenset({"admin", "dpo"}),
    ("dpo.index", "GET"): frozenset({"admin", "dpo"}),
    ("dpo.processing", "GET"): frozenset({"admin", "dpo"}),
    ("dpo.processing_md", "GET"): frozenset({"admin", "dpo"}),
}
PRINCIPALS = ("anonymous", "admin", "communications", "staff", "dpo")


def routes(app: Flask) -> set[tuple[str, str]]:
    """Every (endpoint, method) the app serves, leaving out HEAD and OPTIONS."""
    return {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }


def test_every_route_is_in_the_specification(app: Flask) -> None:
    """No route exists without an entry here, and no entry without a route."""
    assert routes(app) == set(EXPECTED)


def test_every_view_declares_its_access(app: Flask) -> None:
    """create_app refuses undeclared views; the declared roles match the specification."""
    from consent_registry.auth.access import access_of

    for (endpoint, _method), allowed in EXPECTED.items():
        access = access_of(app, endpoint)
        assert access is not None, endpoint
        if allowed == PUBLIC:
            assert access.public, endpoint
        else:
            assert not access.public and access.roles == allowed, endpoint


def test_an_undeclared_route_stops_the_app_from_starting(app: Flask) -> None:
    """A view without @allow fails closed: the app refuses to start."""
    from consent_registry.auth.access import undeclared_endpoints

    app.add_url_rule("/forgotten", "forgotten", lambda: "open")
    assert undeclared_endpoints(app) == ["forgotten"]


@pytest.fixture
def path_values(app: Flask, users: dict[str, StaffUser]) -> dict[str, int | str]:
    """Ids of real objects, so each route reaches its access check with a valid URL."""
    person = create_person(
        PersonCreate.model_validate({
            "external_id": "A1", "given_name": "Ada", "family_name": "Jansen",
            "birth_date": "2012-03-04", "role": "pupil",
            "guardians": [{"name": "Piet Jansen", "email": "piet@example.nl"}],
        }),
        actor=SYSTEM,
    )
    batch = ImportBatch(uploaded_by=users["admin"].id, sha256="0" * 64, content=b"x", mapping={})
    db.session.add(batch)
    db.session.flush()
    token = db.session.query(ApiToken).first()
    values = {
        "person_id": person.id,
        "guardian_id": person.guardian_links[0].guardian_id,
        "user_id": users["staff"].id,
        "batch_id": batch.id,
        "token_id": token.id if token else 1,
        "filename": "style.css",
        "record_id": 1,
        "request_id": 1,
        "token": "not-a-real-token",
        "media_id": 1,
        "reference_id": 1,
        "appearance_id": 1,
        "publication_id": 1,
        "export_id": 1,
    }
    db.session.commit()
    return values


def _url(app: Flask, endpoint: str, values: dict[str, int | str]) -> str:
    """The URL of an endpoint with its arguments filled in."""
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
    with app.test_request_context():
        from flask import url_for

        return url_for(endpoint, **{arg: values[arg] for arg in rule.arguments})


def _client_for(app: Flask, principal: str, users: dict[str, StaffUser]) -> FlaskClient:
    """A client logged in as the principal (or not at all)."""
    client = app.test_client()
    if principal != "anonymous":
        log_in(client, users[principal].email)
    return client


def test_walk_every_route_with_every_role(
    app: Flask, users: dict[str, StaffUser], tokens: dict[str, str], path_values: dict
) -> None:
    """Allowed principals get past the access check; everyone else is refused the right way."""
    clients = {p: _client_for(app, p, users) for p in PRINCIPALS}
    failures = []
    for (endpoint, method), allowed in sorted(EXPECTED.items()):
        url = _url(app, endpoint, path_values)
        is_api = url.startswith("/api/")
        for principal in PRINCIPALS:
            client = app.test_client() if is_api else clients[principal]
            headers = bearer(tokens[principal]) if is_api and principal != "anonymous" else {}
            # Bodies are left out on purpose: a refused request must be refused before it is read,
            # and an allowed one must fail on the missing CSRF token or body, changing nothing.
            response = client.open(url, method=method, headers=headers)
            may = allowed == PUBLIC or principal in allowed
            status = response.status_code
            to_login = status == 302 and "/login" in response.headers.get("Location", "")
            if may:
                ok = status not in (401, 403) and not to_login
            elif principal == "anonymous":
                ok = status == 401 if is_api else to_login
            else:
                ok = status == 403
            if not ok:
                failures.append(f"{method} {url} as {principal}: {status}")
    assert not failures, "\n".join(failures)


def test_a_refused_post_changes_nothing_and_says_forbidden_not_csrf(
    app: Flask, logged_in, path_values: dict
) -> None:
    """The access check runs before CSRF and before the body is read."""
    client = logged_in("communications")
    before = db.session.query(User).count()
    response = client.post("/users/", data={"email": "new@school.test", "role": "admin"})
    assert response.status_code == 403
    assert db.session.query(User).count() == before


def test_a_wrong_or_revoked_token_is_refused(app: Flask, tokens: dict[str, str]) -> None:
    """Only a current token of an active account opens the API."""
    client = app.test_client()
    assert client.get("/api/v1/people", headers=bearer("crt_nonsense")).status_code == 401
    assert client.get("/api/v1/people", headers={"Authorization": "Basic eDp5"}).status_code == 401
    assert client.get("/api/v1/people", headers=bearer(tokens["dpo"])).status_code == 200
    for token in db.session.query(ApiToken).all():
        token.revoked_at = token.created_at
    db.session.commit()
    assert client.get("/api/v1/people", headers=bearer(tokens["dpo"])).status_code == 401


def test_api_ignores_session_cookies(logged_in) -> None:
    """A logged-in browser session does not open the API, so the API needs no CSRF protection."""
    client = logged_in("admin")
    assert client.get("/api/v1/people").status_code == 401
