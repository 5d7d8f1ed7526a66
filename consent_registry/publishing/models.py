"""Publications of media on channels, the people each shows, and their takedowns.

A publication is the proof the data protection officer needs: which rendition went where, when,
by whom, and the gate's decision with, per person, the consent records that allowed it. Rows are
kept after a takedown (state `taken_down`) and even after the media item is deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import UTCDateTime, db, utcnow
from ..leases import Leased

# queued -> publishing -> live | failed; live -> takedown_pending -> taken_down.
# An export is `live` once recorded; its takedown is a task staff confirm by hand.
PUBLICATION_STATES = ("queued", "publishing", "live", "failed", "takedown_pending", "taken_down")
CONNECTORS = ("facebook", "export")


class Publication(Leased, db.Model):
    """One media item (or an album of photos) published (or being published) on one channel.

    For an album, `media_id`, `media_sha256` and the rendition columns describe its first photo and
    `items` holds every photo in order.
    """

    __tablename__ = "publications"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Kept when the item is deleted: the proof outlives the file.
    media_id: Mapped[int | None] = mapped_column(sa.ForeignKey("media.id", ondelete="SET NULL"),
                                                 index=True)
    media_sha256: Mapped[str] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(32), index=True)
    connector: Mapped[str] = mapped_column(sa.String(10))
    caption: Mapped[str | None] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.String(20), default="queued", index=True)
    attested: Mapped[bool] = mapped_column(default=False)
    # {"allowed": true, "evaluated_at": ..., "people": [{"person_id", "appearance_ids",
    #  "consent_record_ids", "valid_until"}], "appearances": [{"appearance_id", "resolution"}]}
    decision: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    # The cleared rendition that was (or will be) sent: storage key and hash of its bytes.
    rendition_key: Mapped[str | None] = mapped_column(sa.String(255))
    rendition_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    # What the remote side answered, written as soon as it answers (a retry never posts twice):
    # e.g. {"photo_ids": [...], "upload_session": "...", "handle": "..."}.
    remote: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    post_id: Mapped[str | None] = mapped_column(sa.String(100), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    published_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    takedown_reason: Mapped[str | None] = mapped_column(sa.String(40))
    takedown_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    takedown_attempts: Mapped[int] = mapped_column(default=0)
    taken_down_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    taken_down_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    people: Mapped[list[PublicationPerson]] = relationship(
        back_populates="publication", cascade="all, delete-orphan", order_by="PublicationPerson.id")
    # The photos of an album, in order (empty for a single item, whose media_id says it all).
    items: Mapped[list[PublicationMedia]] = relationship(
        back_populates="publication", cascade="all, delete-orphan",
        order_by="PublicationMedia.position")

    __table_args__ = (
        sa.CheckConstraint(sa.column("state").in_(PUBLICATION_STATES), name="state"),
        sa.CheckConstraint(sa.column("connector").in_(CONNECTORS), name="connector"),
    )


class PublicationPerson(db.Model):
    """A person shown in a publication: what a withdrawal for that channel must take down."""

    __tablename__ = "publication_people"

    id: Mapped[int] = mapped_column(primary_key=True)
    publication_id: Mapped[int] = mapped_column(
        sa.ForeignKey("publications.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(sa.ForeignKey("people.id"), index=True)

    publication: Mapped[Publication] = relationship(back_populates="people")

    __table_args__ = (sa.UniqueConstraint("publication_id", "person_id", name="uq_publication_person"),)


class PublicationMedia(db.Model):
    """One photo of an album publication: which item, at which place, and the rendition sent."""

    __tablename__ = "publication_media"

    id: Mapped[int] = mapped_column(primary_key=True)
    publication_id: Mapped[int] = mapped_column(
        sa.ForeignKey("publications.id", ondelete="CASCADE"), index=True)
    # Kept when the item is deleted, as for a publication.
    media_id: Mapped[int | None] = mapped_column(sa.ForeignKey("media.id", ondelete="SET NULL"),
                                                 index=True)
    media_sha256: Mapped[str] = mapped_column(sa.String(64))
    position: Mapped[int] = mapped_column()
    rendition_key: Mapped[str | None] = mapped_column(sa.String(255))
    rendition_sha256: Mapped[str | None] = mapped_column(sa.String(64))

    publication: Mapped[Publication] = relationship(back_populates="items")

    __table_args__ = (sa.UniqueConstraint("publication_id", "position",
                                          name="uq_publication_media_position"),)


class PublicationSlot(db.Model):
    """An item's place on a channel, taken by a publication: the database's guard against twice.

    Every publication takes one slot per item it shows. The unique (media_id, channel, number)
    makes two requests racing for the same item and channel produce one publication: the first
    takes number 0, the second fails on the constraint. A slot whose publication has failed or
    was taken down is stale and removed by the next request; an explicit "publish again" takes
    the next number. The foreign key to the item has no cascade: an item with a slot cannot be
    deleted, so nothing live is deleted out from under its proof.
    """

    __tablename__ = "publication_slots"

    id: Mapped[int] = mapped_column(primary_key=True)
    media_id: Mapped[int] = mapped_column(sa.ForeignKey("media.id"))
    channel: Mapped[str] = mapped_column(sa.String(32))
    number: Mapped[int] = mapped_column()
    publication_id: Mapped[int] = mapped_column(
        sa.ForeignKey("publications.id", ondelete="CASCADE"), index=True)

    __table_args__ = (sa.UniqueConstraint("media_id", "channel", "number",
                                          name="uq_publication_slot"),)


class IdempotencyKey(db.Model):
    """A publish request's Idempotency-Key per user: the same key answers the same publication."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(255))
    # SHA-256 of what was asked (route and body): the same key with another body is refused.
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    # The publication the first request created: a replay answers it again (201, its state now).
    publication_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("publications.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("user_id", "key", name="uq_idempotency_key"),)
