"""Server-side sessions: the cookie names one, logging out ends it, a replayed cookie is refused."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa
from flask import session

from ..db import db, utcnow
from .models import User, UserSession

SESSION_KEY = "sid"  # the key of the session's row, in the signed cookie
# Sessions never logged out are forgotten after this long (the user logs in again).
ABANDONED_AFTER = timedelta(days=30)


def _digest(key: str) -> str:
    """SHA-256 of a session key: the table holds nothing a cookie could be made from."""
    return hashlib.sha256(key.encode()).hexdigest()


def start_session(user: User) -> None:
    """Record a new session for the user (in the caller's transaction) and name it in the cookie."""
    key = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.execute(sa.delete(UserSession).where(UserSession.created_at < now - ABANDONED_AFTER))
    db.session.add(UserSession(user_id=user.id, key_hash=_digest(key), created_at=now))
    session[SESSION_KEY] = key


def session_is_live(user_id: int) -> bool:
    """Whether the cookie names a session of this user that has not ended."""
    key = session.get(SESSION_KEY)
    if not isinstance(key, str) or not key:
        return False
    return db.session.execute(
        sa.select(UserSession.id).where(UserSession.key_hash == _digest(key),
                                        UserSession.user_id == user_id,
                                        UserSession.created_at >= utcnow() - ABANDONED_AFTER)
    ).first() is not None


def end_session() -> None:
    """End the cookie's session (in the caller's transaction): a saved copy no longer logs in."""
    key = session.pop(SESSION_KEY, None)
    if isinstance(key, str) and key:
        db.session.execute(sa.delete(UserSession).where(UserSession.key_hash == _digest(key)))
