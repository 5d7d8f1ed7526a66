"""Person, Guardian and the link between them."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import UTCDateTime, db, utcnow

PERSON_ROLES = ("pupil", "staff")
PERSON_STATUSES = ("active", "left")


class Person(db.Model):
    """A pupil or staff member who may appear in school media."""

    __tablename__ = "people"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    role: Mapped[str] = mapped_column(sa.String(10))
    given_name: Mapped[str] = mapped_column(sa.String(100))
    family_name: Mapped[str] = mapped_column(sa.String(150))
    birth_date: Mapped[date] = mapped_column(sa.Date)
    email: Mapped[str | None] = mapped_column(sa.String(254))
    group: Mapped[str | None] = mapped_column("group_name", sa.String(40), index=True)
    status: Mapped[str] = mapped_column(sa.String(10), default="active")
    left_on: Mapped[date | None] = mapped_column(sa.Date)
    # Set when the person's data was erased (GDPR art. 17): the row stays, pseudonymised, for the
    # ids that proof records and audit events refer to.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The language e-mails to this person are written in.
    language: Mapped[str] = mapped_column(sa.String(5), default="nl", server_default="nl")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    guardian_links: Mapped[list[GuardianLink]] = relationship(
        back_populates="person", cascade="all, delete-orphan", order_by="GuardianLink.guardian_id"
    )

    __table_args__ = (
        sa.CheckConstraint(sa.column("role").in_(PERSON_ROLES), name="role"),
        sa.CheckConstraint(sa.column("status").in_(PERSON_STATUSES), name="status"),
        sa.Index("ix_people_family_name", "family_name"),
    )

    @property
    def full_name(self) -> str:
        """Given name and family name, as the school writes them."""
        return f"{self.given_name} {self.family_name}"


class Guardian(db.Model):
    """A parent or other holder of parental responsibility; one guardian may have several children."""

    __tablename__ = "guardians"

    id: Mapped[int] = mapped_column(primary_key=True)
    # "" when the pupil administration's export gave only the address; never invented.
    name: Mapped[str] = mapped_column(sa.String(200))
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    language: Mapped[str] = mapped_column(sa.String(5), default="nl", server_default="nl")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    child_links: Mapped[list[GuardianLink]] = relationship(back_populates="guardian")

    @property
    def display_name(self) -> str:
        """The name, or the e-mail address for a guardian imported without one."""
        return self.name or self.email


class GuardianLink(db.Model):
    """That a guardian holds responsibility for a pupil, and how they are related."""

    __tablename__ = "guardian_links"

    person_id: Mapped[int] = mapped_column(sa.ForeignKey("people.id"), primary_key=True)
    guardian_id: Mapped[int] = mapped_column(
        sa.ForeignKey("guardians.id"), primary_key=True, index=True
    )
    relation: Mapped[str | None] = mapped_column(sa.String(40))

    person: Mapped[Person] = relationship(back_populates="guardian_links")
    guardian: Mapped[Guardian] = relationship(back_populates="child_links")
