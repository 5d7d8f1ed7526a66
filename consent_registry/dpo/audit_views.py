"""The DPO's audit browser: search and page events, export them (CSV, JSON Lines), verify the chain."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, current_app, render_template, request, url_for
from flask_login import current_user

from ..audit import ACTOR_TYPES, Actor, AuditEvent, record
from ..auth.access import allow
from ..db import db
from . import bp
from .audit_query import AuditFilters, BadFilter, event_json, iter_events, newest_id, parse_filters, search
from .audit_verify import recent_verifications, run_verification

READERS = ("admin", "dpo")
CSV_COLUMNS = ("id", "occurred_at", "actor_type", "actor_id", "action", "subject_type", "subject_id",
               "details", "prev_hash", "hash")
# Subject type -> (endpoint, its argument); the person's file is preferred when it exists.
SUBJECT_PAGES = {
    "person": (("dpo.person_file_page", "people.detail"), "person_id"),
    "media": (("media.detail",), "media_id"),
    "publication": (("publications.detail",), "publication_id"),
    "consent_request": (("consent.request_detail",), "request_id"),
}


def _actor() -> Actor:
    """The logged-in user as an audit actor."""
    return Actor("user", current_user.id)


def subject_url(event: AuditEvent) -> str | None:
    """The page of an event's subject, if it has one."""
    page = SUBJECT_PAGES.get(event.subject_type or "")
    if page is None or not (event.subject_id or "").isdigit():
        if isinstance(event.details, dict) and isinstance(event.details.get("media_id"), int):
            return url_for("media.detail", media_id=event.details["media_id"])
        return None
    endpoints, argument = page
    endpoint = next(e for e in endpoints if e in current_app.view_functions)
    return url_for(endpoint, **{argument: int(event.subject_id or 0)})


def _page_number() -> int:
    """The page argument, or BadFilter."""
    raw = request.args.get("page") or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= 100_000:
        raise BadFilter("page", "must be a whole number between 1 and 100000")
    return int(raw)


@bp.get("/audit")
@allow(*READERS)
def audit() -> tuple[str, int]:
    """Search the audit log: filters, newest first, paged; each event links to its subject."""
    per_page = current_app.config["PAGE_SIZE"]
    try:
        filters, page = parse_filters(request.args), _page_number()
    except BadFilter as exc:
        return render_template("dpo/audit.html", error=exc, filters=AuditFilters(), args={},
                               items=[], total=0, page=1, pages=1, actor_types=ACTOR_TYPES,
                               subject_url=subject_url), 400
    rows, total = search(filters, page=page, per_page=per_page)
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template("dpo/audit.html", error=None, filters=filters, args=args, items=rows,
                           total=total, page=page, pages=max(1, math.ceil(total / per_page)),
                           actor_types=ACTOR_TYPES, subject_url=subject_url), 200


def _start_export(kind: str) -> tuple[AuditFilters, int] | Response:
    """Parse the filters and audit the export before anything streams; a 400 page on bad filters."""
    try:
        filters = parse_filters(request.args)
    except BadFilter as exc:
        return Response(render_template("dpo/audit.html", error=exc, filters=AuditFilters(), args={},
                                        items=[], total=0, page=1, pages=1, actor_types=ACTOR_TYPES,
                                        subject_url=subject_url), status=400)
    record("audit:export", actor=_actor(), details={"format": kind, "filters": filters.as_args()})
    db.session.flush()
    up_to = newest_id()  # the export holds the log up to and including its own event
    db.session.commit()  # the export is on record before a byte leaves, and no lock is held
    return filters, up_to


def _safe_cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_lines(filters: AuditFilters, up_to: int) -> Iterator[str]:
    """The CSV header and one line per event, written as they are read."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for event in iter_events(filters, up_to=up_to):
        writer.writerow([_safe_cell(event[column]) for column in CSV_COLUMNS])
        yield flush()


def _jsonl_lines(filters: AuditFilters, up_to: int) -> Iterator[str]:
    """One JSON object per line per event."""
    for event in iter_events(filters, up_to=up_to):
        yield json.dumps(event, sort_keys=True, ensure_ascii=False) + "\n"


def _in_app_context(app: Flask, lines: Iterator[str]) -> Iterator[str]:
    """Advance a generator inside an app context each step, whichever context the server iterates in."""
    while True:
        with app.app_context():
            line = next(lines, None)
        if line is None:
            return
        yield line


def _download(lines: Iterator[str], mimetype: str, filename: str) -> Response:
    """A streamed download: lines are read and written a batch at a time, never all in memory."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return Response(_in_app_context(app, lines), mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


@bp.get("/audit.csv")
@allow(*READERS)
def audit_csv() -> Response:
    """The filtered events as CSV, streamed; the export itself is audited."""
    started = _start_export("csv")
    if isinstance(started, Response):
        return started
    return _download(_csv_lines(*started), "text/csv", "audit.csv")


@bp.get("/audit.jsonl")
@allow(*READERS)
def audit_jsonl() -> Response:
    """The filtered events as JSON Lines, streamed; the export itself is audited."""
    started = _start_export("jsonl")
    if isinstance(started, Response):
        return started
    return _download(_jsonl_lines(*started), "application/jsonl", "audit.jsonl")


@bp.get("/audit/verify")
@allow(*READERS)
def audit_verify() -> str:
    """Verify the chain now (the run is recorded) and show the result and the previous runs."""
    previous = [{**event_json(e), "when": e.occurred_at} for e in recent_verifications()]
    report = run_verification(_actor())
    db.session.commit()
    return render_template("dpo/audit_verify.html", report=report, previous=previous)
