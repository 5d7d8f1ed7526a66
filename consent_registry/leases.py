"""Leases: how a long job holds the row it works on, and how a dead worker's work is found quickly.

Huey delivers a job at most once, so a worker killed mid-run (kill -9, OOM, power loss) leaves its
row claimed ("analysing", "publishing", "building") and nobody to finish it. Each such row carries
a lease: who holds it (a random owner per run) and until when. The job takes it with one
conditional UPDATE (never check-then-write, so two copies can never both claim), renews it every
JOB_HEARTBEAT_SECONDS from a thread of its own, each time in its own short transaction, and writes
its result only while the lease is still its own. The sweeper, every minute, hands back (again
with one conditional UPDATE) the rows whose lease lapsed: their worker stopped renewing, so it is
dead or cut off. A job that is still running keeps its lease and is never started a second time;
one that was cut off and comes back finds the lease gone and keeps nothing of its run.

Lease and heartbeat are settings (JOB_LEASE_SECONDS, default 120; JOB_HEARTBEAT_SECONDS, 30):
a dead worker's job is queued again within the lease plus a minute.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Mapped, mapped_column

from .db import UTCDateTime, db, utcnow

log = logging.getLogger(__name__)

OWNER_LENGTH = 32


class Leased:
    """Columns of a row that a long job claims: the run that holds it, and until when."""

    lease_owner: Mapped[str | None] = mapped_column(sa.String(OWNER_LENGTH))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def lease_duration() -> timedelta:
    """How long a lease lasts without renewal (JOB_LEASE_SECONDS)."""
    return timedelta(seconds=float(current_app.config["JOB_LEASE_SECONDS"]))


def heartbeat_interval() -> float:
    """Seconds between renewals (JOB_HEARTBEAT_SECONDS)."""
    return float(current_app.config["JOB_HEARTBEAT_SECONDS"])


def check_settings(config: dict[str, Any]) -> None:
    """Refuse a heartbeat that could not renew a lease before it lapses."""
    lease, beat = float(config["JOB_LEASE_SECONDS"]), float(config["JOB_HEARTBEAT_SECONDS"])
    if not 0 < beat <= lease / 2:
        raise RuntimeError("JOB_HEARTBEAT_SECONDS must be above 0 and at most half of "
                           f"JOB_LEASE_SECONDS (now {beat:g} and {lease:g})")


def held_by(model: type[Leased], owner: str) -> sa.ColumnElement[bool]:
    """The condition "this run still holds the row's lease", for the run's own writes."""
    return model.lease_owner == owner


def lapsed(model: type[Leased], now: datetime) -> sa.ColumnElement[bool]:
    """The condition "nobody holds this row's lease any more" (none counts as lapsed)."""
    return sa.or_(model.lease_expires_at.is_(None), model.lease_expires_at < now)


def claim(model: Any, row_id: int, *, where: sa.ColumnElement[bool], values: dict[str, Any],
          now: datetime | None = None) -> str | None:
    """Take a row for one run with one conditional UPDATE (no commit); the owner, or None if not ours.

    `where` says which state the row must be in (e.g. queued); `values` are set with the lease.
    """
    owner = uuid.uuid4().hex
    claimed = db.session.execute(
        sa.update(model).where(model.id == row_id, where)
        .values(**values, lease_owner=owner, lease_expires_at=(now or utcnow()) + lease_duration())
    ).rowcount
    return owner if claimed == 1 else None


def hold(model: Any, row_id: int, owner: str, *, still: sa.ColumnElement[bool]) -> bool:
    """Renew the lease inside the caller's transaction (no commit), before a write that must not
    happen once another run took over; False when the lease is not this run's any more."""
    return db.session.execute(
        sa.update(model).where(model.id == row_id, held_by(model, owner), still)
        .values(lease_expires_at=utcnow() + lease_duration())
    ).rowcount == 1


def release_lapsed(model: Any, row_id: int, *, where: sa.ColumnElement[bool],
                   values: dict[str, Any], now: datetime) -> bool:
    """Hand back a row whose lease lapsed, re-checking the lapse in the UPDATE itself (no commit).

    A heartbeat that came in meanwhile wins: the row is left to its running job.
    """
    return db.session.execute(
        sa.update(model).where(model.id == row_id, where, lapsed(model, now))
        .values(**values, lease_owner=None, lease_expires_at=None)
    ).rowcount == 1


class Heartbeat:
    """Renews one run's lease from a thread of its own until stopped; `lost` once it could not."""

    def __init__(self, engine: sa.Engine, model: Any, row_id: int, owner: str, *,
                 still: sa.ColumnElement[bool], interval: float, lease: timedelta) -> None:
        self.engine, self.model, self.row_id, self.owner = engine, model, row_id, owner
        self.still, self.interval, self.lease = still, interval, lease
        self.lost = threading.Event()
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"lease-{model.__tablename__}-{row_id}")

    def renew(self) -> bool:
        """Extend the lease now, in a short transaction of its own; False when it is not ours any more."""
        with self.engine.begin() as connection:
            renewed = connection.execute(
                sa.update(self.model)
                .where(self.model.id == self.row_id, held_by(self.model, self.owner), self.still)
                .values(lease_expires_at=utcnow() + self.lease)).rowcount == 1
        self.beats += 1
        return renewed

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.renew():
                    self.lost.set()  # swept, cancelled or taken over: the run keeps nothing
                    return
            except Exception:  # a database hiccup: try at the next beat; the lease covers a few
                log.exception("could not renew the lease of %s %s", self.model.__tablename__,
                              self.row_id)

    def start(self) -> Heartbeat:
        """Start renewing."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing (the run is over) and wait for a renewal under way."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()


@contextmanager
def heartbeat(model: Any, row_id: int, owner: str, *,
              still: sa.ColumnElement[bool]) -> Iterator[Heartbeat]:
    """Keep a claimed row's lease alive while the block runs (`still`: the claimed state)."""
    beat = Heartbeat(db.engine, model, row_id, owner, still=still, interval=heartbeat_interval(),
                     lease=lease_duration()).start()
    try:
        yield beat
    finally:
        beat.stop()
