"""Recording decisions and answering what a person's consent is: the rules applied to the database."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from flask import current_app

from ..audit import Actor, record
from ..db import db, utcnow
from ..events import consent_may_have_ended
from ..people.models import Guardian, Person
from ..translate import _
from .models import ConsentRecipient, ConsentRecord
from .rules import (
    Effective,
    PersonFacts,
    Policy,
    Record,
    decider_kind_at,
    default_valid_until,
    effective_consent,
)
from .texts import BIOMETRIC, stored_text

ACTIONS = {"granted": "consent:grant", "refused": "consent:refuse", "withdrawn": "consent:withdraw"}


class ConsentError(ValueError):
    """A decision that may not be recorded; `code` says why, `field` names the culprit."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        """Keep the code and field for the API and pages."""
        super().__init__(message)
        self.code = code
        self.field = field


def channels() -> tuple[str, ...]:
    """The publication channels this school uses."""
    return tuple(current_app.config["CHANNELS"])


def purposes() -> tuple[str, ...]:
    """Everything consent can be asked for: the channels and, separately, biometric matching."""
    return (*channels(), BIOMETRIC)


def policy() -> Policy:
    """The two-guardian policy from the configuration."""
    return Policy(all_guardians_must_grant=bool(current_app.config["ALL_GUARDIANS_MUST_GRANT"]))


def facts_of(person: Person) -> PersonFacts:
    """What the rules need to know about a person."""
    return PersonFacts(
        role=person.role, birth_date=person.birth_date, status=person.status,
        left_on=person.left_on,
        guardian_ids=frozenset(link.guardian_id for link in person.guardian_links),
    )


def as_rule_record(row: ConsentRecord) -> Record:
    """A stored record in the shape the rules take."""
    return Record(
        id=row.id, channel=row.channel, decision=row.decision, decider_kind=row.decider_kind,
        guardian_id=row.guardian_id, decided_at=row.decided_at, valid_from=row.valid_from,
        valid_until=row.valid_until,
    )


def records_of(person_id: int, channel: str | None = None) -> list[ConsentRecord]:
    """A person's records, oldest first."""
    query = sa.select(ConsentRecord).where(ConsentRecord.person_id == person_id)
    if channel is not None:
        query = query.where(ConsentRecord.channel == channel)
    return list(db.session.execute(
        query.order_by(ConsentRecord.decided_at, ConsentRecord.id)).scalars())


def effective_for(person: Person, channel: str, at: datetime | None = None) -> Effective:
    """The person's effective consent for one channel at a moment (now by default)."""
    rows = records_of(person.id, channel)
    return effective_consent(person=facts_of(person), channel=channel, at=at or utcnow(),
                             records=[as_rule_record(r) for r in rows], policy=policy())


def effective_all(person: Person, at: datetime | None = None) -> dict[str, Effective]:
    """Effective consent for every purpose, from one query."""
    rows = [as_rule_record(r) for r in records_of(person.id)]
    moment, facts, rule_policy = at or utcnow(), facts_of(person), policy()
    return {
        purpose: effective_consent(person=facts, channel=purpose, at=moment, records=rows,
                                   policy=rule_policy)
        for purpose in purposes()
    }


@dataclass(frozen=True, slots=True)
class Decider:
    """Someone who decides for a person today, with where to reach them."""

    kind: str  # "guardian", "pupil" or "self"
    guardian: Guardian | None
    email: str | None
    language: str

    @property
    def key(self) -> str:
        """A stable key: guardian:<id>, pupil or self."""
        return f"guardian:{self.guardian.id}" if self.guardian else self.kind


def deciders_of(person: Person, on: date) -> list[Decider]:
    """Who decides for this person on that day: their guardians, the pupil, or the staff member."""
    kind = decider_kind_at(person=facts_of(person), on=on)
    if kind == "guardian":
        return [Decider("guardian", link.guardian, link.guardian.email, link.guardian.language)
                for link in person.guardian_links]
    return [Decider(kind, None, person.email, person.language)]


def is_decider(person: Person, *, kind: str, guardian_id: int | None, on: date) -> bool:
    """Whether this decider may decide for the person on that day."""
    current = decider_kind_at(person=facts_of(person), on=on)
    if kind != current:
        return False
    if kind == "guardian":
        return any(link.guardian_id == guardian_id for link in person.guardian_links)
    return guardian_id is None


def client_fingerprint(address: str | None, user_agent: str | None) -> str:
    """A keyed hash of the client's address and browser: proof without keeping either."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{address or ''}\n{user_agent or ''}".encode(), hashlib.sha256).hexdigest()


def record_decision(
    *,
    person: Person,
    channel: str,
    decision: str,
    decider_kind: str,
    guardian_id: int | None,
    method: str,
    actor: Actor,
    language: str = "nl",
    entered_by: int | None = None,
    recipient: ConsentRecipient | None = None,
    client_hash: str | None = None,
    note: str | None = None,
    scan_key: str | None = None,
    scan_type: str | None = None,
    at: datetime | None = None,
    printed_link: bool = False,
) -> ConsentRecord:
    """Append one decision after checking the channel and that the decider may decide; audited.

    `printed_link`: answered through the link of a printed form rather than of an e-mail (the
    method stays the link's; the audit event says which, as proof of how the decider was reached).
    """
    moment = at or utcnow()
    if channel not in purposes():
        raise ConsentError("unknown_channel", _("Not a channel of this school."), field="channel")
    if decision not in ACTIONS:
        raise ConsentError("invalid", _("The decision must be granted, refused or withdrawn."),
                           field="decision")
    if person.status == "left":
        raise ConsentError("person_left", _("This person has left the school."))
    if not is_decider(person, kind=decider_kind, guardian_id=guardian_id, on=moment.date()):
        raise ConsentError("not_a_decider", _("This decider does not decide for this person now."),
                           field="decided_by")
    scanner = bool(
        recipient and recipient.sent_at
        and (moment - recipient.sent_at).total_seconds() < current_app.config["SCANNER_SECONDS"]
    )
    row = ConsentRecord(
        person_id=person.id, channel=channel, decision=decision, decider_kind=decider_kind,
        guardian_id=guardian_id, method=method, entered_by=entered_by,
        text_sha256=stored_text(channel, language).sha256, valid_from=moment.date(),
        valid_until=(default_valid_until(decided_on=moment.date(),
                                         rule=current_app.config["CONSENT_VALIDITY"])
                     if decision == "granted" else None),
        decided_at=moment, client_hash=client_hash, recipient_id=recipient.id if recipient else None,
        possibly_scanner=scanner, note=note, scan_key=scan_key, scan_type=scan_type,
    )
    db.session.add(row)
    db.session.flush()
    record(ACTIONS[decision], actor=actor, subject_type="person", subject_id=person.id, details={
        "record_id": row.id, "channel": channel, "method": method, "decider": decider_kind,
        "guardian_id": guardian_id, "entered_by": entered_by, "possibly_scanner": scanner,
        **({"printed_link": True} if printed_link else {}),
    })
    # A decision may end the consent for its purpose: references and posts go in this transaction.
    consent_may_have_ended(person, at=moment, purposes=frozenset({channel}))
    return row
