"""How far the analysis of some media items is, as JSON for the pages that follow it live.

The media list and a media page poll this while an item is queued or being analysed
(static/media_status.js); without JavaScript they refresh themselves instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Response, jsonify, request

from ..api.errors import ApiError
from ..auth.access import ANY_ROLE, allow
from ..db import db
from ..labels import label
from .models import Media
from .views import bp

MAX_IDS = 100
IN_PROGRESS = ("queued", "analysing")


def parse_ids(raw: str) -> list[int]:
    """Comma-separated item ids (1 to MAX_IDS of them), or a 400 naming the problem."""
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts or len(parts) > MAX_IDS or not all(p.isascii() and p.isdigit() and len(p) <= 10
                                                    for p in parts):
        raise ApiError(400, "invalid", f"ids: 1 to {MAX_IDS} comma-separated item numbers",
                       {"ids": f"1 to {MAX_IDS} comma-separated item numbers"})
    return sorted({int(p) for p in parts if 0 < int(p) < 2**31})


@bp.get("/status.json")
@allow(*ANY_ROLE)
def analysis_status() -> Response:
    """Status, progress and the status in words of each item asked for (unknown ids left out)."""
    ids = parse_ids(request.args.get("ids", ""))
    rows = db.session.execute(
        sa.select(Media.id, Media.status, Media.progress).where(Media.id.in_(ids))).all()
    db.session.rollback()  # nothing to write; end the read before the answer is sent
    items = [{"id": media_id, "status": status, "progress": progress,
              "status_label": label("media_status", status), "done": status not in IN_PROGRESS}
             for media_id, status, progress in rows]
    response = jsonify({"items": items})
    response.headers["Cache-Control"] = "no-store"
    return response
