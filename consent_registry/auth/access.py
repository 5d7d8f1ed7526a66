"""Every route declares who may use it; one before-request hook enforces that, failing closed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from flask import Flask, abort, current_app, g, redirect, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFProtect

from .models import ROLES, User

F = TypeVar("F", bound=Callable[..., object])
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ANY_ROLE = frozenset(ROLES)
# Pages a user with a one-time password may still reach before choosing their own.
_ALLOWED_BEFORE_PASSWORD_CHANGE = frozenset(
    {"auth.change_password", "auth.change_password_submit", "auth.logout", "i18n.set_language"}
)

csrf = CSRFProtect()


@dataclass(frozen=True, slots=True)
class Access:
    """Who may call a view: anyone, or logged-in users with one of these roles."""

    public: bool
    roles: frozenset[str]


def allow(*roles: str) -> Callable[[F], F]:
    """Declare the roles that may call this view."""
    unknown = set(roles) - ANY_ROLE
    if unknown or not roles:
        raise ValueError(f"unknown or no roles: {sorted(unknown)}")

    def decorate(view: F) -> F:
        view.access = Access(public=False, roles=frozenset(roles))  # type: ignore[attr-defined]
        return view

    return decorate


def allow_public(view: F) -> F:
    """Declare a view that anyone may call, logged in or not."""
    view.access = Access(public=True, roles=ANY_ROLE)  # type: ignore[attr-defined]
    return view


def access_of(app: Flask, endpoint: str) -> Access | None:
    """The access a view declared, or None when it declared none."""
    view = app.view_functions.get(endpoint)
    return getattr(view, "access", None)


def undeclared_endpoints(app: Flask) -> list[str]:
    """Endpoints whose view declares no access; create_app refuses to start with any."""
    return sorted(e for e in app.view_functions if access_of(app, e) is None)


def is_api_request() -> bool:
    """Whether this request is for the JSON API (token auth, JSON errors)."""
    return request.blueprint == "api" or request.path.startswith("/api/")


def current_principal() -> User | None:
    """The user behind this request: a bearer token for the API, the session elsewhere."""
    if is_api_request():
        return g.get("api_user")
    return current_user if current_user.is_authenticated else None


def enforce_access() -> object | None:
    """Before each request: refuse what the route does not allow, then check CSRF on forms."""
    if request.endpoint is None:
        return None  # no route: the 404 handler answers
    access = access_of(current_app, request.endpoint)
    if access is None:
        abort(403)
    if not access.public:
        if is_api_request():
            from ..api.auth import authenticate_bearer

            authenticate_bearer()
        user = current_principal()
        if user is None:
            if is_api_request():
                abort(401)
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        if user.role not in access.roles:
            abort(403)
        if (
            not is_api_request()
            and user.must_change_password
            and request.endpoint not in _ALLOWED_BEFORE_PASSWORD_CHANGE
        ):
            return redirect(url_for("auth.change_password"))
    if request.method not in SAFE_METHODS and not is_api_request():
        csrf.protect()
    return None
