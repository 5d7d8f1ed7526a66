"""An item is published at most once per channel unless a human explicitly publishes it again.

Each publication takes a slot per item it shows (`PublicationSlot`); the slots' unique constraint,
not a check before the insert, is what makes two racing requests produce one publication. The
check before it is there to name the live publication in the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..db import db
from .models import Publication, PublicationMedia, PublicationSlot

# A publication in one of these states is (or is about to be) on its channel.
ACTIVE_STATES = ("queued", "publishing", "live", "takedown_pending")
# A publication that failed on an unanswered last step may be live all the same (publishing/jobs
# writes this prefix): it keeps its place until a person checked the Page and says `again`.
UNCERTAIN_PREFIX = "uncertain:"
FACEBOOK_POST_URL = "https://www.facebook.com/{post_id}"


def _holds_place() -> sa.ColumnElement[bool]:
    """Publications that keep an item's place on their channel: active, or failed uncertainly."""
    return sa.or_(Publication.state.in_(ACTIVE_STATES),
                  sa.and_(Publication.state == "failed",
                          Publication.last_error.startswith(UNCERTAIN_PREFIX)))


class AlreadyPublished(Exception):
    """An item is queued or live on the channel already; the caller rolls back and names them."""

    def __init__(self, media_ids: Sequence[int], channel: str) -> None:
        """Keep what was asked, so the answer can name what holds the place after the rollback."""
        super().__init__("already published on this channel")
        self.media_ids = list(media_ids)
        self.channel = channel


def _shows(media_id: int) -> sa.ColumnElement[bool]:
    """Publications showing the item: alone, or as one photo of an album."""
    in_album = sa.select(PublicationMedia.id).where(
        PublicationMedia.publication_id == Publication.id, PublicationMedia.media_id == media_id)
    return sa.or_(Publication.media_id == media_id, in_album.exists())


def active_publications(media_ids: Sequence[int], *, channel: str | None = None) -> list[Publication]:
    """Publications holding the place of any of the items (on the channel, if given), oldest first.

    Queued, live or being taken down, and also failed ones whose last step went unanswered.
    """
    if not media_ids:
        return []
    query = sa.select(Publication).where(_holds_place(), sa.or_(*(_shows(m) for m in media_ids)))
    if channel is not None:
        query = query.where(Publication.channel == channel)
    return list(db.session.execute(query.order_by(Publication.id)).scalars())


def refuse_if_active(media_ids: Sequence[int], *, channel: str, again: bool) -> None:
    """AlreadyPublished if an item is queued or live on the channel, unless asked `again`."""
    if not again and active_publications(media_ids, channel=channel):
        raise AlreadyPublished(media_ids, channel)


def take_slots(publication: Publication, *, media_ids: Sequence[int], channel: str,
               again: bool) -> None:
    """Take each item's place on the channel for a flushed publication, or raise AlreadyPublished.

    Without `again` each item takes number 0, which a racing request also wants: the loser fails
    on the unique constraint, whatever it saw before. With `again` each item takes the next number
    after the highest held. After AlreadyPublished the session must be rolled back (the failed
    insert leaves it unusable).
    """
    stale = (sa.select(PublicationSlot.id)
             .join(Publication, Publication.id == PublicationSlot.publication_id)
             .where(PublicationSlot.media_id.in_(media_ids), PublicationSlot.channel == channel,
                    sa.not_(_holds_place())))
    db.session.execute(sa.delete(PublicationSlot).where(PublicationSlot.id.in_(stale))
                       .execution_options(synchronize_session=False))
    for media_id in media_ids:
        number = 0
        if again:
            highest = db.session.execute(
                sa.select(sa.func.max(PublicationSlot.number)).where(
                    PublicationSlot.media_id == media_id, PublicationSlot.channel == channel)
            ).scalar_one()
            number = 0 if highest is None else highest + 1
        db.session.add(PublicationSlot(media_id=media_id, channel=channel, number=number,
                                       publication_id=publication.id))
    try:
        db.session.flush()
    except IntegrityError:
        raise AlreadyPublished(media_ids, channel) from None


class StillPublished(Exception):
    """An item queued or live somewhere may not be deleted until those publications are down."""

    def __init__(self, media_id: int) -> None:
        """Keep the item; the caller names its publications (after rolling back)."""
        super().__init__("the item is queued or live")
        self.media_id = media_id


def prepare_delete(media_id: int) -> None:
    """Let an item go only when nothing of it is queued or live: StillPublished otherwise.

    Slots of failed or taken-down publications are removed; an active slot stays, and its foreign
    key refuses the delete even if a publication was asked for since this check (the caller turns
    that IntegrityError into StillPublished too).
    """
    if active_publications([media_id]):
        raise StillPublished(media_id)
    stale = (sa.select(PublicationSlot.id)
             .join(Publication, Publication.id == PublicationSlot.publication_id)
             .where(PublicationSlot.media_id == media_id,
                    sa.not_(_holds_place())))
    db.session.execute(sa.delete(PublicationSlot).where(PublicationSlot.id.in_(stale))
                       .execution_options(synchronize_session=False))


def post_url(publication: Publication) -> str | None:
    """Where the post can be seen: the Facebook post's page; None for exports or before it is live."""
    if publication.connector == "facebook" and publication.post_id:
        return FACEBOOK_POST_URL.format(post_id=publication.post_id)
    return None


def since(publication: Publication) -> datetime:
    """Since when the publication holds its place: live since publishing, else since it was asked."""
    return publication.published_at or publication.created_at


def holder_json(publication: Publication) -> dict[str, Any]:
    """A publication holding an item's place, as the API's already_published answer names it."""
    return {"id": publication.id, "channel": publication.channel, "state": publication.state,
            "since": since(publication).isoformat(), "post_id": publication.post_id,
            "post_url": post_url(publication),
            "media_ids": [i.media_id for i in publication.items] or [publication.media_id]}
