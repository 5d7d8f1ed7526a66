"""Idempotency keys of publish requests: the same key (per user) answers the same publication.

A key is stored with the publication it created, in the same transaction, under a unique
(user, key) constraint: a retry, a double click or two racing requests with one key create one
publication. The same key with a different request is refused, never silently replayed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..db import db
from .models import IdempotencyKey

KEY_MAX_LENGTH = 255


class KeyReused(Exception):
    """The key was used before for a different request."""


class KeyTaken(Exception):
    """A racing request stored the same key first; the caller rolls back and looks again."""


def valid_key(key: str) -> bool:
    """A key is 1 to 255 visible ASCII characters (a UUID, say)."""
    return 0 < len(key) <= KEY_MAX_LENGTH and all(33 <= ord(c) <= 126 for c in key)


def request_hash(*, route: str, payload: dict[str, Any]) -> str:
    """SHA-256 of the route and the request's fields, key order and spacing ignored."""
    canonical = json.dumps({"route": route, "payload": payload}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def replayed_publication(*, user_id: int, key: str, digest: str) -> int | None:
    """The publication a key already created for this request; None if the key is new.

    Raises KeyReused when the key was stored for a different request.
    """
    row = db.session.execute(sa.select(IdempotencyKey).where(
        IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)).scalar_one_or_none()
    if row is None:
        return None
    if row.request_hash != digest:
        raise KeyReused(key)
    return row.publication_id


def remember(*, user_id: int, key: str, digest: str, publication_id: int) -> None:
    """Store the key with its publication in the caller's transaction; KeyTaken if raced."""
    db.session.add(IdempotencyKey(user_id=user_id, key=key, request_hash=digest,
                                  publication_id=publication_id))
    try:
        db.session.flush()
    except IntegrityError:
        raise KeyTaken(key) from None
