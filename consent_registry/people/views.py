"""Web pages of the people register: list with search and class filter, person page, forms."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from ..audit import Actor
from ..auth.access import ANY_ROLE, allow
from ..db import db
from .forms import person_document, validate_form
from .models import Person
from .schemas import GuardianIn, PersonCreate, PersonPatch
from .service import (
    PeopleError,
    create_person,
    get_person,
    groups,
    search_people,
    set_guardians,
    update_person,
)

bp = Blueprint("people", __name__, url_prefix="/people")
T = TypeVar("T")
WRITERS = ("admin", "staff")


def _actor() -> Actor:
    """The staff member making the change."""
    return Actor("user", current_user.id)


def person_or_404(person_id: int) -> Person:
    """The person, or a 404 page."""
    person = get_person(person_id) if 0 < person_id < 2**31 else None
    if person is None:
        abort(404)
    return person


def _commit_or_errors(change: Callable[[], T]) -> tuple[T | None, dict[str, str]]:
    """Run a register change and commit it, or roll back and return the errors to show."""
    try:
        result = change()
    except PeopleError as exc:
        db.session.rollback()
        return None, {exc.field or "form": str(exc)}
    db.session.commit()
    return result, {}


def page_arg() -> int:
    """The page number from the query, 1 when absent or nonsense."""
    raw = request.args.get("page", "1")
    if not (raw.isascii() and raw.isdigit()):  # isdigit() alone accepts "²", which int() refuses
        return 1
    # int() refuses over 4300 digits; seven digits already lie beyond the cap.
    return max(1, min(int(raw.lstrip("0")[:7] or "0"), 100_000))


@bp.get("/")
@allow(*ANY_ROLE)
def list_people() -> str:
    """People, searchable by name or number and filterable by class."""
    q = request.args.get("q", "")[:200]
    group = request.args.get("group") or None
    status = request.args.get("status") if request.args.get("status") in ("active", "left") else None
    per_page = current_app.config["PAGE_SIZE"]
    page = page_arg()
    people, total = search_people(q=q, group=group, status=status, page=page, per_page=per_page)
    return render_template(
        "people/list.html", people=people, total=total, page=page,
        pages=max(1, math.ceil(total / per_page)), q=q, group=group, status=status,
        groups=groups(), can_write=current_user.role in WRITERS,
    )


@bp.get("/new")
@allow(*WRITERS)
def new() -> str:
    """The form for a new person."""
    return render_template("people/form.html", person=None, values={}, errors={})


@bp.post("/new")
@allow(*WRITERS)
def create() -> tuple[str, int] | Response:
    """Add a person from the form."""
    document = person_document(request.form, with_guardians=True)
    # An empty input of a new person is missing (so "required"), not null ("must be text").
    data, errors = validate_form(PersonCreate, {k: v for k, v in document.items() if v is not None})
    if data is not None:
        person, errors = _commit_or_errors(lambda: create_person(data, actor=_actor()))
        if person is not None:
            flash(_("%(name)s has been added.", name=person.full_name), "success")
            return redirect(url_for("people.detail", person_id=person.id))
    return render_template("people/form.html", person=None, values=request.form,
                           errors=errors), 422


@bp.get("/<int:person_id>")
@allow(*ANY_ROLE)
def detail(person_id: int) -> str:
    """One person with their guardians."""
    person = person_or_404(person_id)
    return render_template("people/detail.html", person=person,
                           can_write=current_user.role in WRITERS, errors={}, values={})


@bp.get("/<int:person_id>/edit")
@allow(*WRITERS)
def edit(person_id: int) -> str:
    """The form to change a person."""
    person = person_or_404(person_id)
    values = {
        "external_id": person.external_id, "given_name": person.given_name,
        "family_name": person.family_name, "birth_date": person.birth_date.isoformat(),
        "role": person.role, "email": person.email or "", "group": person.group or "",
        "language": person.language,
        "status": person.status, "left_on": person.left_on.isoformat() if person.left_on else "",
    }
    return render_template("people/form.html", person=person, values=values, errors={})


@bp.post("/<int:person_id>/edit")
@allow(*WRITERS)
def update(person_id: int) -> tuple[str, int] | Response:
    """Save the changes from the edit form."""
    person = person_or_404(person_id)
    document = person_document(request.form, with_guardians=False)
    document["status"] = request.form.get("status") or None
    left_on = request.form.get("left_on") or None
    if document["status"] == "active" and person.left_on and left_on == person.left_on.isoformat():
        left_on = None  # the form still shows the old leaving date; coming back clears it
    document["left_on"] = left_on
    data, errors = validate_form(PersonPatch, document)
    if data is not None:
        _changed, errors = _commit_or_errors(lambda: update_person(person, data, actor=_actor()))
        if not errors:
            flash(_("The changes have been saved."), "success")
            return redirect(url_for("people.detail", person_id=person.id))
    return render_template("people/form.html", person=person, values=request.form,
                           errors=errors), 422


def _current_guardians(person: Person) -> list[GuardianIn]:
    """The person's guardians as inputs, to add to or remove from."""
    return [
        GuardianIn(name=link.guardian.name or None, email=link.guardian.email,
                   relation=link.relation)
        for link in person.guardian_links
    ]


@bp.post("/<int:person_id>/guardians")
@allow(*WRITERS)
def add_guardian(person_id: int) -> tuple[str, int] | Response:
    """Link a guardian (new or known by e-mail) to a pupil."""
    person = person_or_404(person_id)
    document = {"name": request.form.get("name", ""), "email": request.form.get("email", ""),
                "relation": request.form.get("relation") or None,
                "language": request.form.get("language") or None}
    guardian, errors = validate_form(GuardianIn, document)
    if guardian is not None:
        wanted = [g for g in _current_guardians(person) if g.email != guardian.email] + [guardian]
        _changed, errors = _commit_or_errors(lambda: set_guardians(person, wanted, actor=_actor()))
        if not errors:
            flash(_("The guardian has been saved."), "success")
            return redirect(url_for("people.detail", person_id=person.id))
    return render_template("people/detail.html", person=person, can_write=True,
                           errors=errors, values=request.form), 422


@bp.post("/<int:person_id>/guardians/<int:guardian_id>/remove")
@allow(*WRITERS)
def remove_guardian(person_id: int, guardian_id: int) -> Response:
    """Unlink a guardian from a pupil (the guardian stays known for other children)."""
    person = person_or_404(person_id)
    ids = {link.guardian.email: link.guardian_id for link in person.guardian_links}
    if guardian_id not in ids.values():
        abort(404)
    remaining = [g for g in _current_guardians(person) if ids[g.email] != guardian_id]
    set_guardians(person, remaining, actor=_actor())
    db.session.commit()
    flash(_("The guardian has been removed."), "success")
    return redirect(url_for("people.detail", person_id=person.id))
