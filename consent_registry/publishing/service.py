"""Requesting a publication: the gate evaluated again in the same transaction, then the proof kept.

A publication is created only when the gate allows the item on the channel at this moment; its
decision (with, per person, the consent records that allowed it) is stored as the proof the data
protection officer needs. The actual sending happens in `publishing.jobs` (`queue_publication`), queued after
the commit that makes the publication visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..audit import Actor, record
from ..consent.service import channels
from ..db import db, utcnow
from ..labels import channel_label
from ..media.models import Media
from ..translate import _
from .gate import GateDecision
from .gate_service import gate_for
from .models import PUBLICATION_STATES, Publication, PublicationMedia, PublicationPerson
from .slots import refuse_if_active, take_slots

CAPTION_MAX_LENGTH = 2000
# Photos in one album post. Facebook takes more through attached_media; ten keeps posts reviewable.
ALBUM_MIN, ALBUM_MAX = 2, 10
# Channels with a connector of their own; every other channel is published as an export.
CONNECTOR_OF = {"facebook": "facebook"}
FACEBOOK_KINDS = ("photo", "video")
# Taggings that put a person in a publication: shown, or blurred but still tagged.
SHOWN_RESOLUTIONS = ("identified", "blur")


class PublishBlocked(Exception):
    """The gate blocks the item on the channel now; `decision` says why.

    For an album, `decisions` holds (media id, decision) for every blocked item and `decision` is
    the first of them; `blockers_json()` lists every blocker with its media id.
    """

    def __init__(self, decision: GateDecision,
                 decisions: Sequence[tuple[int, GateDecision]] | None = None) -> None:
        """Keep the decision(s) for the API and the page."""
        super().__init__("blocked by the publication gate")
        self.decision = decision
        self.decisions = list(decisions or ())

    def blockers_json(self) -> list[dict[str, Any]]:
        """Every blocker, JSON-ready; with `media_id` for an album's items."""
        if not self.decisions:
            return [b.as_json() for b in self.decision.blockers]
        return [{**b.as_json(), "media_id": media_id}
                for media_id, decision in self.decisions for b in decision.blockers]


class PublishRefused(ValueError):
    """A publication that may not even be asked for (e.g. audio on Facebook); `field` names why."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        """Keep the code, the translated message and the field."""
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def connector_for(channel: str) -> str:
    """The connector that publishes on a channel: its own, or an export downloaded by staff."""
    return CONNECTOR_OF.get(channel, "export")


def check_caption(*, channel: str, caption: str | None) -> None:
    """Refuse a caption longer than the channel takes, naming the limit (never cut it short)."""
    if caption is not None and len(caption) > CAPTION_MAX_LENGTH:
        raise PublishRefused("invalid", _(
            "The caption has %(length)s characters; %(channel)s takes at most %(n)s.",
            length=len(caption), channel=channel_label(channel), n=CAPTION_MAX_LENGTH),
            field="caption")


def check_request(*, kind: str, channel: str, known_channels: tuple[str, ...],
                  caption: str | None) -> None:
    """Refuse what no gate decision could allow: unknown channel, audio on Facebook, long captions."""
    if channel not in known_channels:
        raise PublishRefused("unknown_channel", _("Not a channel of this school."), field="channel")
    if connector_for(channel) == "facebook" and kind not in FACEBOOK_KINDS:
        raise PublishRefused("not_publishable",
                             _("Only photos and videos can be published on Facebook."),
                             field="channel")
    check_caption(channel=channel, caption=caption)


def shown_people(media: Media) -> dict[int, list[int]]:
    """Person id -> the ids of the appearances tagging them (identified or blurred), in order."""
    shown: dict[int, list[int]] = {}
    for appearance in sorted(media.appearances, key=lambda a: a.id):
        if appearance.person_id is not None and appearance.resolution in SHOWN_RESOLUTIONS:
            shown.setdefault(appearance.person_id, []).append(appearance.id)
    return shown


def decision_json(decision: GateDecision, media: Media, at: datetime) -> dict[str, Any]:
    """The gate's decision with the moment and, per person, the appearances: the stored proof."""
    document = decision.as_json()
    shown = shown_people(media)
    document["evaluated_at"] = at.isoformat()
    document["kind"] = media.kind
    for person in document["people"]:
        person["appearance_ids"] = shown.get(person["person_id"], [])
    document["appearances"] = [
        {"appearance_id": a.id, "kind": a.kind, "resolution": a.resolution, "person_id": a.person_id}
        for a in sorted(media.appearances, key=lambda a: a.id)
    ]
    return document


def blocker_reasons(decision: GateDecision) -> list[str]:
    """The distinct reasons of a blocking decision, sorted (no names: safe for the audit log)."""
    return sorted({b.reason for b in decision.blockers})


def request_publication(media: Media, *, channel: str, caption: str | None, attested: bool,
                        actor: Actor, known_channels: tuple[str, ...] | None = None,
                        at: datetime | None = None, again: bool = False) -> Publication:
    """Create a queued publication if the gate allows it now; else audit and raise PublishBlocked.

    An item queued or live on the channel raises AlreadyPublished unless `again` (a human
    explicitly publishes it again); the caller then rolls back. The caller commits (also after
    PublishBlocked, so the `gate:blocked` event is kept) and then queues the publication's job with the
    returned publication's id.
    """
    moment = at or utcnow()
    check_request(kind=media.kind, channel=channel, known_channels=known_channels or channels(),
                  caption=caption)
    refuse_if_active([media.id], channel=channel, again=again)
    decision = gate_for(media, channel, attested=attested, at=moment)
    if not decision.allowed:
        record("gate:blocked", actor=actor, subject_type="media", subject_id=media.id,
               details={"channel": channel, "reasons": blocker_reasons(decision),
                        "blockers": len(decision.blockers)})
        raise PublishBlocked(decision)
    publication = Publication(
        media_id=media.id, media_sha256=media.sha256, channel=channel,
        connector=connector_for(channel), caption=caption or None, state="queued",
        attested=attested, decision=decision_json(decision, media, moment), remote={},
        published_by=actor.id if actor.type == "user" else None, created_at=moment,
    )
    publication.people = [PublicationPerson(person_id=pid) for pid in sorted(shown_people(media))]
    db.session.add(publication)
    db.session.flush()
    take_slots(publication, media_ids=[media.id], channel=channel, again=again)
    record("publication:create", actor=actor, subject_type="publication", subject_id=publication.id,
           details={"media_id": media.id, "channel": channel, "connector": publication.connector,
                    "person_ids": [p.person_id for p in publication.people], "attested": attested,
                    **({"again": True} if again else {})})
    return publication


def _album_people(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Everyone shown in any photo of an album, once, with the items and appearances showing them."""
    merged: dict[int, dict[str, Any]] = {}
    for item in items:
        for person in item["people"]:
            entry = merged.setdefault(person["person_id"], {**person, "appearance_ids": [],
                                                            "media_ids": []})
            entry["appearance_ids"] = [*entry["appearance_ids"], *person.get("appearance_ids", [])]
            entry["media_ids"] = [*entry["media_ids"], item["media_id"]]
    return [merged[pid] for pid in sorted(merged)]


def check_album(media_items: Sequence[Media], *, channel: str,
                known_channels: tuple[str, ...], caption: str | None) -> None:
    """Refuse an album no gate decision could allow: size, duplicates, non-photos, not ready, exports.

    Albums go to channels with a connector only (Facebook): an export is one downloadable file,
    so an album on an export channel is refused (publish its photos one by one instead).
    """
    if not ALBUM_MIN <= len(media_items) <= ALBUM_MAX:
        raise PublishRefused("invalid", _("An album has %(min)s to %(max)s photos.",
                                          min=ALBUM_MIN, max=ALBUM_MAX), field="media_ids")
    ids = [m.id for m in media_items]
    if len(set(ids)) != len(ids):
        raise PublishRefused("invalid", _("Each photo may appear only once in an album."),
                             field="media_ids")
    if channel not in known_channels:
        raise PublishRefused("unknown_channel", _("Not a channel of this school."), field="channel")
    if connector_for(channel) == "export":
        raise PublishRefused("not_publishable",
                             _("Albums can only be published on Facebook; publish the photos of "
                               "an export one by one."), field="channel")
    if any(m.kind != "photo" for m in media_items):
        raise PublishRefused("not_publishable", _("An album holds photos only."), field="media_ids")
    if any(m.status != "ready" for m in media_items):
        raise PublishRefused("not_ready", _("Every photo of an album must be analysed first."),
                             field="media_ids")
    check_caption(channel=channel, caption=caption)


def request_album_publication(media_items: Sequence[Media], *, channel: str, caption: str | None,
                              attested: bool, actor: Actor,
                              known_channels: tuple[str, ...] | None = None,
                              at: datetime | None = None, again: bool = False) -> Publication:
    """Create one queued publication of 2 to 10 photos posted together, if the gate allows each now.

    Each photo follows the single item's rule: one queued or live on the channel (alone or in
    another album) raises AlreadyPublished unless `again`.

    The gate is evaluated for every item at the same moment, in the caller's transaction. Any
    blocked item blocks the album: one `gate:blocked` event per blocked item, then PublishBlocked
    with every blocker and its media id. The caller commits (also after PublishBlocked) and then
    queues the publication's job with the returned publication's id.
    """
    moment = at or utcnow()
    items = list(media_items)
    check_album(items, channel=channel, known_channels=known_channels or channels(),
                caption=caption)
    refuse_if_active([m.id for m in items], channel=channel, again=again)
    decisions = [(media, gate_for(media, channel, attested=attested, at=moment)) for media in items]
    blocked = [(media.id, decision) for media, decision in decisions if not decision.allowed]
    if blocked:
        album = [m.id for m in items]
        for media_id, decision in blocked:
            record("gate:blocked", actor=actor, subject_type="media", subject_id=media_id,
                   details={"channel": channel, "reasons": blocker_reasons(decision),
                            "blockers": len(decision.blockers), "album_media_ids": album})
        raise PublishBlocked(blocked[0][1], blocked)
    documents = [{"media_id": media.id, "position": position,
                  **decision_json(decision, media, moment)}
                 for position, (media, decision) in enumerate(decisions)]
    first = items[0]
    publication = Publication(
        media_id=first.id, media_sha256=first.sha256, channel=channel,
        connector=connector_for(channel), caption=caption or None, state="queued",
        attested=attested, remote={}, created_at=moment,
        decision={"allowed": True, "album": True, "evaluated_at": moment.isoformat(),
                  "kind": "album", "blockers": [], "people": _album_people(documents),
                  "items": documents},
        published_by=actor.id if actor.type == "user" else None,
    )
    publication.items = [PublicationMedia(media_id=m.id, media_sha256=m.sha256, position=position)
                         for position, m in enumerate(items)]
    shown = sorted({pid for m in items for pid in shown_people(m)})
    publication.people = [PublicationPerson(person_id=pid) for pid in shown]
    db.session.add(publication)
    db.session.flush()
    take_slots(publication, media_ids=[m.id for m in items], channel=channel, again=again)
    record("publication:create", actor=actor, subject_type="publication", subject_id=publication.id,
           details={"media_id": first.id, "media_ids": [m.id for m in items], "channel": channel,
                    "connector": publication.connector, "person_ids": shown,
                    "attested": attested, **({"again": True} if again else {})})
    return publication


def media_ids_of(publication: Publication) -> list[int | None]:
    """The items of a publication in order: an album's photos, or its one item."""
    if publication.items:
        return [item.media_id for item in publication.items]
    return [publication.media_id]


def get_publication(publication_id: int) -> Publication | None:
    """A publication by id, or None (also for ids out of range)."""
    if not 0 < publication_id < 2**31:
        return None
    return db.session.get(Publication, publication_id)


def page_of_publications(*, state: str | None = None, channel: str | None = None,
                         media_id: int | None = None, page: int = 1,
                         per_page: int = 50) -> tuple[list[Publication], int]:
    """A page of publications, newest first, filtered; and how many match in all."""
    query = sa.select(Publication)
    if state is not None:
        if state not in PUBLICATION_STATES:
            raise ValueError(f"unknown state {state!r}")
        query = query.where(Publication.state == state)
    if channel is not None:
        query = query.where(Publication.channel == channel)
    if media_id is not None:
        in_album = sa.select(PublicationMedia.id).where(
            PublicationMedia.publication_id == Publication.id, PublicationMedia.media_id == media_id)
        query = query.where(sa.or_(Publication.media_id == media_id, in_album.exists()))
    total = db.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = db.session.execute(query.order_by(Publication.id.desc())
                              .limit(per_page).offset((page - 1) * per_page)).scalars().all()
    return list(rows), total


def publication_json(publication: Publication) -> dict[str, Any]:
    """A publication for the API: state, post id, proof and takedown."""
    def when(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "id": publication.id, "media_id": publication.media_id,
        "media_ids": media_ids_of(publication),
        "media_sha256": publication.media_sha256, "channel": publication.channel,
        "connector": publication.connector, "caption": publication.caption,
        "state": publication.state, "attested": publication.attested,
        "post_id": publication.post_id, "attempts": publication.attempts,
        "last_error": publication.last_error, "published_by": publication.published_by,
        "created_at": when(publication.created_at), "published_at": when(publication.published_at),
        "rendition_sha256": publication.rendition_sha256,
        "person_ids": [p.person_id for p in publication.people],
        "decision": publication.decision,
        "takedown_reason": publication.takedown_reason,
        "takedown_requested_at": when(publication.takedown_requested_at),
        "takedown_attempts": publication.takedown_attempts,
        "taken_down_at": when(publication.taken_down_at),
        "taken_down_by": publication.taken_down_by,
    }
