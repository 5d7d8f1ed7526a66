"""Log in, log out, change your password, and manage your own API tokens."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from ..audit import Actor, record
from ..confirm import confirmation_page, confirmed
from ..db import db
from ..i18n import safe_next
from ..school import school_names
from .access import ANY_ROLE, allow, allow_public
from .models import ApiToken
from .service import AccountError, attempt_login, set_new_password
from .sessions import end_session, start_session
from .tokens import issue_token, revoke_token

bp = Blueprint("auth", __name__)

PASSWORD_PROBLEMS = {
    "too_short": lambda: _("Use at least 12 characters."),
    "like_email": lambda: _("Do not use your e-mail address as password."),
    "too_simple": lambda: _("Use a greater variety of characters."),
    "wrong_password": lambda: _("Your current password is not correct."),
    "same_password": lambda: _("Choose a password different from the current one."),
}


def _client_address() -> str:
    """The client's address as the WSGI server saw it (behind a proxy, configure ProxyFix)."""
    return request.remote_addr or "unknown"


@bp.get("/login")
@allow_public
def login() -> str | Response:
    """The login form."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    return render_template("auth/login.html", next=request.args.get("next", ""))


@bp.post("/login")
@allow_public
def login_submit() -> tuple[str, int] | Response:
    """Check the credentials; failed attempts are throttled per account and per address."""
    email = request.form.get("email", "")[:254]
    password = request.form.get("password", "")[:1024]
    result = attempt_login(email, password, address=_client_address())
    if result.user is None:
        if result.locked_until is not None:
            message = _("Too many failed attempts. Try again in a few minutes.")
            status = 429
        else:
            message = _("E-mail address or password is not correct.")
            status = 401
        return render_template("auth/login.html", error=message, email=email,
                               next=request.form.get("next", "")), status
    login_user(result.user)
    start_session(result.user)
    db.session.commit()
    if result.user.must_change_password:
        return redirect(url_for("auth.change_password"))
    return redirect(safe_next(request.form.get("next"), url_for("main.index")))


@bp.post("/logout")
@allow(*ANY_ROLE)
def logout() -> Response:
    """End the session."""
    record("auth:logout", actor=Actor("user", current_user.id), subject_type="user",
           subject_id=current_user.id)
    end_session()
    db.session.commit()
    logout_user()
    flash(_("You are logged out."), "info")
    return redirect(url_for("auth.login"))


@bp.get("/account/password")
@allow(*ANY_ROLE)
def change_password() -> str:
    """The form to choose a new password."""
    return render_template("auth/change_password.html")


@bp.post("/account/password")
@allow(*ANY_ROLE)
def change_password_submit() -> tuple[str, int] | Response:
    """Set a new password; every other session of this account ends."""
    new = request.form.get("new_password", "")[:1024]
    if new != request.form.get("confirm_password", ""):
        return render_template("auth/change_password.html",
                               errors=[_("The two new passwords do not match.")]), 422
    try:
        set_new_password(current_user, current=request.form.get("current_password", "")[:1024],
                        new=new)
    except AccountError as exc:
        db.session.rollback()
        codes = str(exc).split(", ") if exc.code == "weak_password" else [exc.code]
        errors = [PASSWORD_PROBLEMS[c]() for c in codes if c in PASSWORD_PROBLEMS]
        return render_template("auth/change_password.html", errors=errors), 422
    db.session.commit()
    # Read before login_user(current_user), after which the proxy would point at itself.
    first_run = current_user.role == "admin" and not school_names().set_up
    login_user(current_user)  # the session id includes the auth version, which just changed
    flash(_("Your password has been changed."), "success")
    if first_run:
        return redirect(url_for("school.page"))  # the first run: name the school next
    return redirect(url_for("main.index"))


def _own_tokens() -> list[ApiToken]:
    """The current user's tokens, newest first."""
    return list(db.session.execute(
        sa.select(ApiToken).where(ApiToken.user_id == current_user.id)
        .order_by(ApiToken.created_at.desc())
    ).scalars())


@bp.get("/account")
@allow(*ANY_ROLE)
def account() -> str:
    """Your account: password and API tokens."""
    return render_template("auth/account.html", tokens=_own_tokens())


@bp.post("/account/tokens")
@allow(*ANY_ROLE)
def create_token() -> str:
    """Create an API token and show it once."""
    label = request.form.get("label", "").strip()[:100] or _("API token")
    token = issue_token(current_user, label=label, actor=Actor("user", current_user.id))
    db.session.commit()
    return render_template("auth/account.html", tokens=_own_tokens(), new_token=token)


def _own_token(token_id: int) -> ApiToken | None:
    """One of your own tokens by id, or None."""
    api_token = db.session.get(ApiToken, token_id) if token_id < 2**31 else None
    return api_token if api_token is not None and api_token.user_id == current_user.id else None


@bp.get("/account/tokens/<int:token_id>/revoke")
@allow(*ANY_ROLE)
def revoke_token_page(token_id: int) -> tuple[str, int] | Response:
    """Ask before revoking one of your own tokens."""
    api_token = _own_token(token_id)
    if api_token is None or api_token.revoked_at is not None:
        flash(_("No such token."), "error")
        return redirect(url_for("auth.account"))
    return confirmation_page(
        title=_("Revoke the token %(label)s?", label=api_token.label),
        explanation=[_("Every program using this token stops working at once. This cannot be "
                       "undone; a new token can be made.")],
        action=url_for("auth.revoke_own_token", token_id=api_token.id),
        button=_("Yes, revoke it"), cancel=url_for("auth.account"))


@bp.post("/account/tokens/<int:token_id>/revoke")
@allow(*ANY_ROLE)
def revoke_own_token(token_id: int) -> Response:
    """Revoke one of your own tokens, once confirmed."""
    api_token = _own_token(token_id)
    if api_token is None:
        flash(_("No such token."), "error")
    elif not confirmed():
        return redirect(url_for("auth.revoke_token_page", token_id=token_id), 303)
    else:
        revoke_token(api_token, actor=Actor("user", current_user.id))
        db.session.commit()
        flash(_("The token has been revoked."), "success")
    return redirect(url_for("auth.account"))
