"""Error pages and API error bodies: bad input never becomes a 500."""

from __future__ import annotations

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.wrappers import Response

from .api.errors import ApiError, error_response, http_error_response
from .auth.access import is_api_request
from .db import db


def _page(exc: HTTPException) -> tuple[str, int, dict[str, str]]:
    """A translated HTML error page; a 405 names the allowed methods (RFC 9110)."""
    allowed = getattr(exc, "valid_methods", None)
    headers = {"Allow": ", ".join(allowed)} if exc.code == 405 and allowed else {}
    return render_template("error.html", status=exc.code or 500), exc.code or 500, headers


def handle_http_error(exc: HTTPException) -> Response | tuple[str, int] | tuple[str, int, dict[str, str]]:
    """Werkzeug errors: JSON for the API, a page elsewhere."""
    if isinstance(exc, CSRFError) and not is_api_request():
        return render_template("error.html", status=400, csrf=True), 400
    return http_error_response(exc) if is_api_request() else _page(exc)


def handle_api_error(exc: ApiError) -> Response:
    """Errors raised by API views."""
    db.session.rollback()
    return error_response(exc)


def handle_unexpected(exc: Exception) -> Response | tuple[str, int]:
    """Anything unforeseen: roll back, log, and answer 500 in the right shape."""
    db.session.rollback()
    from flask import current_app

    current_app.logger.exception("unhandled error", exc_info=exc)
    if is_api_request():
        return error_response(ApiError(500, "internal_error", "Something went wrong."))
    return _page(InternalServerError())


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(Exception, handle_unexpected)
