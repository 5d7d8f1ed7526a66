"""Rate limits for the public pages reached from e-mailed links (Flask-Limiter)."""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Blueprint, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from .consent.paper_links import canonical_paper_token, looks_like_paper_token

# Storage comes from RATELIMIT_STORAGE_URI (see storage_uri): memory for one process, Redis when
# scaled out. The address is request.remote_addr, which ProxyFix sets to the client's address
# when TRUSTED_PROXIES says how many proxies to believe.
limiter = Limiter(key_func=get_remote_address)


def storage_uri(config: dict[str, Any]) -> str:
    """Where limits are counted: the setting, else Redis when jobs are in Redis, else memory."""
    if config.get("RATELIMIT_STORAGE_URI"):
        return config["RATELIMIT_STORAGE_URI"]
    # One memory counter per process would give each worker process its own budget.
    return config["REDIS_URL"] if config.get("JOBS") == "redis" else "memory://"


def link_key() -> str:
    """The link a request is for: a digest of its signed token (short, and never stored as is).

    A printed link can be typed in many spellings (case, dashes, O for 0): all count as one link.
    """
    token = str((request.view_args or {}).get("token", ""))
    if looks_like_paper_token(token):
        token = canonical_paper_token(token)
    return "link:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def _without_link() -> bool:
    """Pages without a token (asking for a manage link) have only the per-address limit."""
    return not (request.view_args or {}).get("token")


def asked_address_key() -> str:
    """The e-mail address a request for a manage link asks to mail (a digest of it)."""
    email = request.form.get("email", "").strip().lower()
    return "asked:" + hashlib.sha256(email.encode()).hexdigest()[:32]


def _not_asking_for_mail() -> bool:
    """Only posts that can make the site send mail count against the per-recipient limit."""
    return request.method != "POST" or "email" not in request.form


def limit_blueprint(blueprint: Blueprint) -> None:
    """Give all routes of a blueprint a shared limit per client address and one per link.

    The per-address limit is generous, so many parents behind one school network are not
    refused; the per-link limit holds back hammering of any one link, from any number of
    addresses. The limiter and blueprints live for the whole process while apps come and go
    (tests build many), so the limits are attached only once; their values are read from each
    app's config.
    """
    if getattr(blueprint, "_rate_limited", False):
        return
    limiter.shared_limit(lambda: current_app.config["PUBLIC_RATE_LIMIT"],
                         scope=f"blueprint:{blueprint.name}")(blueprint)
    limiter.shared_limit(lambda: current_app.config["PUBLIC_LINK_RATE_LIMIT"],
                         scope=f"blueprint:{blueprint.name}:link", key_func=link_key,
                         exempt_when=_without_link)(blueprint)
    # The generous per-address limit would let one address mail anyone in the register hundreds
    # of manage links a minute: mails asked for one recipient have their own, small budget.
    limiter.shared_limit(lambda: current_app.config["MANAGE_LINK_MAILS_LIMIT"],
                         scope=f"blueprint:{blueprint.name}:asked", key_func=asked_address_key,
                         exempt_when=_not_asking_for_mail)(blueprint)
    blueprint._rate_limited = True  # type: ignore[attr-defined]
