"""API tokens: random bearer secrets shown once, stored only as SHA-256."""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa

from ..audit import Actor, record
from ..db import db, utcnow
from .models import ApiToken, User

TOKEN_PREFIX = "crt_"  # noqa: S105 (a marker that makes leaked tokens easy to scan for, not a secret)


def token_digest(token: str) -> str:
    """SHA-256 of a token; tokens are long random strings, so no slow hash is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user: User, *, label: str, actor: Actor) -> str:
    """Create a token for a user and return it; this is the only time it is visible."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    api_token = ApiToken(user=user, token_hash=token_digest(token), label=label[:100])
    db.session.add(api_token)
    db.session.flush()
    record(
        "token:create",
        actor=actor,
        subject_type="user",
        subject_id=user.id,
        details={"token_id": api_token.id, "label": api_token.label},
    )
    return token


def user_for_token(token: str) -> User | None:
    """The active user a presented token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    api_token = db.session.execute(
        sa.select(ApiToken).where(
            ApiToken.token_hash == token_digest(token), ApiToken.revoked_at.is_(None)
        )
    ).scalar_one_or_none()
    if api_token is None or not api_token.user.active:
        return None
    return api_token.user


def revoke_token(api_token: ApiToken, *, actor: Actor, reason: str | None = None) -> None:
    """Revoke a token; it stops working at once (audited, with why when it was not asked for)."""
    if api_token.revoked_at is None:
        api_token.revoked_at = utcnow()
        record(
            "token:revoke",
            actor=actor,
            subject_type="user",
            subject_id=api_token.user_id,
            details={"token_id": api_token.id, **({"reason": reason} if reason else {})},
        )


def revoke_all_tokens(user: User, *, actor: Actor, reason: str) -> int:
    """Revoke every live token of a user (each audited); how many."""
    live = db.session.execute(
        sa.select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .order_by(ApiToken.id)).scalars().all()
    for api_token in live:
        revoke_token(api_token, actor=actor, reason=reason)
    return len(live)
