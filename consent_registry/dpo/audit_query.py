"""Searching the audit log for the DPO: parse filters, build the query, page it, stream it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from ..audit import ACTOR_TYPES, AuditEvent
from ..db import db

MAX_ID = 2**31 - 1
MAX_TEXT = 200
EXPORT_BATCH = 500


class BadFilter(ValueError):
    """A query parameter that cannot be used; names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        """Keep the parameter's name and what is wrong with it."""
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """The filters of one search; None means "any"."""

    since: datetime | None = None
    until: datetime | None = None
    actor_type: str | None = None
    actor_id: int | None = None
    action: str | None = None
    person_id: int | None = None
    media_id: int | None = None
    text: str | None = None

    def as_args(self) -> dict[str, str]:
        """The filters as query arguments (for links and for the audit of an export)."""
        return {k: (v.isoformat() if isinstance(v, datetime) else str(v))
                for k, v in asdict(self).items() if v is not None}


def parse_moment(field: str, raw: str, *, end_of_day: bool = False) -> datetime:
    """An ISO date or date-time (UTC when no offset); a bare date as `until` means the day's end."""
    value = raw.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time(), tzinfo=UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadFilter(field, "must be a date (YYYY-MM-DD) or an ISO 8601 date-time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _int(field: str, raw: str, *, minimum: int = 1, maximum: int = MAX_ID) -> int:
    """A whole number within bounds, or BadFilter."""
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        raise BadFilter(field, f"must be a whole number between {minimum} and {maximum}")
    return value


def _action(raw: str) -> str:
    """An action tag or prefix: letters, digits, underscores and at most one colon."""
    value = raw.strip()
    if len(value) > 64 or value.count(":") > 1 or not value.replace(":", "").replace("_", "").isalnum():
        raise BadFilter("action", "must look like 'subject:action' or 'subject'")
    return value


def parse_filters(args: Mapping[str, str]) -> AuditFilters:
    """Filters from query arguments; blank arguments are ignored; BadFilter on anything invalid."""
    def arg(name: str) -> str | None:
        value = args.get(name)
        return value if value and value.strip() else None

    actor_type = arg("actor_type")
    if actor_type is not None and actor_type not in ACTOR_TYPES:
        raise BadFilter("actor_type", "must be one of " + ", ".join(ACTOR_TYPES))
    text = arg("text")
    if text is not None and len(text) > MAX_TEXT:
        raise BadFilter("text", f"must be at most {MAX_TEXT} characters")
    filters = AuditFilters(
        since=parse_moment("since", raw) if (raw := arg("since")) else None,
        until=parse_moment("until", raw, end_of_day=True) if (raw := arg("until")) else None,
        actor_type=actor_type,
        actor_id=_int("actor_id", raw, minimum=0) if (raw := arg("actor_id")) else None,
        action=_action(raw) if (raw := arg("action")) else None,
        person_id=_int("person_id", raw) if (raw := arg("person_id")) else None,
        media_id=_int("media_id", raw) if (raw := arg("media_id")) else None,
        text=text.strip() if text else None,
    )
    if filters.since and filters.until and filters.since >= filters.until:
        raise BadFilter("until", "must be after since")
    return filters


def _detail_equals(key: str, value: int) -> sa.ColumnElement[bool]:
    """details[key] equals the id, whether stored as a number or a string (portable)."""
    return sa.cast(AuditEvent.details[key].as_string(), sa.String) == str(value)


def _detail_list_holds(key: str, value: int) -> sa.ColumnElement[bool]:
    """details[key] is a list holding the id (json_each on SQLite, jsonb containment on PostgreSQL)."""
    if db.engine.dialect.name == "postgresql":
        return sa.cast(AuditEvent.details, JSONB).contains({key: [value]})
    each = sa.func.json_each(AuditEvent.details, f"$.{key}").table_valued("value")
    return sa.exists(sa.select(1).select_from(each).where(each.c.value == value))


def _subject_or_detail(subject_type: str, key: str, value: int) -> sa.ColumnElement[bool]:
    """Events about the object itself, or naming it in their details."""
    return sa.or_(
        sa.and_(AuditEvent.subject_type == subject_type, AuditEvent.subject_id == str(value)),
        _detail_equals(key, value),
        _detail_list_holds(f"{key}s", value),
    )


def about_person(person_id: int) -> sa.ColumnElement[bool]:
    """Events about a person: as subject, as details.person_id, or in a details.person_ids list."""
    return _subject_or_detail("person", "person_id", person_id)


def _escape_like(text: str) -> str:
    """Text with LIKE's wildcards escaped (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def conditions(filters: AuditFilters) -> list[sa.ColumnElement[bool]]:
    """The WHERE conditions of the filters."""
    where: list[sa.ColumnElement[bool]] = []
    if filters.since is not None:
        where.append(AuditEvent.occurred_at >= filters.since)
    if filters.until is not None:
        where.append(AuditEvent.occurred_at < filters.until)
    if filters.actor_type is not None:
        where.append(AuditEvent.actor_type == filters.actor_type)
    if filters.actor_id is not None:
        where.append(AuditEvent.actor_id == filters.actor_id)
    if filters.action is not None:
        if ":" in filters.action and not filters.action.endswith(":"):
            where.append(AuditEvent.action == filters.action)
        else:
            prefix = _escape_like(filters.action.rstrip(":")) + ":%"
            where.append(AuditEvent.action.like(prefix, escape="\\"))
    if filters.person_id is not None:
        where.append(_subject_or_detail("person", "person_id", filters.person_id))
    if filters.media_id is not None:
        where.append(_subject_or_detail("media", "media_id", filters.media_id))
    if filters.text is not None:
        pattern = f"%{_escape_like(filters.text)}%"
        where.append(sa.cast(AuditEvent.details, sa.Text).ilike(pattern, escape="\\"))
    return where


def search(filters: AuditFilters, *, page: int = 1, per_page: int = 50) -> tuple[list[AuditEvent], int]:
    """One page of matching events, newest first, and how many match in all."""
    where = conditions(filters)
    total = db.session.execute(sa.select(sa.func.count()).select_from(AuditEvent).where(*where)).scalar_one()
    rows = db.session.execute(
        sa.select(AuditEvent).where(*where).order_by(AuditEvent.id.desc())
        .limit(per_page).offset((page - 1) * per_page)
    ).scalars().all()
    return list(rows), int(total)


def filter_events(*, since: datetime | None = None, until: datetime | None = None,
                  actor_id: int | None = None, action: str | None = None,
                  person_id: int | None = None, media_id: int | None = None,
                  text: str | None = None, page: int = 1, per_page: int = 50,
                  actor_type: str | None = None) -> tuple[list[AuditEvent], int]:
    """The shared interface: one page of matching events and the total (see `search`)."""
    filters = AuditFilters(since=since, until=until, actor_type=actor_type, actor_id=actor_id,
                           action=action, person_id=person_id, media_id=media_id, text=text)
    return search(filters, page=page, per_page=per_page)


def newest_id() -> int:
    """The id of the newest event (0 on an empty log), so an export ends where it began."""
    return int(db.session.execute(sa.select(sa.func.max(AuditEvent.id))).scalar_one() or 0)


def iter_events(filters: AuditFilters, *, up_to: int, batch: int = EXPORT_BATCH) -> Iterator[dict[str, Any]]:
    """Every matching event up to an id, oldest first, as plain dicts, a batch at a time.

    Each batch is read in its own short transaction, so a long download never holds SQLite's lock.
    """
    where = conditions(filters)
    last_id = 0
    while True:
        rows = db.session.execute(
            sa.select(AuditEvent).where(*where, AuditEvent.id > last_id, AuditEvent.id <= up_to)
            .order_by(AuditEvent.id).limit(batch)
        ).scalars().all()
        plain = [event_json(row) for row in rows]
        db.session.rollback()  # ends the read transaction and forgets the rows
        if not plain:
            return
        yield from plain
        last_id = plain[-1]["id"]


def event_json(event: AuditEvent) -> dict[str, Any]:
    """An event as JSON-ready data."""
    return {
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat(),
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "action": event.action,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }
