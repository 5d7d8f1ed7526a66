"""JSON API v1 under /api/v1, described by an OpenAPI 3.1 document."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import (  # noqa: E402,F401  (routes register on import)
    appearances,
    audit,
    biometrics,
    consents,
    docs,
    dpo_export,
    dpo_files,
    gate,
    media,
    people,
    publications,
)
