"""Sessions and tokens end when they should: logout, an admin's reset, deactivation."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from consent_registry.audit import AuditEvent
from consent_registry.auth.models import ApiToken, UserSession
from consent_registry.db import db

from conftest import StaffUser, bearer, csrf_token, log_in

COOKIE = "consent_registry_session"


def _saved_cookie(client: FlaskClient) -> str:
    """The value of the client's session cookie, as someone copying it would keep it."""
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value


def _replayed(app: Flask, value: str) -> FlaskClient:
    """A fresh browser holding a copied session cookie."""
    client = app.test_client()
    client.set_cookie(COOKIE, value)
    return client


def _revocations(user_id: int) -> list[dict]:
    """The details of the token revocations audited for a user."""
    return [e.details for e in db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.action == "token:revoke",
                                    AuditEvent.subject_id == str(user_id))
        .order_by(AuditEvent.id)).scalars()]


def test_a_cookie_saved_before_logout_is_refused_after_it(app: Flask,
                                                          users: dict[str, StaffUser]) -> None:
    """The copy works while the session lives; after logout it leads to the login page."""
    browser = app.test_client()
    log_in(browser, users["staff"].email)
    saved = _saved_cookie(browser)
    assert _replayed(app, saved).get("/people/").status_code == 200
    response = browser.post("/logout", data={"csrf_token": csrf_token(browser, "/people/")})
    assert response.status_code == 302
    replay = _replayed(app, saved).get("/people/")
    assert replay.status_code == 302 and replay.headers["Location"].startswith("/login")
    assert db.session.execute(sa.select(sa.func.count()).select_from(UserSession)).scalar_one() == 0


def test_logging_out_ends_only_that_session(app: Flask, users: dict[str, StaffUser]) -> None:
    """The same user on a second device stays logged in."""
    phone, desktop = app.test_client(), app.test_client()
    log_in(phone, users["staff"].email)
    log_in(desktop, users["staff"].email)
    phone.post("/logout", data={"csrf_token": csrf_token(phone, "/people/")})
    assert phone.get("/people/").status_code == 302
    assert desktop.get("/people/").status_code == 200


def test_an_admins_password_reset_revokes_the_users_tokens(
        app: Flask, users: dict[str, StaffUser], tokens: dict[str, str], logged_in) -> None:
    """The reset ends the tokens with the sessions; each revocation audited with the reason."""
    api = app.test_client()
    assert api.get("/api/v1/people", headers=bearer(tokens["staff"])).status_code == 200
    admin = logged_in("admin")
    response = admin.post(f"/users/{users['staff'].id}/reset-password",
                          data={"csrf_token": csrf_token(admin, "/users/")})
    assert response.status_code == 200
    assert api.get("/api/v1/people", headers=bearer(tokens["staff"])).status_code == 401
    assert [d["reason"] for d in _revocations(users["staff"].id)] == ["password_reset"]
    assert api.get("/api/v1/people", headers=bearer(tokens["dpo"])).status_code == 200


def test_reactivating_a_user_brings_no_old_token_back(
        app: Flask, users: dict[str, StaffUser], tokens: dict[str, str], logged_in) -> None:
    """Deactivation revokes the tokens (audited); after reactivation they still answer 401."""
    admin = logged_in("admin")
    token = csrf_token(admin, "/users/")
    staff_id = users["staff"].id
    assert admin.post(f"/users/{staff_id}/active",
                      data={"active": "0", "csrf_token": token}).status_code == 302
    assert admin.post(f"/users/{staff_id}/active",
                      data={"active": "1", "csrf_token": token}).status_code == 302
    api = app.test_client()
    assert api.get("/api/v1/people", headers=bearer(tokens["staff"])).status_code == 401
    assert [d["reason"] for d in _revocations(staff_id)] == ["deactivated"]
    live = db.session.execute(sa.select(sa.func.count()).select_from(ApiToken).where(
        ApiToken.user_id == staff_id, ApiToken.revoked_at.is_(None))).scalar_one()
    assert live == 0
