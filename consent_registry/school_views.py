"""The admin's page for the school's name and the mail sender's name (the first run's set-up)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from .audit import Actor
from .auth.access import allow
from .db import db
from .school import MAX_NAME, BadName, school_names, set_school_names
from .translate import _

bp = Blueprint("school", __name__, url_prefix="/settings/school")


def _problem(code: str) -> str:
    """A BadName code in words."""
    return {"required": _("This field is required."),
            "too_long": _("Too long: at most %(n)s characters.", n=MAX_NAME),
            "invalid": _("Use letters, digits and ordinary punctuation only (no < > or quotes).")
            }.get(code, code)


@bp.get("")
@allow("admin")
def page() -> str:
    """The form, filled with the names in use now."""
    names = school_names()
    return render_template("settings/school.html", names=names, errors={},
                           values={"school_name": names.school_name,
                                   "sender_name": names.sender_name})


@bp.post("")
@allow("admin")
def submit() -> Response | tuple[str, int]:
    """Store both names (audited); a field's problem comes back with what was typed."""
    values = {k: request.form.get(k, "")[:1000] for k in ("school_name", "sender_name")}
    try:
        set_school_names(**values, actor=Actor("user", current_user.id))
    except BadName as exc:
        db.session.rollback()
        return render_template("settings/school.html", names=school_names(), values=values,
                               errors={exc.field: _problem(exc.message)}), 422
    db.session.commit()
    flash(_("The school's name and the sender's name have been saved."), "success")
    return redirect(url_for("school.page"))
