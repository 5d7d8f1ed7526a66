"""Asking for a publication from a page or the API: at most once per idempotency key.

One path for both, so a double click, a retried request and two racing requests end the same
way: one publication, and every other request answered with it (same key) or refused with the
publication that holds the item's place (AlreadyPublished).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..db import db
from .idempotency import KeyReused, KeyTaken, remember, replayed_publication
from .jobs import queue_publication
from .models import Publication
from .service import PublishBlocked, PublishRefused
from .slots import AlreadyPublished


@dataclass(frozen=True)
class Asked:
    """The publication that answers a request, and whether an earlier request created it."""

    publication_id: int
    replayed: bool


@dataclass(frozen=True)
class Key:
    """An idempotency key of one user for one request (its hash says what was asked)."""

    user_id: int
    value: str
    digest: str


def _replay(key: Key | None) -> Asked | None:
    """The earlier answer to this key, if any (KeyReused if it was for another request)."""
    if key is None:
        return None
    found = replayed_publication(user_id=key.user_id, key=key.value, digest=key.digest)
    return Asked(found, True) if found is not None else None


def ask_once(ask: Callable[[], Publication], *, key: Key | None) -> Asked:
    """Create the publication `ask` makes, commit and queue its job; or answer the key's earlier one.

    PublishRefused and AlreadyPublished leave nothing written (rolled back); PublishBlocked
    commits the gate's audit events first. KeyReused: the key was used for another request.
    """
    replay = _replay(key)
    if replay is not None:
        return replay
    try:
        publication = ask()
        if key is not None:
            remember(user_id=key.user_id, key=key.value, digest=key.digest,
                     publication_id=publication.id)
    except PublishRefused:
        db.session.rollback()
        raise
    except PublishBlocked:
        db.session.commit()  # keeps the gate:blocked events
        raise
    except (AlreadyPublished, KeyTaken) as exc:
        db.session.rollback()
        replay = _replay(key)  # a racing request with the same key won: answer with its publication
        if replay is not None:
            return replay
        if isinstance(exc, KeyTaken):
            raise KeyReused(exc.args[0]) from None
        raise
    publication_id = publication.id
    db.session.commit()
    queue_publication(publication_id)
    return Asked(publication_id, False)
