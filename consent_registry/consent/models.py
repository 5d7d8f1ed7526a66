"""Consent texts, append-only consent records, consent requests and their recipients."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import UTCDateTime, db, utcnow
from ..people.models import Guardian, Person

DECISIONS = ("granted", "refused", "withdrawn")
DECIDER_KINDS = ("guardian", "pupil", "self")
METHODS = ("email-link", "paper", "import", "in-person")
DELIVERY_STATES = ("pending", "sending", "sent", "failed", "skipped")


class ConsentText(db.Model):
    """A version of the text a decider was shown, in one language, referenced by its SHA-256."""

    __tablename__ = "consent_texts"

    sha256: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(32))
    version: Mapped[str] = mapped_column(sa.String(20))
    language: Mapped[str] = mapped_column(sa.String(5))
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentRecord(db.Model):
    """One decision about one person and one channel; never updated or deleted in place."""

    __tablename__ = "consent_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(sa.ForeignKey("people.id"))
    channel: Mapped[str] = mapped_column(sa.String(32))
    decision: Mapped[str] = mapped_column(sa.String(10))
    decider_kind: Mapped[str] = mapped_column(sa.String(10))
    guardian_id: Mapped[int | None] = mapped_column(sa.ForeignKey("guardians.id"))
    method: Mapped[str] = mapped_column(sa.String(12))
    entered_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    text_sha256: Mapped[str] = mapped_column(sa.ForeignKey("consent_texts.sha256"))
    valid_from: Mapped[date] = mapped_column(sa.Date)
    valid_until: Mapped[date | None] = mapped_column(sa.Date)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    client_hash: Mapped[str | None] = mapped_column(sa.String(64))
    recipient_id: Mapped[int | None] = mapped_column(sa.ForeignKey("consent_recipients.id"))
    possibly_scanner: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str | None] = mapped_column(sa.String(500))
    scan_key: Mapped[str | None] = mapped_column(sa.String(100))
    scan_type: Mapped[str | None] = mapped_column(sa.String(40))

    person: Mapped[Person] = relationship()
    guardian: Mapped[Guardian | None] = relationship()

    __table_args__ = (
        sa.CheckConstraint(sa.column("decision").in_(DECISIONS), name="decision"),
        sa.CheckConstraint(sa.column("decider_kind").in_(DECIDER_KINDS), name="decider_kind"),
        sa.CheckConstraint(sa.column("method").in_(METHODS), name="method"),
        sa.CheckConstraint(
            "(decider_kind = 'guardian') = (guardian_id IS NOT NULL)", name="guardian_decider"
        ),
        sa.Index("ix_consent_records_person_channel", "person_id", "channel", "decided_at"),
    )


@event.listens_for(ConsentRecord, "before_update")
def _refuse_update(*_: object) -> None:
    """Consent records are proof; a new decision is a new record."""
    raise RuntimeError("consent records are never updated")


@event.listens_for(ConsentRecord, "before_delete")
def _refuse_delete(*_: object) -> None:
    """Consent records are proof; they are removed only by the retention rules."""
    raise RuntimeError("consent records are never deleted here")


class ConsentRequest(db.Model):
    """Staff asking the deciders of some people for consent on some channels."""

    __tablename__ = "consent_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    channels: Mapped[list[str]] = mapped_column(sa.JSON)
    note: Mapped[str | None] = mapped_column(sa.String(300))
    media_id: Mapped[int | None] = mapped_column(sa.Integer)

    recipients: Mapped[list[ConsentRecipient]] = relationship(
        back_populates="request", order_by="ConsentRecipient.id"
    )


class ConsentRecipient(db.Model):
    """One decider asked about one person: the unit a personal link points to."""

    __tablename__ = "consent_recipients"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(sa.ForeignKey("consent_requests.id"), index=True)
    person_id: Mapped[int] = mapped_column(sa.ForeignKey("people.id"), index=True)
    decider_kind: Mapped[str] = mapped_column(sa.String(10))
    guardian_id: Mapped[int | None] = mapped_column(sa.ForeignKey("guardians.id"))
    # "guardian:<id>", "pupil" or "self": who is asked, as one non-null value for the unique key.
    decider_key: Mapped[str] = mapped_column(sa.String(30))
    email: Mapped[str | None] = mapped_column(sa.String(254))
    language: Mapped[str] = mapped_column(sa.String(5), default="nl")
    delivery: Mapped[str] = mapped_column(sa.String(10), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.String(300))
    message_id: Mapped[str | None] = mapped_column(sa.String(255))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminders_sent: Mapped[int] = mapped_column(default=0)
    last_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    request: Mapped[ConsentRequest] = relationship(back_populates="recipients")
    person: Mapped[Person] = relationship()
    guardian: Mapped[Guardian | None] = relationship()

    __table_args__ = (
        # Never the same request twice to the same address about the same person.
        sa.UniqueConstraint("request_id", "person_id", "decider_key",
                            name="uq_consent_recipients_once"),
        sa.CheckConstraint(sa.column("delivery").in_(DELIVERY_STATES), name="delivery"),
    )


class Notice(db.Model):
    """A one-off message sent about a person (e.g. turning 16), so a daily job sends it once."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(sa.ForeignKey("people.id"))
    kind: Mapped[str] = mapped_column(sa.String(30))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("person_id", "kind", name="uq_notices_once"),)
