"""API routes for the people register."""

from __future__ import annotations

from flask import Response, jsonify, url_for
from flask_babel import gettext as _

from ..audit import Actor
from ..auth.access import ANY_ROLE, allow, current_principal
from ..db import db
from ..people.models import Person
from ..people.schemas import PersonCreate, PersonPatch
from ..people.service import (
    PeopleError,
    create_person,
    get_person,
    person_json,
    search_people,
    update_person,
)
from . import bp
from .errors import ApiError, choice_arg, int_arg, json_object, page_size, text_arg, validated

PEOPLE_WRITERS = ("admin", "staff")
_MAX_ID = 2**31 - 1  # larger ids cannot exist and would overflow PostgreSQL's integer
SEARCH_MAX = 200  # characters of a search (the OpenAPI document says the same)
GROUP_MAX = 40  # characters of a class or group name (people.models.Person.group)


def _actor() -> Actor:
    """The audit actor for the token's user."""
    user = current_principal()
    assert user is not None  # enforce_access guarantees it on these routes
    return Actor("user", user.id)


def _person_or_404(person_id: int) -> Person:
    """The person, or a 404 in the API's shape."""
    person = get_person(person_id) if 0 < person_id <= _MAX_ID else None
    if person is None:
        raise ApiError(404, "not_found", _("No person with this id."))
    return person


def _conflict_or_invalid(exc: PeopleError) -> ApiError:
    """Map a register conflict to 409 and other refusals to 422."""
    status = 409 if exc.code == "duplicate" else 422
    fields = {exc.field: str(exc)} if exc.field else None
    return ApiError(status, exc.code if status == 409 else "invalid", str(exc), fields)


@bp.get("/people")
@allow(*ANY_ROLE)
def list_people() -> Response:
    """A page of people, searched by name, number or e-mail, filtered by group and status."""
    q = text_arg("q", max_length=SEARCH_MAX) or ""
    group = text_arg("group", max_length=GROUP_MAX) or None
    status = choice_arg("status", ("active", "left"))
    page, per_page = int_arg("page", default=1, maximum=100_000), page_size()
    people, total = search_people(q=q, group=group, status=status, page=page, per_page=per_page)
    return jsonify({"items": [person_json(p) for p in people], "page": page,
                    "per_page": per_page, "total": total})


@bp.post("/people")
@allow(*PEOPLE_WRITERS)
def create_person_route() -> tuple[Response, int, dict[str, str]]:
    """Add a person with their guardians."""
    data = validated(PersonCreate, json_object())
    try:
        person = create_person(data, actor=_actor())
    except PeopleError as exc:
        db.session.rollback()
        raise _conflict_or_invalid(exc) from None
    db.session.commit()
    location = url_for("api.get_person_route", person_id=person.id)
    return jsonify(person_json(person)), 201, {"Location": location}


@bp.get("/people/<int:person_id>")
@allow(*ANY_ROLE)
def get_person_route(person_id: int) -> Response:
    """One person with their guardians."""
    return jsonify(person_json(_person_or_404(person_id)))


@bp.patch("/people/<int:person_id>")
@allow(*PEOPLE_WRITERS)
def patch_person_route(person_id: int) -> Response:
    """Change some of a person's fields; `guardians`, when given, replaces the list."""
    person = _person_or_404(person_id)
    patch = validated(PersonPatch, json_object())
    try:
        update_person(person, patch, actor=_actor())
    except PeopleError as exc:
        db.session.rollback()
        raise _conflict_or_invalid(exc) from None
    db.session.commit()
    return jsonify(person_json(person))
