"""The start page and a health check."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify, redirect, send_from_directory, url_for
from werkzeug.wrappers import Response

from .auth.access import ANY_ROLE, allow, allow_public
from .db import db

bp = Blueprint("main", __name__)


@bp.get("/")
@allow(*ANY_ROLE)
def index() -> Response:
    """Staff land on the people register."""
    return redirect(url_for("people.list_people"))


@bp.get("/healthz")
@allow_public
def healthz() -> tuple[Response, int]:
    """Whether the service and its database answer; for load balancers."""
    try:
        db.session.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        return jsonify({"status": "unavailable"}), 503
    return jsonify({"status": "ok"}), 200


@bp.get("/favicon.ico")
@allow_public
def favicon() -> Response:
    """The site's icon where browsers look for it without being told (no login needed)."""
    return send_from_directory(current_app.static_folder or "static", "favicon.ico",
                               mimetype="image/vnd.microsoft.icon", max_age=86400)
