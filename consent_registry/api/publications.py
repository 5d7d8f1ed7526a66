"""API routes for publications: publish an item (or an album of photos) on a channel, read
publications, take one down."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from flask import Response, jsonify, request, url_for
from flask_babel import gettext as _
from pydantic import BaseModel, ConfigDict, Field

from ..auth.access import ANY_ROLE, allow
from ..consent.service import channels
from ..db import db
from ..media.models import Media, get_media
from ..publishing.asking import Asked, Key, ask_once
from ..publishing.idempotency import KeyReused, request_hash, valid_key
from ..publishing.models import CONNECTORS, PUBLICATION_STATES, Publication
from ..publishing.service import (
    ALBUM_MAX,
    ALBUM_MIN,
    CAPTION_MAX_LENGTH,
    PublishBlocked,
    PublishRefused,
    get_publication,
    page_of_publications,
    publication_json,
    request_album_publication,
    request_publication,
)
from ..publishing.slots import AlreadyPublished, active_publications, holder_json
from ..publishing.takedown import TakedownError, takedown_on_request
from . import bp
from .errors import ApiError, choice_arg, int_arg, json_object, page_size, validated
from .gate import GateBlocker
from .media import media_or_404
from .people import _actor

PUBLISHERS = ("admin", "communications")


class PublishIn(BaseModel):
    """A request to publish an item on one channel."""

    model_config = ConfigDict(extra="forbid", strict=True)

    channel: str = Field(min_length=1, max_length=32, description="A channel of this school")
    caption: str | None = Field(default=None, max_length=CAPTION_MAX_LENGTH)
    attest: bool = Field(default=False,
                         description="Literally true: every recognisable person is tagged "
                                     "(false or absent: the gate blocks with not_attested)")
    again: bool = Field(default=False,
                        description="Literally true: publish although the item is queued or live "
                                    "on the channel already (else 409 already_published)")


class AlbumPublishIn(PublishIn):
    """A request to publish 2 to 10 ready photos together as one post (Facebook only)."""

    media_ids: list[int] = Field(min_length=ALBUM_MIN, max_length=ALBUM_MAX,
                                 description="The photos, in the order of the post; each once")


class PublishBlocker(GateBlocker):
    """A blocker of a publish attempt; for an album, the item it concerns."""

    media_id: int | None = Field(default=None, description="Albums: the photo this blocker is about")


class LivePublication(BaseModel):
    """A publication that holds an item's place on a channel (queued or live)."""

    id: int
    channel: str
    state: Literal[PUBLICATION_STATES]  # type: ignore[valid-type]
    since: datetime = Field(description="Live since (or asked at, while queued)")
    post_id: str | None
    post_url: str | None = Field(description="Where the post can be seen (Facebook); null for "
                                             "exports and before it is live")
    media_ids: list[int | None]


class PublishOut(BaseModel):
    """A publication created and queued (for Facebook, the post id once it is live)."""

    publication_id: int
    post_id: str | None
    state: Literal[PUBLICATION_STATES]  # type: ignore[valid-type]


class PublicationOut(BaseModel):
    """A publication: where, when, by whom, its state, the gate's decision and its takedown."""

    id: int
    media_id: int | None = Field(description="The item (for an album: its first photo)")
    media_ids: list[int | None] = Field(description="Every item in order (null: deleted since)")
    media_sha256: str
    channel: str
    connector: Literal[CONNECTORS]  # type: ignore[valid-type]
    caption: str | None
    state: Literal[PUBLICATION_STATES]  # type: ignore[valid-type]
    attested: bool
    post_id: str | None
    attempts: int
    last_error: str | None
    published_by: int | None
    created_at: datetime
    published_at: datetime | None
    rendition_sha256: str | None
    person_ids: list[int]
    decision: dict[str, Any] = Field(description="The gate's decision when published: evaluated_at "
                                                 "and, per person, consent_record_ids and "
                                                 "valid_until (the proof)")
    takedown_reason: str | None
    takedown_requested_at: datetime | None
    takedown_attempts: int
    taken_down_at: datetime | None
    taken_down_by: int | None


class PublicationPage(BaseModel):
    """A page of publications, newest first."""

    items: list[PublicationOut]
    page: int
    per_page: int
    total: int



def _publication_or_404(publication_id: int) -> Publication:
    """The publication, or a 404 in the API's shape."""
    publication = get_publication(publication_id)
    if publication is None:
        raise ApiError(404, "not_found", _("No publication with this id."))
    return publication


def blocked_error(exc: PublishBlocked) -> ApiError:
    """The 409 of a blocked publish, listing every blocker."""
    blockers = []
    for blocker in exc.blockers_json():
        out = PublishBlocker.model_validate(blocker).model_dump()
        if out["media_id"] is None:  # a single item: the blocker as the gate gives it
            del out["media_id"]
        blockers.append(out)
    return ApiError(409, "blocked", _("The publication gate blocks this item on this channel."),
                    extra={"blockers": blockers})


@bp.post("/media/<int:media_id>/publish")
@allow(*PUBLISHERS)
def publish_media(media_id: int) -> tuple[Response, int, dict[str, str]]:
    """Publish an item on a channel if the gate allows it now (201), else 409 with the blockers."""
    media = media_or_404(media_id)
    document = json_object()
    key = _idempotency_key(document)
    data = validated(PublishIn, document)
    return _publish(lambda: request_publication(media, channel=data.channel, caption=data.caption,
                                                attested=data.attest is True, actor=_actor(),
                                                again=data.again is True), key=key)


def _idempotency_key(document: dict[str, Any]) -> Key | None:
    """The request's Idempotency-Key for this user and body, or None; a 422 if malformed."""
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return None
    if not valid_key(value):
        message = _("An Idempotency-Key is 1 to 255 visible ASCII characters.")
        raise ApiError(422, "invalid", message, {"Idempotency-Key": message})
    return Key(user_id=_actor().id or 0, value=value,
               digest=request_hash(route=request.path, payload=document))


def already_published_error(exc: AlreadyPublished) -> ApiError:
    """The 409 of an item queued or live on the channel already, naming those publications."""
    holders = active_publications(exc.media_ids, channel=exc.channel)
    return ApiError(409, "already_published",
                    _('This item is already queued or live on this channel; send "again": '
                      'true to publish it again.'),
                    extra={"publications": [holder_json(p) for p in holders]})


def _publish(ask: Callable[[], Publication], *,
             key: Key | None) -> tuple[Response, int, dict[str, str]]:
    """Ask for a publication once per key: 422 when refused, 409 (keeping the gate:blocked
    events) when blocked, 409 when already published, else 201 with its state (a replayed key:
    the same publication, 201)."""
    try:
        asked: Asked = ask_once(ask, key=key)
    except PublishRefused as exc:
        raise _refused(exc) from None
    except PublishBlocked as exc:
        raise blocked_error(exc) from None
    except AlreadyPublished as exc:
        raise already_published_error(exc) from None
    except KeyReused:
        message = _("This Idempotency-Key was used for a different request.")
        raise ApiError(422, "idempotency_key_reused", message,
                       {"Idempotency-Key": message}) from None
    publication_id = asked.publication_id
    publication = _publication_or_404(publication_id)
    db.session.refresh(publication)
    return (jsonify({"publication_id": publication.id, "post_id": publication.post_id,
                     "state": publication.state}), 201,
            {"Location": url_for("api.get_publication_route", publication_id=publication_id)})


def _refused(exc: PublishRefused) -> ApiError:
    """The 422 of a publication that may not even be asked for."""
    return ApiError(422, "invalid" if exc.field == "caption" else exc.code, exc.message,
                    {exc.field or "body": exc.message})


@bp.post("/publications")
@allow(*PUBLISHERS)
def publish_album() -> tuple[Response, int, dict[str, str]]:
    """Publish 2 to 10 photos as one post if the gate allows each now (201), else 409 with the
    blockers of every item (each with its media_id)."""
    document = json_object()
    key = _idempotency_key(document)
    data = validated(AlbumPublishIn, document)
    items: list[Media] = []
    for media_id in data.media_ids:
        media = get_media(media_id) if 0 < media_id < 2**31 else None
        if media is None:
            message = _("No media item with id %(id)s.", id=media_id)
            raise ApiError(422, "invalid", message, {"media_ids": message})
        items.append(media)
    return _publish(lambda: request_album_publication(
        items, channel=data.channel, caption=data.caption, attested=data.attest is True,
        actor=_actor(), again=data.again is True), key=key)


@bp.get("/publications")
@allow(*ANY_ROLE)
def list_publications() -> Response:
    """A page of publications, newest first, filtered by state, channel and media item."""
    state = choice_arg("state", PUBLICATION_STATES)
    channel = choice_arg("channel", channels())
    media_id = int_arg("media_id", default=0, minimum=1, maximum=2**31 - 1) or None
    page, per_page = int_arg("page", default=1, maximum=100_000), page_size()
    rows, total = page_of_publications(state=state, channel=channel, media_id=media_id, page=page,
                                       per_page=per_page)
    return jsonify({"items": [publication_json(p) for p in rows], "page": page,
                    "per_page": per_page, "total": total})


@bp.get("/publications/<int:publication_id>")
@allow(*ANY_ROLE)
def get_publication_route(publication_id: int) -> Response:
    """One publication with the gate's decision (the proof), its state and takedown."""
    return jsonify(publication_json(_publication_or_404(publication_id)))


@bp.delete("/publications/<int:publication_id>")
@allow(*PUBLISHERS)
def delete_publication(publication_id: int) -> tuple[Response, int]:
    """Take a publication down on request (reason by_staff); 202, the takedown follows."""
    publication = _publication_or_404(publication_id)
    try:
        takedown_on_request(publication, actor=_actor())
    except TakedownError as exc:
        db.session.rollback()
        raise ApiError(409, exc.code, exc.message) from None
    db.session.commit()  # a Facebook takedown job runs once this commits
    publication = _publication_or_404(publication_id)
    db.session.refresh(publication)
    return jsonify(publication_json(publication)), 202
