"""The audit chain survives someone who can write to the database: keyed hashes, witnessed heads,
and the re-keying of a chain written before the key existed."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade
from test_audit import _tamper

from consent_registry import create_app
from consent_registry.audit import (
    GENESIS_HASH,
    Actor,
    AuditChainHead,
    AuditEvent,
    canonical_encoding,
    record,
    verify,
)
from consent_registry.db import db, utcnow

from conftest import PG_URL, make_app


def _events(n: int) -> None:
    """Write n events through the application, committed."""
    for i in range(n):
        record("person:create", actor=Actor("user", 1), subject_type="person", subject_id=i,
               details={"n": i})
    db.session.commit()


def _fields(event: AuditEvent, prev_hash: str) -> dict[str, object]:
    """An event's hashed fields with the given predecessor."""
    return {"occurred_at": event.occurred_at, "actor_type": event.actor_type,
            "actor_id": event.actor_id, "action": event.action, "subject_type": event.subject_type,
            "subject_id": event.subject_id, "details": event.details, "prev_hash": prev_hash}


def _sha256(event: AuditEvent, prev_hash: str) -> str:
    """What an attacker without the key computes: plain SHA-256 of the documented encoding."""
    return hashlib.sha256(canonical_encoding(**_fields(event, prev_hash))).hexdigest()


def _rewrite_from(first_id: int, details: dict[str, object]) -> None:
    """The attack: triggers off, change an event, recompute every later hash and the head."""
    events = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
    prev, rows = GENESIS_HASH, []
    for event in events:
        if event.id < first_id:
            prev = event.hash
            continue
        event_details = details if event.id == first_id else event.details
        new = hashlib.sha256(canonical_encoding(
            **{**_fields(event, prev), "details": event_details})).hexdigest()  # type: ignore[arg-type]
        rows.append((event.id, event_details, prev, new))
        prev = new
    db.session.commit()  # end the read: on SQLite it holds the write lock
    table = AuditEvent.__table__
    with db.engine.begin() as conn:
        _triggers(conn, on=False)
        for event_id, event_details, prev_hash, new in rows:
            conn.execute(sa.update(table).where(table.c.id == event_id)
                         .values(details=event_details, prev_hash=prev_hash, hash=new))
        conn.execute(sa.update(AuditChainHead.__table__).values(last_hash=prev))
        _triggers(conn, on=True)


def _triggers(conn: sa.Connection, *, on: bool) -> None:
    """Switch the append-only triggers off or back on, as the table's owner can."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"ALTER TABLE audit_events {'ENABLE' if on else 'DISABLE'} TRIGGER USER"))
    elif on:
        for verb in ("UPDATE", "DELETE"):
            conn.execute(sa.text(f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON "
                                 "audit_events BEGIN SELECT RAISE(ABORT, 'append-only'); END"))
    else:
        conn.execute(sa.text("DROP TRIGGER audit_events_no_update"))
        conn.execute(sa.text("DROP TRIGGER audit_events_no_delete"))


def test_an_event_rewritten_with_every_later_hash_recomputed_is_detected(app: Flask) -> None:
    """Drop the trigger, edit an event, recompute every later hash and the head with SHA-256:
    without the audit key the hashes cannot match, and verification names the edited event."""
    _events(5)
    _rewrite_from(3, {"n": 99})
    assert db.session.get(AuditEvent, 3).details == {"n": 99}
    report = verify()
    assert not report.ok and report.broken_event_id == 3 and "content" in report.reason
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code != 0 and "BROKEN at event 3" in result.output


def test_a_chain_rewritten_from_the_start_is_detected(app: Flask) -> None:
    """The whole chain recomputed from the first event on is refused at the first event."""
    _events(3)
    _rewrite_from(1, {"n": -1})
    report = verify()
    assert not report.ok and report.broken_event_id == 1


def test_the_hash_depends_on_the_key(app: Flask) -> None:
    """The same events verified with another key are refused: the key is what proves them."""
    _events(2)
    assert verify().ok
    app.config["AUDIT_KEY"] = "another-key-" + "y" * 32
    assert not verify().ok


def _head() -> str:
    """The stored chain's verified head, HASH:LENGTH."""
    report = verify()
    assert report.ok
    return report.head


def _verify_expecting(app: Flask, head: str) -> tuple[int, str]:
    """`flask audit verify --expect HEAD`: exit code and output."""
    result = app.test_cli_runner().invoke(args=["audit", "verify", "--expect", head])
    return result.exit_code, result.output


def test_expect_accepts_a_witnessed_head_that_is_still_a_prefix(app: Flask) -> None:
    """A head witnessed yesterday is part of today's longer chain; so is the empty chain's."""
    assert _verify_expecting(app, f"{GENESIS_HASH}:0")[0] == 0
    _events(3)
    witnessed = _head()
    _events(2)
    code, output = _verify_expecting(app, witnessed)
    assert code == 0 and "5 events" in output and "is part of it" in output
    assert _verify_expecting(app, _head())[0] == 0


def _truncate_to(length: int) -> None:
    """The attack without the key: delete events from the end and move the head back."""
    events = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
    keep_id, keep_hash = events[length - 1].id, events[length - 1].hash
    db.session.commit()  # end the read: on SQLite it holds the write lock
    _tamper(f"DELETE FROM audit_events WHERE id > {keep_id}")
    with db.engine.begin() as conn:
        conn.execute(sa.update(AuditChainHead.__table__).values(last_hash=keep_hash, length=length))
    db.session.expire_all()


def test_expect_fails_after_the_end_was_cut_off(app: Flask) -> None:
    """Events removed from the end with the head moved back verify on their own, but not
    against the head witnessed before."""
    _events(5)
    witnessed = _head()
    _truncate_to(3)
    assert verify().ok  # what the chain alone cannot tell
    code, output = _verify_expecting(app, witnessed)
    assert code != 0 and "BROKEN" in output and "removed from its end" in output


def test_expect_fails_after_the_end_was_replaced(app: Flask) -> None:
    """Cut off and written on: the chain is as long again, but the witnessed event is not in it."""
    _events(4)
    witnessed = _head()
    _truncate_to(2)
    _events(3)
    assert verify().ok and verify().checked == 5
    code, output = _verify_expecting(app, witnessed)
    assert code != 0 and "rewritten" in output


def test_expect_refuses_what_is_not_a_head(app: Flask) -> None:
    """A mistyped head is a usage error, not a verification."""
    for bad in ("abc:3", f"{GENESIS_HASH}", f"{GENESIS_HASH}:x", f"{'g' * 64}:1"):
        code, output = _verify_expecting(app, bad)
        assert code == 2 and "HASH:LENGTH" in output
    assert not db.session.query(AuditEvent).count()


# --- the key ----------------------------------------------------------------------------------


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment for an instance in tmp_path."""
    return {"CONSENT_REGISTRY_INSTANCE_PATH": str(tmp_path / "instance"), **extra}


PRODUCTION = {"CONSENT_REGISTRY_ENV": "production", "CONSENT_REGISTRY_SECRET_KEY": "s" * 48,
              "CONSENT_REGISTRY_PUBLIC_URL": "https://toestemming.school.nl"}


def test_the_key_is_generated_once_into_the_instance_folder(tmp_path: Path) -> None:
    """Outside production the first run writes a private key file; later runs read it."""
    first = create_app(environ=_environ(tmp_path))
    key_file = tmp_path / "instance" / "audit_key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    second = create_app(environ=_environ(tmp_path))
    assert first.config["AUDIT_KEY"] == second.config["AUDIT_KEY"] == key_file.read_text()
    assert first.config["AUDIT_KEY"] != first.config["SECRET_KEY"]


def test_production_needs_the_key_set_or_present(tmp_path: Path) -> None:
    """Production does not make up a key: it must be set, or be in the instance folder."""
    with pytest.raises(RuntimeError, match="CONSENT_REGISTRY_AUDIT_KEY"):
        create_app(environ=_environ(tmp_path, **PRODUCTION))
    assert not (tmp_path / "instance" / "audit_key").exists()
    with pytest.raises(RuntimeError, match="at least 32"):
        create_app(environ=_environ(tmp_path, **PRODUCTION, CONSENT_REGISTRY_AUDIT_KEY="short"))
    key = secrets.token_urlsafe(48)
    assert create_app(environ=_environ(tmp_path, **PRODUCTION, CONSENT_REGISTRY_AUDIT_KEY=key)
                      ).config["AUDIT_KEY"] == key
    fd = os.open(tmp_path / "instance" / "audit_key", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, key.encode())
    os.close(fd)
    assert create_app(environ=_environ(tmp_path, **PRODUCTION)).config["AUDIT_KEY"] == key


# --- moving an existing chain to the keyed one --------------------------------------------------


@pytest.fixture
def unmigrated_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the backend: a new SQLite file, or a PostgreSQL schema of its own."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'upgrade.sqlite3'}"
        return
    schema = f"rekey_{secrets.token_hex(4)}"
    engine = sa.create_engine(sa.engine.make_url(PG_URL).set(drivername="postgresql+psycopg"))
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    base = sa.engine.make_url(PG_URL).set(drivername="postgresql+psycopg",
                                          query={"options": f"-csearch_path={schema}"})
    try:
        yield base.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def _plain_chain(n: int) -> str:
    """n events chained with plain SHA-256, as installs before the keyed chain wrote them; its head."""
    table, prev = AuditEvent.__table__, GENESIS_HASH
    with db.engine.begin() as conn:
        for i in range(n):
            fields = {"occurred_at": utcnow(), "actor_type": "user", "actor_id": 1,
                      "action": "person:create", "subject_type": "person", "subject_id": str(i),
                      "details": {"n": i, "name": "Zoë"}, "prev_hash": prev}
            digest = hashlib.sha256(canonical_encoding(**fields)).hexdigest()  # type: ignore[arg-type]
            conn.execute(sa.insert(table).values(**fields, hash=digest))
            prev = digest
        conn.execute(sa.update(AuditChainHead.__table__).values(last_hash=prev, length=n))
    return f"{prev}:{n}"


def test_upgrading_re_keys_an_existing_chain_and_records_it(unmigrated_url: str, tmp_path: Path) -> None:
    """An install with a plain SHA-256 chain upgrades: every event keeps its content, gets its
    keyed hash, and an audit:rekeyed event records the old head, which anyone can recompute."""
    application = make_app(unmigrated_url, tmp_path)
    with application.app_context():
        try:
            upgrade(revision="0008")
            old_head = _plain_chain(4)
            assert not verify().ok  # the unkeyed chain does not pass as keyed
            db.session.commit()
            upgrade()
            report = verify()
            assert report.ok and report.checked == 5
            events = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
            assert [e.details["n"] for e in events[:4]] == [0, 1, 2, 3]
            assert events[-1].action == "audit:rekeyed" and events[-1].details == {
                "keyed": True, "previous_head": old_head, "previous_chain_intact": True,
                "previous_first_broken_event_id": None}
            # The old head is still provable from the contents, without any key.
            prev = GENESIS_HASH
            for event in events[:4]:
                prev = _sha256(event, prev)
            assert f"{prev}:4" == old_head
            db.session.commit()
            with pytest.raises(sa.exc.DatabaseError, match="append-only"), db.engine.begin() as conn:
                conn.execute(sa.text("UPDATE audit_events SET action = 'x:y'"))
        finally:
            db.session.remove()
            db.engine.dispose()


def test_upgrading_a_broken_chain_records_that_it_was_broken(unmigrated_url: str, tmp_path: Path) -> None:
    """Re-keying must not launder earlier tampering: the rekey event says where the old chain broke."""
    application = make_app(unmigrated_url, tmp_path)
    with application.app_context():
        try:
            upgrade(revision="0008")
            _plain_chain(3)
            _tamper("UPDATE audit_events SET details = '{\"n\": 7}' WHERE id = 2")
            upgrade()
            rekeyed = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id.desc())
                                         ).scalars().first()
            assert rekeyed.action == "audit:rekeyed"
            assert rekeyed.details["previous_chain_intact"] is False
            assert rekeyed.details["previous_first_broken_event_id"] == 2
        finally:
            db.session.remove()
            db.engine.dispose()
