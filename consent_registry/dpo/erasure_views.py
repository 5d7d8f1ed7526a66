"""The erasure page: an admin erases a person on request, after confirming (the DPO may not write)."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from ..audit import Actor
from ..auth.access import allow
from ..db import db
from ..people.views import person_or_404
from ..translate import _
from . import bp
from . import retention as _retention  # noqa: F401  (its daily job registers on import)
from .erasure import erase_person

CONFIRMATION = "ERASE"


def _page(person_id: int, *, error: str | None = None, status: int = 200) -> tuple[str, int]:
    """The confirmation page for erasing one person."""
    person = person_or_404(person_id)
    return render_template("dpo/erase.html", person=person, confirmation=CONFIRMATION,
                           error=error), status


@bp.get("/people/<int:person_id>/erase")
@allow("admin")
def erase_page(person_id: int) -> tuple[str, int]:
    """What erasing the person does, and the form to confirm it."""
    return _page(person_id)


@bp.post("/people/<int:person_id>/erase")
@allow("admin")
def erase(person_id: int) -> tuple[str, int] | Response:
    """Erase the person once the admin typed the confirmation word."""
    person = person_or_404(person_id)
    if request.form.get("confirm", "").strip() != CONFIRMATION:
        return _page(person_id, status=422, error=_(
            "Type %(word)s to confirm the erasure.", word=CONFIRMATION))
    erase_person(person, actor=Actor("user", current_user.id), reason="request")
    db.session.commit()
    flash(_("The person's data was erased; their publications are being taken down."), "success")
    return redirect(url_for("dpo.erase_page", person_id=person_id), 303)
