"""The audit log: appended in the change's transaction, hash-chained, append-only, verifiable."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from itertools import pairwise

import pytest
import sqlalchemy as sa
from flask import Flask

from consent_registry.audit import (
    GENESIS_HASH,
    Actor,
    AuditChainHead,
    AuditEvent,
    canonical_encoding,
    event_hash,
    record,
    verify,
    verify_events,
)
from consent_registry.db import db

KEY = b"k" * 32


def _events(n: int) -> None:
    """Write n events, committed."""
    for i in range(n):
        record("person:create", actor=Actor("user", 1), subject_type="person", subject_id=i,
               details={"n": i, "name": "Zoë"})
    db.session.commit()


def test_canonical_encoding_is_stable_and_order_free() -> None:
    """The hash covers sorted compact JSON, so key order in details does not matter."""
    fields = dict(occurred_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), actor_type="system",
                  actor_id=None, action="x:y", subject_type=None, subject_id=None,
                  prev_hash=GENESIS_HASH)
    a = canonical_encoding(**fields, details={"b": 1, "a": [1, 2]})
    b = canonical_encoding(**fields, details={"a": [1, 2], "b": 1})
    assert a == b
    assert json.loads(a)["occurred_at"] == "2026-01-02T03:04:05.000006+00:00"
    assert event_hash(key=KEY, **fields, details={"a": 1}) != event_hash(key=KEY, **fields, details={"a": 2})


def test_events_chain_and_verify(app: Flask) -> None:
    """Each event stores its predecessor's hash; a fresh chain verifies."""
    assert verify().ok and verify().checked == 0
    _events(5)
    events = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
    assert events[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(events))
    report = verify()
    assert report.ok and report.checked == 5
    head = db.session.get(AuditChainHead, 1)
    assert head.last_hash == events[-1].hash and head.length == 5


def test_event_rolls_back_with_its_change(app: Flask) -> None:
    """An event is part of the caller's transaction: no change, no event, and the chain holds."""
    _events(1)
    record("person:update", actor=Actor("system"), subject_type="person", subject_id=1)
    db.session.rollback()
    assert db.session.query(AuditEvent).count() == 1
    _events(1)
    assert verify().ok and verify().checked == 2


def test_action_must_be_subject_colon_action(app: Flask) -> None:
    """Tags like 'person:create' only."""
    for bad in ("create", "person:", ":create", "person create", "a:b;drop"):
        with pytest.raises(ValueError):
            record(bad, actor=Actor("system"))
    with pytest.raises(ValueError):
        Actor("hacker")


def test_orm_refuses_to_change_or_delete_events(app: Flask) -> None:
    """No code path can update or delete an event through the ORM."""
    _events(1)
    event = db.session.query(AuditEvent).one()
    event.action = "person:delete"
    with pytest.raises(RuntimeError, match="never updated"):
        db.session.flush()
    db.session.rollback()
    db.session.delete(db.session.query(AuditEvent).one())
    with pytest.raises(RuntimeError, match="never deleted"):
        db.session.flush()
    db.session.rollback()


def test_database_refuses_to_change_or_delete_events(app: Flask) -> None:
    """The database's own trigger refuses UPDATE and DELETE, whoever sends them."""
    _events(1)
    for statement in ("UPDATE audit_events SET action = 'x:y'", "DELETE FROM audit_events"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), db.engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert verify().ok


def _tamper(statement: str) -> None:
    """Change the table by hand, as someone with owner rights could: triggers off first."""
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
            conn.execute(sa.text(statement))
            conn.execute(sa.text("ALTER TABLE audit_events ENABLE TRIGGER USER"))
        else:
            conn.execute(sa.text("DROP TRIGGER audit_events_no_update"))
            conn.execute(sa.text("DROP TRIGGER audit_events_no_delete"))
            conn.execute(sa.text(statement))
    db.session.expire_all()


def test_verify_command_passes_on_a_fresh_database(app: Flask) -> None:
    """`flask audit verify` exits 0 and says how many events it checked."""
    _events(3)
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and "3 events" in result.output


@pytest.mark.parametrize(("statement", "broken", "reason"), [
    ("UPDATE audit_events SET details = '{\"n\": 99}' WHERE id = 3", 3, "content"),
    ("UPDATE audit_events SET action = 'person:erase' WHERE id = 2", 2, "content"),
    ("DELETE FROM audit_events WHERE id = 2", 3, "previous hash"),
    ("DELETE FROM audit_events WHERE id = 4", None, "end"),
])
def test_verify_command_fails_after_a_row_is_changed_by_hand(
    app: Flask, statement: str, broken: int | None, reason: str
) -> None:
    """A changed, removed or truncated event makes `flask audit verify` exit non-zero and name it."""
    _events(4)
    _tamper(statement)
    report = verify()
    assert not report.ok and report.broken_event_id == broken and reason in report.reason
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code != 0
    assert "BROKEN" in result.output
    if broken:
        assert f"event {broken}" in result.output


def test_verify_events_reports_the_first_broken_link() -> None:
    """The pure walk names the first event whose link is wrong."""
    fields = dict(occurred_at=datetime(2026, 1, 1, tzinfo=UTC), actor_type="system", actor_id=None,
                  action="x:y", subject_type=None, subject_id=None, details={})
    first = AuditEvent(id=1, **fields, prev_hash=GENESIS_HASH,
                       hash=event_hash(key=KEY, **fields, prev_hash=GENESIS_HASH))
    second = AuditEvent(id=2, **fields, prev_hash=first.hash,
                        hash=event_hash(key=KEY, **fields, prev_hash=first.hash))
    assert verify_events([first, second], key=KEY).ok
    assert verify_events([second], key=KEY).broken_event_id == 2
    assert verify_events([first, second], key=KEY, head_hash=first.hash, head_length=1).ok is False


def test_personal_characters_round_trip_through_the_database(app: Flask) -> None:
    """Non-ASCII details read back exactly as hashed (JSON canonicalisation on write)."""
    record("person:create", actor=Actor("system"), details={"why": "Zoë ✓", "when": datetime(2026, 1, 1)})
    db.session.commit()
    db.session.expire_all()
    assert verify().ok
    assert db.session.query(AuditEvent).one().details == {"why": "Zoë ✓", "when": "2026-01-01 00:00:00"}
