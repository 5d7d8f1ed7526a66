"""Serves the OpenAPI document."""

from __future__ import annotations

from flask import Response, jsonify

from ..auth.access import allow_public
from ..consent.service import channels
from . import bp
from .openapi import openapi_document


@bp.get("/openapi.json")
@allow_public
def openapi_json() -> Response:
    """The API's OpenAPI 3.1 document."""
    return jsonify(openapi_document(channels()))
