"""The gate applied to a stored item: its appearances and the effective consents of its people."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from ..consent.service import channels, effective_for
from ..db import db, utcnow
from ..media.models import Media
from ..people.models import Person
from ..people.service import WITH_GUARDIANS
from .gate import AppearanceFacts, GateDecision, PersonConsent, evaluate

# Blockers about a person's own consent: asking their deciders again can lift them.
CONSENT_REASONS = ("no_consent", "refused", "withdrawn", "expired", "person_left")


def appearance_facts(media: Media) -> list[AppearanceFacts]:
    """The item's appearances in the shape the gate takes."""
    return [AppearanceFacts(appearance_id=a.id, kind=a.kind, person_id=a.person_id,
                            suggested_person_id=a.suggested_person_id, resolution=a.resolution)
            for a in media.appearances]


def tagged_people(media: Media) -> list[Person]:
    """Everyone identified in the item, with guardians loaded, by id."""
    ids = {a.person_id for a in media.appearances
           if a.resolution == "identified" and a.person_id is not None}
    if not ids:
        return []
    return list(db.session.execute(
        sa.select(Person).where(Person.id.in_(ids)).options(WITH_GUARDIANS).order_by(Person.id)
    ).scalars())


def person_consent(person: Person, channel: str, at: datetime) -> PersonConsent:
    """A person's effective consent for the channel at a moment, as the gate takes it."""
    effective = effective_for(person, channel, at)
    return PersonConsent(person_id=person.id, state=effective.state,
                         record_ids=tuple(effective.record_ids), valid_until=effective.valid_until,
                         left=effective.reason == "person_left")


def gate_for(media: Media, channel: str, *, attested: bool, at: datetime | None = None) -> GateDecision:
    """The gate's decision for the item on a channel at a moment (now by default).

    Raises ValueError for a channel this school does not publish on.
    """
    moment = at or utcnow()
    known = channels()
    if channel not in known:
        raise ValueError(f"unknown channel {channel!r}")
    consents = {p.id: person_consent(p, channel, moment) for p in tagged_people(media)}
    return evaluate(kind=media.kind, status=media.status, voices_analysed=media.voices_analysed,
                    appearances=appearance_facts(media), consents=consents, channel=channel,
                    at=moment, attested=attested, known_channels=known)


def missing_people(media: Media, channel: str, at: datetime | None = None) -> list[Person]:
    """Tagged people whose own consent blocks the item on the channel (also those who left), by id."""
    decision = gate_for(media, channel, attested=True, at=at)
    blocked = {b.person_id for b in decision.blockers if b.reason in CONSENT_REASONS}
    return [p for p in tagged_people(media) if p.id in blocked]
