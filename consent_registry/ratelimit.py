"""Rate limits for the public pages reached from e-mailed links (Flask-Limiter)."""

from __future__ import annotations

from flask import Blueprint, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

# Storage comes from RATELIMIT_STORAGE_URI: memory for one process, redis:// when scaled out.
limiter = Limiter(key_func=get_remote_address)


def limit_blueprint(blueprint: Blueprint) -> None:
    """Give all routes of a blueprint one shared, configured rate limit per client address.

    The limiter and blueprints live for the whole process while apps come and go (tests build
    many), so the limit is attached only once; the limit value is read from each app's config.
    """
    if getattr(blueprint, "_rate_limited", False):
        return
    limiter.shared_limit(lambda: current_app.config["PUBLIC_RATE_LIMIT"],
                         scope=f"blueprint:{blueprint.name}")(blueprint)
    blueprint._rate_limited = True  # type: ignore[attr-defined]
