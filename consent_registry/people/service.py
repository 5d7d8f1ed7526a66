"""Changing the people register: every change is validated, applied and audited together."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from ..audit import Actor, record
from ..db import db, utcnow
from ..events import consent_may_have_ended
from ..translate import _
from .models import Guardian, GuardianLink, Person
from .schemas import GuardianIn, GuardianOut, PersonCreate, PersonOut, PersonPatch

# Loads a page of people with their guardians in two extra queries instead of two per person.
WITH_GUARDIANS = selectinload(Person.guardian_links).selectinload(GuardianLink.guardian)
# Fields copied as they are from a validated input onto a Person.
PERSON_FIELDS = ("external_id", "given_name", "family_name", "birth_date", "role", "email", "group",
                 "language")
# The fields the consent rules read (`consent.service.facts_of`): a change may end a consent.
CONSENT_FACTS = frozenset({"birth_date", "role", "status", "left_on", "guardians"})


class PeopleError(ValueError):
    """A valid-looking change that conflicts with the register; `field` names the culprit."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        """Keep the code and the field for the API's error body."""
        super().__init__(message)
        self.code = code
        self.field = field


def _flush_or_conflict() -> None:
    """Flush, turning a unique-constraint race with another writer into a conflict."""
    try:
        db.session.flush()
    except sa.exc.IntegrityError:
        raise PeopleError("duplicate", _("A person with this number already exists."),
                          field="external_id") from None


def get_person(person_id: int) -> Person | None:
    """A person by id."""
    return db.session.get(Person, person_id)


def person_by_external_id(external_id: str) -> Person | None:
    """A person by the pupil administration's number."""
    return db.session.execute(
        sa.select(Person).where(Person.external_id == external_id)
    ).scalar_one_or_none()


def _ensure_external_id_free(external_id: str, *, except_id: int | None = None) -> None:
    """External ids are unique: a second one is a conflict (409), not a validation error."""
    existing = person_by_external_id(external_id)
    if existing is not None and existing.id != except_id:
        raise PeopleError("duplicate", _("A person with this number already exists."), field="external_id")


# Guardians by e-mail, loaded once by a bulk import so each row does not query for them again.
GuardianDirectory = dict[str, Guardian]


def all_guardians() -> GuardianDirectory:
    """Every guardian by e-mail address."""
    return {g.email: g for g in db.session.execute(sa.select(Guardian)).scalars()}


def guardian_for(
    data: GuardianIn, *, actor: Actor, known: GuardianDirectory | None = None
) -> Guardian:
    """The guardian with this e-mail, created when new; an updated name is taken over."""
    if known is not None:
        guardian = known.get(data.email)
    else:
        guardian = db.session.execute(
            sa.select(Guardian).where(Guardian.email == data.email)
        ).scalar_one_or_none()
    if guardian is None:
        guardian = Guardian(name=data.name or "", email=data.email, language=data.language or "nl")
        db.session.add(guardian)
        db.session.flush()
        if known is not None:
            known[data.email] = guardian
        record("guardian:create", actor=actor, subject_type="guardian", subject_id=guardian.id)
    else:
        changed = [field for field, value in (("name", data.name), ("language", data.language))
                   if value is not None and getattr(guardian, field) != value]
        for field in changed:
            setattr(guardian, field, getattr(data, field))
        if changed:
            record("guardian:update", actor=actor, subject_type="guardian",
                   subject_id=guardian.id, details={"fields": changed})
    return guardian


def set_guardians(
    person: Person, guardians: list[GuardianIn], *, actor: Actor,
    known: GuardianDirectory | None = None,
) -> bool:
    """Make the person's guardians exactly these; True when anything changed.

    Losing the guardian who consented (or, with both guardians required, gaining one who has not)
    can end a consent: the change is announced, so references and posts go in this transaction.
    """
    changed = _apply_guardians(person, guardians, actor=actor, known=known)
    if changed:
        db.session.flush()
        consent_may_have_ended(person, at=utcnow())
    return changed


def _apply_guardians(
    person: Person, guardians: list[GuardianIn], *, actor: Actor,
    known: GuardianDirectory | None = None,
) -> bool:
    """Link and unlink guardians until they are exactly these (audited); True when anything changed."""
    if person.role == "staff" and guardians:
        raise PeopleError("invalid", _("Staff members have no guardians."), field="guardians")
    wanted = {g.email: g for g in guardians}
    changed = False
    for link in list(person.guardian_links):
        if link.guardian.email not in wanted:
            person.guardian_links.remove(link)
            record("guardian:unlink", actor=actor, subject_type="person", subject_id=person.id,
                   details={"guardian_id": link.guardian_id})
            changed = True
    current = {link.guardian.email: link for link in person.guardian_links}
    for email, data in wanted.items():
        guardian = guardian_for(data, actor=actor, known=known)
        link = current.get(email)
        if link is None:
            person.guardian_links.append(GuardianLink(guardian=guardian, relation=data.relation))
            record("guardian:link", actor=actor, subject_type="person", subject_id=person.id,
                   details={"guardian_id": guardian.id})
            changed = True
        elif link.relation != data.relation:
            link.relation = data.relation
            changed = True
    return changed


def create_person(
    data: PersonCreate, *, actor: Actor, known: GuardianDirectory | None = None
) -> Person:
    """Add a person (and their guardians) to the register."""
    _ensure_external_id_free(data.external_id)
    person = Person(**{name: getattr(data, name) for name in PERSON_FIELDS}, status="active")
    db.session.add(person)
    _flush_or_conflict()
    record("person:create", actor=actor, subject_type="person", subject_id=person.id,
           details={"role": person.role})
    # Nothing announced: a person just added has no consent, reference or post that could end.
    _apply_guardians(person, data.guardians, actor=actor, known=known)
    db.session.flush()
    return person


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A person's status after a change, with the date they left."""

    status: str
    left_on: date | None


def resolve_status(
    current_status: str, current_left_on: date | None, *, status: str | None, left_on: date | None,
    left_on_given: bool, today: date,
) -> StatusChange:
    """Work out status and leaving date from a change: leaving needs a date, returning clears it."""
    new_status = status or current_status
    if new_status == "active":
        if left_on_given and left_on is not None:
            raise PeopleError("invalid", _("An active person has no leaving date."), field="left_on")
        return StatusChange("active", None)
    chosen = left_on if left_on_given else current_left_on
    return StatusChange("left", chosen or today)


def update_person(
    person: Person, patch: PersonPatch, *, actor: Actor, known: GuardianDirectory | None = None
) -> list[str]:
    """Apply a partial change; returns the names of the fields that changed."""
    given = patch.model_fields_set
    if "external_id" in given and patch.external_id != person.external_id:
        _ensure_external_id_free(patch.external_id or "", except_id=person.id)
    new_role = patch.role if "role" in given else person.role
    keeps_guardians = person.guardian_links if patch.guardians is None else patch.guardians
    if new_role == "staff" and keeps_guardians:
        raise PeopleError("invalid", _("Staff members have no guardians."), field="guardians")
    changed = [
        name for name in PERSON_FIELDS
        if name in given and getattr(patch, name) != getattr(person, name)
    ]
    for name in changed:
        setattr(person, name, getattr(patch, name))
    if "status" in given or "left_on" in given:
        outcome = resolve_status(
            person.status, person.left_on, status=patch.status, left_on=patch.left_on,
            left_on_given="left_on" in given, today=utcnow().date(),
        )
        for name in ("status", "left_on"):
            if getattr(outcome, name) != getattr(person, name):
                setattr(person, name, getattr(outcome, name))
                changed.append(name)
    if patch.guardians is not None and _apply_guardians(person, patch.guardians, actor=actor,
                                                        known=known):
        changed.append("guardians")
    _flush_or_conflict()
    if changed:
        # Field names only: the values are personal data, and the register holds them already.
        record("person:update", actor=actor, subject_type="person", subject_id=person.id,
               details={"fields": sorted(changed)})
        if "status" in changed:
            record("person:leave" if person.status == "left" else "person:return", actor=actor,
                   subject_type="person", subject_id=person.id)
    if CONSENT_FACTS.intersection(changed):
        # Who decides, whose answers count and until when all follow from these: a correction can
        # end a consent, and what depended on it goes now, not at the hourly sweep.
        consent_may_have_ended(person, at=utcnow())
    return changed


def search_people(
    *, q: str = "", group: str | None = None, status: str | None = None, page: int = 1,
    per_page: int = 50,
) -> tuple[list[Person], int]:
    """One page of people matching a free-text query and filters, by family name."""
    query = sa.select(Person)
    # PostgreSQL refuses NUL in text parameters; no name or class contains one.
    q, group = q.replace("\x00", ""), group.replace("\x00", "") if group else group
    for word in q.split():
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        query = query.where(
            sa.or_(
                Person.given_name.ilike(pattern, escape="\\"),
                Person.family_name.ilike(pattern, escape="\\"),
                Person.external_id.ilike(pattern, escape="\\"),
                Person.email.ilike(pattern, escape="\\"),
            )
        )
    if group:
        query = query.where(Person.group == group)
    if status:
        query = query.where(Person.status == status)
    total = db.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = db.session.execute(
        query.options(WITH_GUARDIANS)
        .order_by(Person.family_name, Person.given_name, Person.id)
        .limit(per_page).offset((page - 1) * per_page)
    ).scalars().all()
    return list(rows), total


def groups() -> list[str]:
    """Every class or group in the register, sorted."""
    return list(db.session.execute(
        sa.select(Person.group).where(Person.group.is_not(None)).distinct().order_by(Person.group)
    ).scalars())


def person_out(person: Person) -> PersonOut:
    """The API's view of a person."""
    return PersonOut(
        **{name: getattr(person, name) for name in PERSON_FIELDS},
        id=person.id,
        status=person.status,  # type: ignore[arg-type]
        left_on=person.left_on,
        guardians=[
            GuardianOut(id=link.guardian.id, name=link.guardian.name, email=link.guardian.email,
                        relation=link.relation, language=link.guardian.language)
            for link in person.guardian_links
        ],
        created_at=person.created_at.isoformat(),
        updated_at=person.updated_at.isoformat(),
    )


def person_json(person: Person) -> dict[str, Any]:
    """A person as a JSON-ready dict."""
    return person_out(person).model_dump(mode="json")
