"""The school's own name and the name its mails are sent under, set by an admin at the first run.

Kept in the database (one row) so an admin sets them on a page rather than in the server's
environment; until then the SCHOOL_NAME setting and the display name of MAIL_FROM are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.utils import parseaddr

import sqlalchemy as sa
from flask import current_app, g, has_app_context
from sqlalchemy.orm import Mapped, mapped_column

from .audit import Actor, record
from .db import UTCDateTime, db, utcnow

MAX_NAME = 120


class SchoolSettings(db.Model):
    """The one row of the school's names (id is always 1)."""

    __tablename__ = "school_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_name: Mapped[str] = mapped_column(sa.String(MAX_NAME))
    sender_name: Mapped[str] = mapped_column(sa.String(MAX_NAME))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)


@dataclass(frozen=True, slots=True)
class SchoolNames:
    """What mails and public pages call the school and the sender."""

    school_name: str
    sender_name: str
    set_up: bool


class BadName(ValueError):
    """A name that cannot be used; names the field."""

    def __init__(self, field: str, message: str) -> None:
        """Keep the field and what is wrong."""
        super().__init__(message)
        self.field = field
        self.message = message


def _defaults() -> SchoolNames:
    """The names from the configuration, before an admin has set them."""
    configured = current_app.config.get("MAIL_FROM") or ""
    sender = parseaddr(configured)[0] or "Consent registry"
    return SchoolNames(current_app.config.get("SCHOOL_NAME") or "School", sender, set_up=False)


def school_names() -> SchoolNames:
    """The school's names: the admin's choice, else the configuration (read once per request)."""
    if has_app_context() and "_school_names" in g:
        return g._school_names
    row = db.session.get(SchoolSettings, 1)
    names = (SchoolNames(row.school_name, row.sender_name, set_up=True) if row is not None
             else _defaults())
    if has_app_context():
        g._school_names = names
    return names


def clean_name(field: str, raw: str) -> str:
    """A name of one line, 1 to MAX_NAME characters, with no characters that break a mail header."""
    value = " ".join(raw.split())
    if not value:
        raise BadName(field, "required")
    if len(value) > MAX_NAME:
        raise BadName(field, "too_long")
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or any(c in value for c in '<>"'):
        raise BadName(field, "invalid")
    Address(display_name=value, addr_spec="a@b.invalid")  # refuses what a From header cannot hold
    return value


def set_school_names(*, school_name: str, sender_name: str, actor: Actor) -> SchoolNames:
    """Store both names (audited, by field name only); BadName on an unusable one. No commit."""
    school, sender = clean_name("school_name", school_name), clean_name("sender_name", sender_name)
    row = db.session.get(SchoolSettings, 1)
    changed = []
    if row is None:
        row = SchoolSettings(id=1, school_name=school, sender_name=sender)
        db.session.add(row)
        changed = ["school_name", "sender_name"]
    else:
        changed = [f for f, v in (("school_name", school), ("sender_name", sender))
                   if getattr(row, f) != v]
        row.school_name, row.sender_name = school, sender
    row.updated_at, row.updated_by = utcnow(), actor.id if actor.type == "user" else None
    record("settings:school", actor=actor, subject_type="setting", subject_id="school",
           details={"fields": changed})
    g.pop("_school_names", None)
    return SchoolNames(school, sender, set_up=True)
