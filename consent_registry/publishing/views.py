"""Pages for publications: publish from the media page, follow progress, see the proof, takedowns."""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..audit import Actor, record
from ..auth.access import ANY_ROLE, allow
from ..confirm import confirmation_page, confirmed
from ..db import db
from ..media.models import Media, get_media
from ..people.models import Person
from ..storage import StorageKeyError, get_storage
from ..translate import _
from .asking import Asked, Key, ask_once
from .idempotency import KeyReused, request_hash, valid_key
from .jobs import facebook_stopped_message
from .models import PUBLICATION_STATES, Publication
from .renditions import CONTENT_TYPES, EXTENSIONS
from .service import (
    PublishBlocked,
    PublishRefused,
    get_publication,
    page_of_publications,
    request_album_publication,
    request_publication,
)
from .slots import AlreadyPublished, active_publications, post_url, since
from .takedown import TakedownError, confirm_removed_by_hand, takedown_on_request

bp = Blueprint("publications", __name__, url_prefix="/publications")
log = logging.getLogger(__name__)


@bp.app_context_processor
def _channel_titles() -> dict[str, Any]:
    """`channel_title(code)`: a channel's title in the page's language (the code if unknown)."""
    from .gate_views import channel_titles

    return {"channel_title": lambda code: channel_titles().get(code, code)}


@bp.app_context_processor
def _publish_forms() -> dict[str, Any]:
    """`new_form_key()`: a fresh idempotency key for a publish form; `post_url`, `live_since`."""
    return {"new_form_key": lambda: uuid.uuid4().hex, "post_url": post_url, "live_since": since}

PUBLISHERS = ("admin", "communications")
DOWNLOADERS = ("admin", "communications", "dpo")


def _actor() -> Actor:
    """The audit actor for the logged-in user."""
    return Actor("user", current_user.id)


def _publication_or_404(publication_id: int) -> Publication:
    """The publication, or 404."""
    publication = get_publication(publication_id)
    if publication is None:
        abort(404)
    return publication


def _names(person_ids: list[int]) -> dict[int, str]:
    """Display names of people by id (staff pages only)."""
    if not person_ids:
        return {}
    rows = db.session.query(Person).filter(Person.id.in_(person_ids)).all()
    return {p.id: p.full_name for p in rows}


@bp.get("/")
@allow(*ANY_ROLE)
def list_publications() -> str:
    """Publications, newest first, by state; export takedowns are tasks for staff."""
    state = request.args.get("state") if request.args.get("state") in PUBLICATION_STATES else None
    per_page = current_app.config["PAGE_SIZE"]
    page = max(1, request.args.get("page", 1, type=int) or 1)
    rows, total = page_of_publications(state=state, page=page, per_page=per_page)
    tasks, _count = page_of_publications(state="takedown_pending", page=1, per_page=200)
    return render_template(
        "publications/list.html", items=rows, total=total, page=page, state=state,
        pages=max(1, math.ceil(total / per_page)), states=PUBLICATION_STATES,
        tasks=[t for t in tasks if t.connector == "export"],
        can_publish=current_user.role in PUBLISHERS,
        stopped=facebook_stopped_message() if current_user.role == "admin" else None,
    )


@bp.get("/<int:publication_id>")
@allow(*ANY_ROLE)
def detail(publication_id: int) -> str:
    """One publication: progress, the proof per person, the takedown; exports can be downloaded."""
    publication = _publication_or_404(publication_id)
    people: list[dict[str, Any]] = list(publication.decision.get("people", []))
    names = _names([p["person_id"] for p in people] + [p.person_id for p in publication.people])
    return render_template(
        "publications/detail.html", publication=publication, people=people, names=names,
        media=get_media(publication.media_id) if publication.media_id else None,
        can_publish=current_user.role in PUBLISHERS,
        can_download=current_user.role in DOWNLOADERS,
        in_progress=publication.state in ("queued", "publishing", "takedown_pending"),
    )


def _form_key() -> Key | None:
    """The form's idempotency key (made when the form was shown) for this user and these values."""
    value = request.form.get("idempotency_key", "")
    if not valid_key(value):
        return None
    fields = {name: request.form.getlist(name) for name in sorted(request.form)
              if name not in ("csrf_token", "idempotency_key")}
    return Key(user_id=current_user.id, value="page:" + value,
               digest=request_hash(route=request.path, payload=fields))


def _started(asked: Asked) -> Response:
    """To the publication's progress; a repeated form (double click, back button) creates nothing."""
    if asked.replayed:
        flash(_("This form was sent already; this page shows the publication it started."), "info")
    else:
        flash(_("Publishing has started; this page shows how far it is."), "success")
    return redirect(url_for("publications.detail", publication_id=asked.publication_id))


def _already(exc: AlreadyPublished, *, media: Media | None, items: list[Media]) -> tuple[str, int]:
    """The page naming the live publications, with a separate confirmation to publish again."""
    return render_template(
        "publications/already.html", media=media, items=items, channel=exc.channel,
        holders=active_publications(exc.media_ids, channel=exc.channel),
        caption=request.form.get("caption", ""), attest=request.form.get("attest") == "yes"), 409


def _form_reused(media: Media | None, channel: str) -> tuple[str, int]:
    """The page for a form sent again with other values under the same key."""
    return render_template(
        "publications/blocked.html", media=media, album=media is None, items={}, blockers=[],
        names={}, channel=channel,
        error=_("This form was sent already with other values. Open the item again to publish.")), 409


@bp.post("/media/<int:media_id>")
@allow(*PUBLISHERS)
def publish(media_id: int) -> Response | tuple[str, int]:
    """Publish from the media page; blocked: the blockers; live already: ask to confirm again;
    else to the publication's progress."""
    media = get_media(media_id)
    if media is None:
        abort(404)
    channel = request.form.get("channel", "")
    caption = request.form.get("caption", "").strip() or None
    attested = request.form.get("attest") == "yes"
    again = request.form.get("again") == "yes"
    try:
        asked = ask_once(lambda: request_publication(
            media, channel=channel, caption=caption, attested=attested, actor=_actor(),
            again=again), key=_form_key())
    except PublishRefused as exc:
        return render_template("publications/blocked.html", media=media, blockers=[],
                               error=exc.message, names={}, channel=channel,
                               # the form comes back with what was typed: shortened, not lost
                               caption_typed=request.form.get("caption", "")), 422
    except PublishBlocked as exc:
        blockers = [b.as_json() for b in exc.decision.blockers]
        return render_template(
            "publications/blocked.html", media=media, blockers=blockers, error=None, channel=channel,
            names=_names([b["person_id"] for b in blockers if b["person_id"]])), 409
    except AlreadyPublished as exc:
        return _already(exc, media=get_media(media_id), items=[])
    except KeyReused:
        return _form_reused(get_media(media_id), channel)
    return _started(asked)


def _album_ids() -> list[int] | None:
    """The ticked photos' ids in the page's order; None if one is not a whole number."""
    ids = []
    for raw in request.form.getlist("media_ids"):
        if not raw.strip().isdigit():
            return None
        ids.append(int(raw))
    return ids


@bp.post("/album")
@allow(*PUBLISHERS)
def publish_album() -> Response | tuple[str, int]:
    """Publish the photos ticked on the media list as one post; blocked: every item's blockers;
    a photo live already: ask to confirm again."""
    channel = request.form.get("channel", "")
    caption = request.form.get("caption", "").strip() or None
    attested = request.form.get("attest") == "yes"
    again = request.form.get("again") == "yes"

    def refused(message: str) -> tuple[str, int]:
        return render_template("publications/blocked.html", album=True, items={}, media=None,
                               blockers=[], error=message, names={}, channel=channel,
                               caption_typed=request.form.get("caption", "")), 422

    ids = _album_ids()
    if ids is None:
        return refused(_("Choose the photos of the album from the list."))
    items: list[Media] = []
    for media_id in ids:
        media = get_media(media_id) if 0 < media_id < 2**31 else None
        if media is None:
            return refused(_("No media item with id %(id)s.", id=media_id))
        items.append(media)
    try:
        asked = ask_once(lambda: request_album_publication(
            items, channel=channel, caption=caption, attested=attested, actor=_actor(),
            again=again), key=_form_key())
    except PublishRefused as exc:
        return refused(exc.message)
    except PublishBlocked as exc:
        blockers = exc.blockers_json()
        return render_template(
            "publications/blocked.html", album=True, items={m.id: m for m in items}, media=None,
            blockers=blockers, error=None, channel=channel,
            names=_names([b["person_id"] for b in blockers if b["person_id"]])), 409
    except AlreadyPublished as exc:
        return _already(exc, media=None, items=[m for i in ids if (m := get_media(i))])
    except KeyReused:
        return _form_reused(None, channel)
    return _started(asked)


@bp.get("/<int:publication_id>/takedown")
@allow(*PUBLISHERS)
def take_down_page(publication_id: int) -> tuple[str, int]:
    """Ask before taking a publication down."""
    from .gate_views import channel_titles

    publication = _publication_or_404(publication_id)
    return confirmation_page(
        title=_("Take publication %(id)d down?", id=publication.id),
        explanation=[_("The post is removed from %(channel)s; it cannot be put back, only "
                       "published again.", channel=channel_titles().get(publication.channel,
                                                                       publication.channel))],
        action=url_for("publications.take_down", publication_id=publication.id),
        button=_("Yes, take it down"),
        cancel=url_for("publications.detail", publication_id=publication.id))


@bp.post("/<int:publication_id>/takedown")
@allow(*PUBLISHERS)
def take_down(publication_id: int) -> Response:
    """Take a publication down on request, once confirmed."""
    publication = _publication_or_404(publication_id)
    if not confirmed():
        return redirect(url_for("publications.take_down_page", publication_id=publication_id), 303)
    try:
        takedown_on_request(publication, actor=_actor())
    except TakedownError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("publications.detail", publication_id=publication_id))
    db.session.commit()
    flash(_("The takedown has been requested."), "success")
    return redirect(url_for("publications.detail", publication_id=publication_id))


@bp.post("/<int:publication_id>/removed")
@allow(*PUBLISHERS)
def removed_by_hand(publication_id: int) -> Response:
    """Staff confirm they removed an export from its channel."""
    publication = _publication_or_404(publication_id)
    try:
        confirm_removed_by_hand(publication, actor=_actor(), user_id=current_user.id)
    except TakedownError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        db.session.commit()
        flash(_("Marked as removed."), "success")
    return redirect(request.form.get("next") if request.form.get("next") == url_for(
        "publications.list_publications") else url_for("publications.detail",
                                                       publication_id=publication_id))


def _kind_of(publication: Publication) -> str:
    """photo, video or audio: from the item, or from the stored appearances' kinds when it is gone."""
    media = get_media(publication.media_id) if publication.media_id else None
    if media is not None:
        return media.kind
    return str(publication.decision.get("kind", "photo"))


@bp.get("/<int:publication_id>/download")
@allow(*DOWNLOADERS)
def download(publication_id: int) -> Response:
    """The cleared rendition of an export (audited); never the original."""
    publication = _publication_or_404(publication_id)
    if publication.connector != "export" or not publication.rendition_key:
        abort(404)
    kind = _kind_of(publication)
    record("publication:download", actor=_actor(), subject_type="publication",
           subject_id=publication.id, details={"rendition_sha256": publication.rendition_sha256})
    key = publication.rendition_key
    db.session.commit()  # audited first; no transaction (SQLite: the write lock) while storage reads
    try:
        data = get_storage().get(key)
    except StorageKeyError:
        log.error("publication %s has no stored rendition", publication.id)
        abort(404)
    content_type = CONTENT_TYPES.get(kind, "application/octet-stream")
    name = f"publication-{publication.id}.{EXTENSIONS.get(kind, 'bin')}"
    return Response(data, mimetype=content_type, headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})

