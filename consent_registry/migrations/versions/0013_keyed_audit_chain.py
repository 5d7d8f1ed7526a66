"""keyed audit chain: every event's hash becomes an HMAC with the audit key kept outside the database

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 04:30:00

An existing chain of plain SHA-256 hashes is re-keyed here, once: the old chain is walked and
checked, every event gets its keyed hash in the same order, and an `audit:rekeyed` event at the
end records the old head (its hash and length) and whether the old chain was intact. Anyone can
still recompute that old head from the events' contents (plain SHA-256 needs no key), so a head
witnessed before the upgrade stays checkable. No column changes: one hash kind in the table, so
there is no older, unkeyed kind for someone with database access to fall back to.

The key is the app's AUDIT_KEY (instance/audit_key by default), which is why this runs through
`flask init` / `flask db upgrade` and not offline.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op
from flask import current_app

from consent_registry.audit import GENESIS_HASH, event_hash, plain_event_hash
from consent_registry.db import UTCDateTime, utcnow

# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

EVENTS = sa.table(
    "audit_events",
    sa.column("id", sa.Integer()), sa.column("occurred_at", UTCDateTime()),
    sa.column("actor_type", sa.String()), sa.column("actor_id", sa.Integer()),
    sa.column("action", sa.String()), sa.column("subject_type", sa.String()),
    sa.column("subject_id", sa.String()), sa.column("details", sa.JSON()),
    sa.column("prev_hash", sa.String()), sa.column("hash", sa.String()),
)
HEAD = sa.table("audit_chain_head", sa.column("id", sa.Integer()),
                sa.column("last_hash", sa.String()), sa.column("length", sa.BigInteger()))
HASHED = ("occurred_at", "actor_type", "actor_id", "action", "subject_type", "subject_id", "details")
BATCH = 1000


def _keyed(**fields: Any) -> str:
    """The keyed hash of an event, with the app's audit key."""
    return event_hash(key=current_app.config["AUDIT_KEY"].encode(), **fields)


def _allow_updates(bind: sa.Connection) -> None:
    """Lift the append-only trigger for this transaction's rewrite (the table's owner may)."""
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")


def _forbid_updates(bind: sa.Connection) -> None:
    """Put the append-only trigger back."""
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only")
    else:
        op.execute("CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
                   "BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END")


def _rechain(old_hash: Callable[..., str], new_hash: Callable[..., str], *, keyed: bool) -> None:
    """Check the chain with old_hash, give every event its new_hash in order, and record that."""
    bind = op.get_bind()
    lock = " FOR UPDATE" if bind.dialect.name == "postgresql" else ""
    head = bind.execute(sa.text(f"SELECT last_hash, length FROM audit_chain_head WHERE id = 1{lock}")).first()
    if not bind.execute(sa.select(sa.func.count()).select_from(EVENTS)).scalar_one():
        return  # a new install, or a chain never begun: nothing to re-key, nothing to record
    old_prev, new_prev, count, first_broken = GENESIS_HASH, GENESIS_HASH, 0, None
    update = (sa.update(EVENTS).where(EVENTS.c.id == sa.bindparam("event_id"))
              .values(prev_hash=sa.bindparam("new_prev"), hash=sa.bindparam("new_hash")))
    _allow_updates(bind)
    last_id = 0
    while rows := bind.execute(sa.select(EVENTS).where(EVENTS.c.id > last_id)
                               .order_by(EVENTS.c.id).limit(BATCH)).mappings().all():
        changes = []
        for row in rows:
            fields = {name: row[name] for name in HASHED}
            if first_broken is None and (row["prev_hash"] != old_prev
                                         or old_hash(**fields, prev_hash=row["prev_hash"]) != row["hash"]):
                first_broken = row["id"]
            old_prev = row["hash"]
            new = new_hash(**fields, prev_hash=new_prev)
            changes.append({"event_id": row["id"], "new_prev": new_prev, "new_hash": new})
            new_prev, count = new, count + 1
        bind.execute(update, changes)
        last_id = rows[-1]["id"]
    _forbid_updates(bind)
    old_head, old_length = (head.last_hash, head.length) if head else (GENESIS_HASH, 0)
    if first_broken is None and (old_head != old_prev or old_length != count):
        first_broken = 0  # events missing at the end: the old head names more than there are
    if first_broken is not None:
        logger.warning("the audit chain was already broken before re-keying (event %s); "
                       "the audit:rekeyed event records it", first_broken or "at the end")
    details = {"keyed": keyed, "previous_head": f"{old_head}:{old_length}",
               "previous_chain_intact": first_broken is None,
               "previous_first_broken_event_id": first_broken or None}
    rekeyed = {"occurred_at": utcnow(), "actor_type": "system", "actor_id": None,
               "action": "audit:rekeyed", "subject_type": None, "subject_id": None,
               "details": details}
    rekeyed_hash = new_hash(**rekeyed, prev_hash=new_prev)
    bind.execute(sa.insert(EVENTS).values(**rekeyed, prev_hash=new_prev, hash=rekeyed_hash))
    bind.execute(sa.update(HEAD).where(HEAD.c.id == 1).values(last_hash=rekeyed_hash, length=count + 1))


def upgrade():
    _rechain(plain_event_hash, _keyed, keyed=True)


def downgrade():
    _rechain(_keyed, plain_event_hash, keyed=False)
