"""The API's error shape and the helpers that read requests without ever answering 500 to bad input."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import Response, current_app, jsonify, request
from flask_babel import gettext as _
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

M = TypeVar("M", bound=BaseModel)

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal_error",
}


class ApiError(Exception):
    """An error answered as {"error": {"code", "message", "fields"}} with an HTTP status."""

    def __init__(
        self, status: int, code: str, message: str, fields: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Keep everything the error body needs; `extra` adds keys (e.g. a gate's blockers)."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.extra = extra or {}


def error_response(error: ApiError) -> Response:
    """The JSON response for an ApiError."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.fields:
        body["fields"] = error.fields
    body.update(error.extra)
    response = jsonify({"error": body})
    response.status_code = error.status
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="consent-registry"'
    return response


def http_error_response(exc: HTTPException) -> Response:
    """A werkzeug HTTP error (404, 405, 413, ...) in the API's error shape."""
    status = exc.code or 500
    message = {
        401: _("A valid bearer token is required."),
        403: _("Your role does not allow this."),
        404: _("Not found."),
        405: _("This method is not allowed here."),
        413: _("The request is too large."),
    }.get(status, exc.description or exc.name)
    response = error_response(ApiError(status, ERROR_CODES.get(status, "error"), message))
    allowed = getattr(exc, "valid_methods", None)
    if status == 405 and allowed:
        response.headers["Allow"] = ", ".join(allowed)  # RFC 9110: a 405 names what is allowed
    return response


def _location(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a dotted field name, e.g. guardians.0.email."""
    return ".".join(str(part) for part in loc) or "body"


def _message(err: Any) -> str:
    """A translated message for one pydantic error; our own validators are translated already."""
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "missing" or (kind in ("string_too_short", "too_short") and ctx.get("min_length") == 1):
        return _("This field is required.")
    if kind in ("string_too_long", "too_long") and isinstance(err.get("input"), str):
        return _("Too long: at most %(n)s characters.", n=ctx.get("max_length"))
    if kind in ("string_too_long", "too_long"):
        return _("Too many: at most %(n)s.", n=ctx.get("max_length"))
    if kind == "literal_error":
        return _("Choose one of: %(choices)s.", choices=ctx.get("expected", ""))
    if kind.startswith("date"):
        return _("Not a valid date.")
    if kind == "extra_forbidden":
        return _("Unknown field.")
    if kind == "string_type":
        return _("Must be text.")
    if kind in ("list_type", "model_type", "dict_type", "model_attributes_type"):
        return _("Has the wrong type.")
    return str(err["msg"])


def validation_fields(exc: ValidationError) -> dict[str, str]:
    """Field name -> first message, from a pydantic validation error."""
    fields: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        fields.setdefault(_location(err["loc"]), _message(err))
    return fields


def _refuse_constant(name: str) -> None:
    """NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or an ApiError saying what is wrong with it."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", _("Send the body as application/json."))
    raw = request.get_data(cache=True)
    try:
        document = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", _("The body is not valid JSON: %(reason)s",
                                               reason=str(exc)[:200])) from None
    if not isinstance(document, dict):
        raise ApiError(400, "not_an_object", _("The body must be a JSON object."))
    return document


def validated(model: type[M], document: dict[str, Any]) -> M:
    """The document validated by a pydantic model, or a 422 naming every bad field."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise ApiError(422, "invalid", _("Some fields are invalid."), validation_fields(exc)) from None


def _bad_arg(name: str, reason: str) -> ApiError:
    """The 400 for one query argument."""
    return ApiError(400, "bad_request", _("Invalid query parameter."), {name: reason})


def choice_arg(name: str, choices: tuple[str, ...] | list[str]) -> str | None:
    """A query argument that must be one of `choices`; None when absent; a 400 otherwise (also empty)."""
    raw = request.args.get(name)
    if raw is not None and raw not in choices:
        raise _bad_arg(name, "must be one of " + ", ".join(choices))
    return raw


def text_arg(name: str, *, max_length: int) -> str | None:
    """A text query argument of at most max_length characters, None when absent, or a 400."""
    raw = request.args.get(name)
    if raw is not None and len(raw) > max_length:
        raise _bad_arg(name, f"must be at most {max_length} characters")
    return raw


def int_arg(name: str, *, default: int, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer query argument within bounds, the default when absent, or a 400 naming it."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        # ASCII digits only: int() would also read "²", " 7 " or "1_000", which no schema allows.
        value = int(raw) if raw.lstrip("-").isascii() and raw.lstrip("-").isdigit() else None
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        upper = f" and {maximum}" if maximum is not None else ""
        raise _bad_arg(name, f"must be a whole number between {minimum}{upper}")
    return value


def page_size() -> int:
    """The per_page argument within the configured maximum."""
    cfg = current_app.config
    return int_arg("per_page", default=cfg["PAGE_SIZE"], maximum=cfg["MAX_PAGE_SIZE"])
