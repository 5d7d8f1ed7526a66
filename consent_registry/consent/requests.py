"""Consent requests: choosing whom to ask, and one recipient per decider and person."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from ..audit import Actor, record
from ..db import db, utcnow
from ..people.models import Person
from ..people.service import WITH_GUARDIANS
from ..translate import _
from .models import ConsentRecipient, ConsentRequest
from .service import ConsentError, deciders_of, effective_all, purposes

MAX_NOTE = 300
UNANSWERED = ("none", "expired")


def people_by_ids(person_ids: list[int]) -> list[Person]:
    """The people with these ids, with guardians; ConsentError naming any that do not exist."""
    wanted = sorted(set(person_ids))
    found = list(db.session.execute(
        sa.select(Person).where(Person.id.in_(wanted)).options(WITH_GUARDIANS)
    ).scalars()) if wanted else []
    missing = set(wanted) - {p.id for p in found}
    if missing:
        raise ConsentError("unknown_person", _("No person with id %(id)s.", id=min(missing)),
                           field="person_ids")
    return found


def active_people(group: str | None = None) -> list[Person]:
    """Everyone active, or everyone active in one class."""
    query = sa.select(Person).where(Person.status == "active").options(WITH_GUARDIANS)
    if group:
        query = query.where(Person.group == group)
    return list(db.session.execute(query.order_by(Person.family_name, Person.id)).scalars())


def without_valid_answer(channel: str, group: str | None = None) -> list[Person]:
    """Active people with no answer, or only an expired one, for a channel."""
    return [p for p in active_people(group) if effective_all(p)[channel].state in UNANSWERED]


def check_request(channels: list[str], note: str | None) -> None:
    """Channels must be known and given; the note short."""
    if not channels:
        raise ConsentError("invalid", _("Choose at least one channel."), field="channels")
    unknown = [c for c in channels if c not in purposes()]
    if unknown:
        raise ConsentError("unknown_channel", _("Unknown channel %(channel)s.", channel=unknown[0]),
                           field="channels")
    if note and len(note) > MAX_NOTE:
        raise ConsentError("invalid", _("Too long: at most %(n)s characters.", n=MAX_NOTE), field="note")


def create_request(
    *, people: list[Person], channels: list[str], note: str | None, actor: Actor,
    created_by: int | None, media_id: int | None = None, today: date | None = None,
) -> ConsentRequest:
    """A request with one recipient per person and right decider; people who left are skipped."""
    check_request(channels, note)
    if not people:
        raise ConsentError("invalid", _("Choose at least one person."), field="person_ids")
    day = today or utcnow().date()
    request = ConsentRequest(created_by=created_by, channels=list(dict.fromkeys(channels)),
                             note=(note or "").strip() or None, media_id=media_id)
    db.session.add(request)
    db.session.flush()
    rows = []
    for person in people:
        if person.status != "active":
            continue
        deciders = deciders_of(person, day)
        if not deciders:
            # A pupil under 16 without a guardian in the register: nobody can answer. Staff see it.
            rows.append(ConsentRecipient(
                request_id=request.id, person_id=person.id, decider_kind="guardian",
                guardian_id=None, decider_key="guardian:none", email=None, language="nl",
                delivery="skipped", last_error="no guardian in the register"))
        for decider in deciders:
            rows.append(ConsentRecipient(
                request_id=request.id, person_id=person.id, decider_kind=decider.kind,
                guardian_id=decider.guardian.id if decider.guardian else None,
                decider_key=decider.key, email=decider.email, language=decider.language,
                delivery="pending" if decider.email else "skipped",
                last_error=None if decider.email else "no e-mail address in the register",
            ))
    db.session.add_all(rows)
    db.session.flush()
    record("consent_request:create", actor=actor, subject_type="consent_request",
           subject_id=request.id, details={
               "channels": request.channels, "people": len(people), "recipients": len(rows),
               "without_address": sum(r.delivery == "skipped" for r in rows),
               "media_id": media_id,
           })
    return request


def progress(request: ConsentRequest) -> dict[str, int]:
    """How many recipients are in each delivery and answer state."""
    counts = {"total": 0, "pending": 0, "sending": 0, "sent": 0, "failed": 0, "skipped": 0,
              "opened": 0, "answered": 0}
    for row in request.recipients:
        counts["total"] += 1
        counts[row.delivery] += 1
        counts["opened"] += row.opened_at is not None
        counts["answered"] += row.answered_at is not None
    return counts
