"""JSON API v1 under /api/v1, described by an OpenAPI 3.1 document."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import appearances, biometrics, consents, docs, gate, media, people, publications  # noqa: E402,F401  (routes register on import)
