"""User administration for admins: create accounts, change roles, deactivate, reset passwords."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from ..audit import Actor
from ..db import db
from .access import allow
from .models import ROLES, User
from .service import AccountError, create_user, reset_password, set_active, set_role

bp = Blueprint("users", __name__, url_prefix="/users")

ACCOUNT_ERRORS = {
    "unknown_role": lambda: _("Choose one of the roles."),
    "invalid_email": lambda: _("Enter a valid e-mail address."),
    "duplicate_email": lambda: _("An account with this e-mail address already exists."),
    "last_admin": lambda: _("The last active admin cannot lose that role."),
}


def _account_message(exc: AccountError) -> str:
    """A translated message for a refused account change."""
    message = ACCOUNT_ERRORS.get(exc.code)
    return message() if message else str(exc)


def _actor() -> Actor:
    """The admin doing this."""
    return Actor("user", current_user.id)


def _user_or_404(user_id: int) -> User:
    """A user by id, or 404."""
    user = db.session.get(User, user_id) if user_id < 2**31 else None
    if user is None:
        abort(404)
    return user


def _render_list(status: int = 200, **extra: object) -> tuple[str, int]:
    """The user list with optional messages."""
    users = db.session.execute(sa.select(User).order_by(User.email)).scalars().all()
    return render_template("users/list.html", users=users, roles=ROLES, **extra), status


@bp.get("/")
@allow("admin")
def list_users() -> tuple[str, int]:
    """Every account with its role and state."""
    return _render_list()


@bp.post("/")
@allow("admin")
def create() -> tuple[str, int]:
    """Create an account with a one-time password, shown once."""
    try:
        user, password = create_user(
            email=request.form.get("email", "")[:254], role=request.form.get("role", ""),
            name=request.form.get("name", "")[:200], actor=_actor(),
        )
    except AccountError as exc:
        db.session.rollback()
        return _render_list(422, error=_account_message(exc))
    db.session.commit()
    return _render_list(201, created=user, one_time_password=password)


def _apply(user_id: int, change: str) -> Response | tuple[str, int]:
    """Apply a role, activation or reset change to one user."""
    user = _user_or_404(user_id)
    password = None
    try:
        if change == "role":
            set_role(user, request.form.get("role", ""), actor=_actor())
        elif change == "active":
            set_active(user, request.form.get("active") == "1", actor=_actor())
        else:
            password = reset_password(user, actor=_actor())
    except AccountError as exc:
        db.session.rollback()
        return _render_list(422, error=_account_message(exc))
    db.session.commit()
    if password:
        return _render_list(200, created=user, one_time_password=password)
    flash(_("The account has been changed."), "success")
    return redirect(url_for("users.list_users"))


@bp.post("/<int:user_id>/role")
@allow("admin")
def change_role(user_id: int) -> Response | tuple[str, int]:
    """Give an account another role."""
    return _apply(user_id, "role")


@bp.post("/<int:user_id>/active")
@allow("admin")
def change_active(user_id: int) -> Response | tuple[str, int]:
    """Deactivate or reactivate an account."""
    return _apply(user_id, "active")


@bp.post("/<int:user_id>/reset-password")
@allow("admin")
def reset(user_id: int) -> Response | tuple[str, int]:
    """Give an account a new one-time password."""
    return _apply(user_id, "reset")
