"""Rate limits for the public pages reached from e-mailed links (Flask-Limiter)."""

from __future__ import annotations

from flask import Blueprint, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

# Storage comes from RATELIMIT_STORAGE_URI: memory for one process, redis:// when scaled out.
limiter = Limiter(key_func=get_remote_address)


def limit_blueprint(blueprint: Blueprint) -> None:
    """Apply the configured public rate limit to every route of a blueprint."""
    limiter.limit(lambda: current_app.config["PUBLIC_RATE_LIMIT"])(blueprint)
