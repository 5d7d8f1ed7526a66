"""Logging in and out, throttling, one-time passwords, sessions, CSRF, cookies and user admin."""

from __future__ import annotations

import re

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from consent_registry.audit import AuditEvent
from consent_registry.auth.models import LoginAttempt, User
from consent_registry.db import db

from conftest import PASSWORD, StaffUser, bearer, csrf_token, log_in


def _login(client: FlaskClient, email: str, password: str) -> int:
    """Post the login form; the status code."""
    token = csrf_token(client)
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": token}).status_code


def _actions() -> list[str]:
    """Every audit action so far, in order."""
    return list(db.session.execute(sa.select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


def test_login_page_and_successful_login(client: FlaskClient, users: dict[str, StaffUser]) -> None:
    """The login page renders; the right password logs in, is audited, and lands on the register."""
    page = client.get("/login")
    assert page.status_code == 200 and b'name="password"' in page.data
    response = client.post("/login", data={"email": "ADMIN@school.test ", "password": PASSWORD,
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/people/").status_code == 200
    assert "auth:login" in _actions()
    assert db.session.get(User, users["admin"].id).last_login_at is not None


def test_wrong_password_and_unknown_account_look_the_same(
    client: FlaskClient, users: dict[str, StaffUser]
) -> None:
    """Both answer 401 with the same message; the attempts table holds no addresses."""
    wrong = client.post("/login", data={"email": users["staff"].email, "password": "nope",
                                        "csrf_token": csrf_token(client)})
    unknown = client.post("/login", data={"email": "nobody@school.test", "password": "nope",
                                          "csrf_token": csrf_token(client)})
    assert wrong.status_code == unknown.status_code == 401
    message = re.search(rb'role="alert">([^<]+)<', wrong.data)
    assert message and message.group(1) in unknown.data
    stored = db.session.execute(sa.select(LoginAttempt.email_key, LoginAttempt.address_key)).all()
    assert stored and all("@" not in e and "127.0.0.1" not in a for e, a in stored)
    assert _actions().count("auth:login_failed") == 2


def test_login_is_throttled_per_account(app: Flask, client: FlaskClient,
                                        users: dict[str, StaffUser]) -> None:
    """After five failures even the right password is refused for a while (429)."""
    email = users["staff"].email
    for _ in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
        assert _login(client, email, "wrong password") == 401
    assert _login(client, email, PASSWORD) == 429
    assert "auth:login_throttled" in _actions()
    assert _login(client, users["dpo"].email, PASSWORD) == 302  # other accounts are not affected


def test_login_is_throttled_per_address(app: Flask, users: dict[str, StaffUser]) -> None:
    """Many failures from one address across accounts lock that address out."""
    app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"] = 4
    client = app.test_client()
    for i in range(4):
        assert _login(client, f"guess{i}@school.test", "wrong") == 401
    assert _login(client, users["admin"].email, PASSWORD) == 429
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    assert _login(elsewhere, users["admin"].email, PASSWORD) == 302


def test_missing_csrf_token_is_refused(client: FlaskClient, users: dict[str, StaffUser]) -> None:
    """A form posted without the session's CSRF token is refused and changes nothing."""
    response = client.post("/login", data={"email": users["admin"].email, "password": PASSWORD})
    assert response.status_code == 400
    assert "auth:login" not in _actions()


def test_open_redirects_are_refused(client: FlaskClient, users: dict[str, StaffUser]) -> None:
    """`next` may only point inside the site."""
    for target, expected in (("/people/?q=a", "/people/?q=a"), ("https://evil.example/", "/"),
                             ("//evil.example/", "/"), ("/\\evil.example", "/")):
        c = client.application.test_client()
        c.get("/login")
        response = c.post("/login", data={"email": users["admin"].email, "password": PASSWORD,
                                          "next": target, "csrf_token": csrf_token(c)})
        assert response.headers["Location"] == expected, target


def test_anonymous_pages_redirect_to_login_with_next(client: FlaskClient) -> None:
    """A protected page sends an anonymous visitor to the login page, remembering where to go."""
    response = client.get("/people/?q=jan")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_logout_ends_the_session(logged_in) -> None:
    """After logging out, pages need a login again."""
    client = logged_in("staff")
    assert client.post("/logout", data={"csrf_token": csrf_token(client, "/people/")}).status_code == 302
    assert client.get("/people/").status_code == 302
    assert _actions()[-1] == "auth:logout"


def test_old_login_attempts_are_removed(client: FlaskClient, users: dict[str, StaffUser]) -> None:
    """Attempts are kept only as long as throttling needs them."""
    from datetime import timedelta

    from consent_registry.db import utcnow

    db.session.add(LoginAttempt(email_key="a" * 64, address_key="b" * 64,
                                at=utcnow() - timedelta(days=2), succeeded=False))
    db.session.commit()
    _login(client, users["dpo"].email, PASSWORD)
    ages = db.session.execute(sa.select(LoginAttempt.at)).scalars().all()
    assert len(ages) == 1 and ages[0] > utcnow() - timedelta(minutes=5)


def test_one_time_password_must_be_changed_first(app: Flask) -> None:
    """An account created without a password gets a one-time one; every page asks to change it."""
    result = app.test_cli_runner().invoke(args=["users", "create", "--email", "new@school.test",
                                                "--role", "staff"])
    assert result.exit_code == 0, result.output
    one_time = re.search(r"One-time password: (\S+)", result.output).group(1)
    client = app.test_client()
    client.get("/login")
    response = client.post("/login", data={"email": "new@school.test", "password": one_time,
                                           "csrf_token": csrf_token(client)})
    assert response.headers["Location"] == "/account/password"
    assert client.get("/people/").headers["Location"] == "/account/password"
    token = csrf_token(client, "/account/password")
    weak = client.post("/account/password", data={"current_password": one_time, "new_password": "short",
                                                   "confirm_password": "short", "csrf_token": token})
    assert weak.status_code == 422
    ok = client.post("/account/password", data={
        "current_password": one_time, "new_password": "a much better passphrase",
        "confirm_password": "a much better passphrase", "csrf_token": token})
    assert ok.status_code == 302
    assert client.get("/people/").status_code == 200
    assert not db.session.execute(
        sa.select(User).where(User.email == "new@school.test")).scalar_one().must_change_password


def test_password_change_ends_other_sessions(app: Flask, users: dict[str, StaffUser]) -> None:
    """A second browser logged in as the same user is logged out when the password changes."""
    first, second = app.test_client(), app.test_client()
    log_in(first, users["staff"].email)
    log_in(second, users["staff"].email)
    response = first.post("/account/password", data={
        "current_password": PASSWORD, "new_password": "another long passphrase",
        "confirm_password": "another long passphrase", "csrf_token": csrf_token(first, "/account")})
    assert response.status_code == 302
    assert first.get("/people/").status_code == 200
    assert second.get("/people/").status_code == 302


def test_deactivated_user_loses_session_and_tokens(app: Flask, users: dict[str, StaffUser],
                                                   tokens: dict[str, str], logged_in) -> None:
    """An admin deactivates an account: its session and its API tokens stop working at once."""
    victim = app.test_client()
    log_in(victim, users["staff"].email)
    admin = logged_in("admin")
    response = admin.post(f"/users/{users['staff'].id}/active",
                          data={"active": "0", "csrf_token": csrf_token(admin, "/users/")})
    assert response.status_code == 302
    assert victim.get("/people/").status_code == 302
    assert app.test_client().get("/api/v1/people", headers=bearer(tokens["staff"])).status_code == 401
    assert _login(app.test_client(), users["staff"].email, PASSWORD) == 401
    assert "user:deactivate" in _actions()


def test_admin_creates_accounts_and_changes_roles(logged_in, users: dict[str, StaffUser]) -> None:
    """Admins create accounts (one-time password shown once) and change roles, audited."""
    admin = logged_in("admin")
    token = csrf_token(admin, "/users/")
    created = admin.post("/users/", data={"email": "Comms2@School.test", "name": "Kim",
                                          "role": "communications", "csrf_token": token})
    assert created.status_code == 201 and b"comms2@school.test" in created.data
    duplicate = admin.post("/users/", data={"email": "comms2@school.test", "role": "staff",
                                            "csrf_token": token})
    assert duplicate.status_code == 422
    bad_role = admin.post("/users/", data={"email": "x@school.test", "role": "root", "csrf_token": token})
    assert bad_role.status_code == 422
    user = db.session.execute(sa.select(User).where(User.email == "comms2@school.test")).scalar_one()
    changed = admin.post(f"/users/{user.id}/role", data={"role": "dpo", "csrf_token": token})
    assert changed.status_code == 302
    assert db.session.get(User, user.id).role == "dpo"
    assert {"user:create", "user:role_change"} <= set(_actions())
    reset = admin.post(f"/users/{user.id}/reset-password", data={"csrf_token": token})
    assert reset.status_code == 200 and db.session.get(User, user.id).must_change_password


def test_last_admin_cannot_be_demoted_or_deactivated(logged_in, users: dict[str, StaffUser]) -> None:
    """The service always keeps one active admin."""
    admin = logged_in("admin")
    token = csrf_token(admin, "/users/")
    me = users["admin"].id
    assert admin.post(f"/users/{me}/role", data={"role": "staff", "csrf_token": token}).status_code == 422
    assert admin.post(f"/users/{me}/active", data={"active": "0", "csrf_token": token}).status_code == 422
    assert db.session.get(User, me).role == "admin" and db.session.get(User, me).active


def test_own_api_tokens_are_shown_once_and_revocable(app: Flask, logged_in) -> None:
    """A user creates a token on their account page, uses it, and revokes it."""
    client = logged_in("dpo")
    page = client.post("/account/tokens", data={"label": "laptop",
                                                "csrf_token": csrf_token(client, "/account")})
    token = re.search(rb"<code class=\"token\">(crt_[^<]+)</code>", page.data).group(1).decode()
    api = app.test_client()
    assert api.get("/api/v1/people", headers=bearer(token)).status_code == 200
    assert token.encode() not in client.get("/account").data  # shown once only
    token_id = re.search(rb"/account/tokens/(\d+)/revoke", client.get("/account").data).group(1)
    asked = client.get(f"/account/tokens/{token_id.decode()}/revoke").get_data(as_text=True)
    assert 'class="danger"' in asked and "laptop" in asked
    unconfirmed = client.post(f"/account/tokens/{token_id.decode()}/revoke",
                              data={"csrf_token": csrf_token(client, "/account")})
    assert unconfirmed.status_code == 303
    assert api.get("/api/v1/people", headers=bearer(token)).status_code == 200  # not revoked yet
    client.post(f"/account/tokens/{token_id.decode()}/revoke",
                data={"csrf_token": csrf_token(client, "/account"), "confirmed": "yes"})
    assert api.get("/api/v1/people", headers=bearer(token)).status_code == 401


def test_security_headers_and_cookie_flags(client: FlaskClient, users: dict[str, StaffUser]) -> None:
    """Pages forbid framing and sniffing and load nothing from elsewhere; the session cookie is HttpOnly."""
    response = client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    client.post("/login", data={"email": users["admin"].email, "password": PASSWORD,
                                "csrf_token": csrf_token(client)})
    cookie = client.get_cookie("consent_registry_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
