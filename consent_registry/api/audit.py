"""API route for the DPO: search the audit log (read-only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response, jsonify, request
from pydantic import BaseModel

from ..auth.access import allow
from ..dpo.audit_query import BadFilter, event_json, parse_filters, search
from ..translate import _
from . import bp
from .errors import ApiError, int_arg, page_size

READERS = ("admin", "dpo")
TYPED_ARGS = ("since", "until", "actor_type", "actor_id", "person_id", "media_id")


class AuditEventOut(BaseModel):
    """One audit event, with the hashes that chain it to the one before."""

    id: int
    occurred_at: datetime
    actor_type: str
    actor_id: int | None
    action: str
    subject_type: str | None
    subject_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    """A page of audit events, newest first."""

    items: list[AuditEventOut]
    page: int
    per_page: int
    total: int


@bp.get("/audit")
@allow(*READERS)
def list_audit_events() -> Response:
    """A page of audit events, newest first, filtered by time, actor, action, person, media, text."""
    # The pages' form sends blank fields for "any"; the API's typed arguments are given or left out.
    for name in TYPED_ARGS:
        if request.args.get(name) == "":
            raise ApiError(400, "bad_request", _("Invalid query parameter."), {name: "must not be empty"})
    try:
        filters = parse_filters(request.args)
    except BadFilter as exc:
        raise ApiError(400, "bad_request", _("Invalid query parameter."), {exc.field: exc.message}) from None
    page, per_page = int_arg("page", default=1, maximum=100_000), page_size()
    rows, total = search(filters, page=page, per_page=per_page)
    return jsonify({"items": [event_json(e) for e in rows], "page": page, "per_page": per_page,
                    "total": total})
