"""The append-only, hash-chained audit log: record() in the caller's transaction, verify() the chain.

Each event's hash is an HMAC-SHA256 keyed with AUDIT_KEY, a key kept outside the database: someone
who can write to the database can change an event, but cannot compute the hashes that would make
the chain verify again. What they can still do without the key, cut events off the end and move
the head back, is caught by comparing with a head witnessed earlier (the daily mail to the DPO,
`flask audit verify --expect HASH:LENGTH`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column

from .db import UTCDateTime, db, utcnow

GENESIS_HASH = "0" * 64
ACTOR_TYPES = ("user", "guardian", "person", "system")


class AuditEvent(db.Model):
    """One audit event; never updated or deleted once written."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor_type: Mapped[str] = mapped_column(sa.String(16))
    actor_id: Mapped[int | None] = mapped_column(sa.Integer, index=True)
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    subject_type: Mapped[str | None] = mapped_column(sa.String(32))
    subject_id: Mapped[str | None] = mapped_column(sa.String(64))
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    # Unique, so two writers can never both extend the same event: the chain cannot fork.
    prev_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)

    __table_args__ = (sa.Index("ix_audit_events_subject", "subject_type", "subject_id"),)


@event.listens_for(AuditEvent, "before_update")
def _refuse_update(*_: object) -> None:
    """Audit events are append-only."""
    raise RuntimeError("audit events are never updated")


@event.listens_for(AuditEvent, "before_delete")
def _refuse_delete(*_: object) -> None:
    """Audit events are append-only."""
    raise RuntimeError("audit events are never deleted")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: a staff user, a guardian or person through a link, or the system."""

    type: str
    id: int | None = None

    def __post_init__(self) -> None:
        """Reject actor types the log does not know."""
        if self.type not in ACTOR_TYPES:
            raise ValueError(f"unknown actor type {self.type!r}")


SYSTEM = Actor("system")


def canonical_encoding(
    *,
    occurred_at: datetime,
    actor_type: str,
    actor_id: int | None,
    action: str,
    subject_type: str | None,
    subject_id: str | None,
    details: dict[str, Any],
    prev_hash: str,
) -> bytes:
    """The exact bytes an event's hash covers: sorted, compact JSON in UTF-8."""
    document = {
        "occurred_at": occurred_at.isoformat(timespec="microseconds"),
        "actor_type": actor_type,
        "actor_id": actor_id,
        "action": action,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "details": details,
        "prev_hash": prev_hash,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> Any:
    """An HMAC-SHA256 with the key already absorbed; copied for each event (cheaper than anew)."""
    return hmac.new(key, digestmod=hashlib.sha256)


def event_hash(*, key: bytes, **fields: Any) -> str:
    """HMAC-SHA256 with the audit key over the canonical encoding of an event and its predecessor's hash."""
    mac = _keyed(key).copy()
    mac.update(canonical_encoding(**fields))
    return mac.hexdigest()


def plain_event_hash(**fields: Any) -> str:
    """The unkeyed SHA-256 the chain used before it was keyed (read once, when re-keying)."""
    return hashlib.sha256(canonical_encoding(**fields)).hexdigest()


def audit_key() -> bytes:
    """The current app's audit key, as bytes."""
    return current_app.config["AUDIT_KEY"].encode()


def _check_action(action: str) -> None:
    """Actions are tags of the form subject:action."""
    subject, sep, verb = action.partition(":")
    if not (sep and subject and verb) or not action.replace(":", "").replace("_", "").isalnum():
        raise ValueError(f"audit action must look like 'subject:action', not {action!r}")


class AuditChainHead(db.Model):
    """The single row that knows the chain's newest hash and length.

    Appending locks this row (FOR UPDATE on PostgreSQL, the write lock on SQLite), which
    serialises writers; and because it holds the length, removing events from the end of the
    chain is detected too.
    """

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_hash: Mapped[str] = mapped_column(sa.String(64))
    length: Mapped[int] = mapped_column(sa.BigInteger)


HEAD_ID = 1


_HEAD_KEY = "audit_chain_head"


@event.listens_for(Session, "after_transaction_end")
def _forget_head(session: Session, transaction: sa.orm.SessionTransaction) -> None:
    """The locked head is valid only inside the transaction that locked it."""
    if transaction.parent is None:
        session.info.pop(_HEAD_KEY, None)


def _chain_head(session: Session) -> AuditChainHead:
    """The head row, locked once per transaction; created on an empty database."""
    if (cached := session.info.get(_HEAD_KEY)) is not None:
        return cached
    head = session.execute(
        sa.select(AuditChainHead).where(AuditChainHead.id == HEAD_ID).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        head = AuditChainHead(id=HEAD_ID, last_hash=GENESIS_HASH, length=0)
        session.add(head)
    session.info[_HEAD_KEY] = head
    return head


def record(
    action: str,
    *,
    actor: Actor,
    subject_type: str | None = None,
    subject_id: int | str | None = None,
    details: dict[str, Any] | None = None,
    session: Session | None = None,
) -> AuditEvent:
    """Append an event in the caller's transaction; it commits or rolls back with the change."""
    _check_action(action)
    session = session or db.session
    # Canonicalise details through JSON now, so what is hashed equals what is read back.
    clean_details = json.loads(json.dumps(details or {}, sort_keys=True, default=str))
    head = _chain_head(session)
    fields = {
        "occurred_at": utcnow(),
        "actor_type": actor.type,
        "actor_id": actor.id,
        "action": action,
        "subject_type": subject_type,
        "subject_id": None if subject_id is None else str(subject_id),
        "details": clean_details,
        "prev_hash": head.last_hash,
    }
    audit_event = AuditEvent(**fields, hash=event_hash(key=audit_key(), **fields))
    # Events of one flush are inserted in the order they were added, so ids follow the chain.
    session.add(audit_event)
    head.last_hash = audit_event.hash
    head.length += 1
    return audit_event


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of walking the chain; head_hash is the last verified event's hash."""

    ok: bool
    checked: int
    broken_event_id: int | None = None
    reason: str | None = None
    head_hash: str = GENESIS_HASH

    @property
    def head(self) -> str:
        """The verified head as HASH:LENGTH, what a witness keeps and --expect takes."""
        return f"{self.head_hash}:{self.checked}"


@dataclass(frozen=True, slots=True)
class WitnessedHead:
    """A chain head someone outside the database kept: the hash of the event at position length."""

    hash: str
    length: int

    @classmethod
    def parse(cls, text: str) -> WitnessedHead:
        """Read HASH:LENGTH (64 hex digits, a colon, a whole number); ValueError otherwise."""
        digest, sep, length = text.strip().partition(":")
        digest = digest.lower()
        if not (sep and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
                and length.isdigit()):
            raise ValueError("expected HASH:LENGTH, 64 hexadecimal digits, a colon and a number")
        return cls(digest, int(length))


def _fields_of(audit_event: AuditEvent) -> dict[str, Any]:
    """The hashed fields of a stored event."""
    return {
        "occurred_at": audit_event.occurred_at,
        "actor_type": audit_event.actor_type,
        "actor_id": audit_event.actor_id,
        "action": audit_event.action,
        "subject_type": audit_event.subject_type,
        "subject_id": audit_event.subject_id,
        "details": audit_event.details,
        "prev_hash": audit_event.prev_hash,
    }


def verify_events(
    events: Iterable[AuditEvent],
    *,
    key: bytes,
    head_hash: str | None = None,
    head_length: int | None = None,
    expect: WitnessedHead | None = None,
) -> ChainReport:
    """Walk events in order and report the first one whose link or keyed hash is wrong.

    Given the head's hash and length, events missing from the end are reported too; given a
    head witnessed earlier, the chain must still hold it at its position (a prefix of today's).
    """
    expected_prev = GENESIS_HASH
    checked = 0
    witnessed = expect is not None and expect.length == 0 and expect.hash == GENESIS_HASH
    for audit_event in events:
        if audit_event.prev_hash != expected_prev:
            return ChainReport(False, checked, audit_event.id, "previous hash does not match",
                               expected_prev)
        if event_hash(key=key, **_fields_of(audit_event)) != audit_event.hash:
            return ChainReport(False, checked, audit_event.id, "event content does not match hash",
                               expected_prev)
        expected_prev = audit_event.hash
        checked += 1
        if expect is not None and checked == expect.length:
            witnessed = expect.hash == audit_event.hash
    if head_hash is not None and (head_hash != expected_prev or head_length != checked):
        return ChainReport(False, checked, None, "chain ends before its recorded head", expected_prev)
    if expect is not None and not witnessed:
        reason = (f"the witnessed head {expect.hash}:{expect.length} is not in the chain: "
                  + ("events were removed from its end" if checked < expect.length
                     else "the chain was rewritten"))
        return ChainReport(False, checked, None, reason, expected_prev)
    return ChainReport(True, checked, head_hash=expected_prev)


def _events_in_order(session: Session, batch: int = 1000) -> Iterator[AuditEvent]:
    """Stream every event by id, a batch at a time, so memory stays flat on long chains."""
    last_id = 0
    while True:
        rows = session.execute(
            sa.select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
        ).scalars().all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id
        for row in rows:
            session.expunge(row)


def verify(session: Session | None = None, *, expect: WitnessedHead | None = None) -> ChainReport:
    """Verify the whole stored chain against its head (and a head witnessed earlier, if given)."""
    session = session or db.session
    head = session.get(AuditChainHead, HEAD_ID)
    return verify_events(
        _events_in_order(session),
        key=audit_key(),
        head_hash=head.last_hash if head else GENESIS_HASH,
        head_length=head.length if head else 0,
        expect=expect,
    )
