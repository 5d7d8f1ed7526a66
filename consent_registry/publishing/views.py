"""Pages for publications: publish from the media page, follow progress, see the proof, takedowns."""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..audit import Actor, record
from ..auth.access import ANY_ROLE, allow
from ..db import db
from ..jobs import enqueue
from ..media.models import Media, get_media
from ..people.models import Person
from ..storage import get_storage
from ..translate import _
from .jobs import facebook_stopped_message, publish_job
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
from .takedown import TakedownError, confirm_removed_by_hand, takedown_on_request

bp = Blueprint("publications", __name__, url_prefix="/publications")


@bp.app_context_processor
def _channel_titles() -> dict[str, Any]:
    """`channel_title(code)`: a channel's title in the page's language (the code if unknown)."""
    from .gate_views import channel_titles

    return {"channel_title": lambda code: channel_titles().get(code, code)}

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


@bp.post("/media/<int:media_id>")
@allow(*PUBLISHERS)
def publish(media_id: int) -> Response | tuple[str, int]:
    """Publish from the media page; blocked: the blockers; else to the publication's progress."""
    media = get_media(media_id)
    if media is None:
        abort(404)
    channel = request.form.get("channel", "")
    caption = request.form.get("caption", "").strip() or None
    attested = request.form.get("attest") == "yes"
    try:
        publication = request_publication(media, channel=channel, caption=caption,
                                          attested=attested, actor=_actor())
    except PublishRefused as exc:
        db.session.rollback()
        return render_template("publications/blocked.html", media=media, blockers=[],
                               error=exc.message, names={}, channel=channel,
                               # the form comes back with what was typed: shortened, not lost
                               caption_typed=request.form.get("caption", "")), 422
    except PublishBlocked as exc:
        db.session.commit()  # keeps the gate:blocked event
        blockers = [b.as_json() for b in exc.decision.blockers]
        return render_template(
            "publications/blocked.html", media=media, blockers=blockers, error=None, channel=channel,
            names=_names([b["person_id"] for b in blockers if b["person_id"]])), 409
    publication_id = publication.id
    db.session.commit()
    enqueue(publish_job, publication_id)
    flash(_("Publishing has started; this page shows how far it is."), "success")
    return redirect(url_for("publications.detail", publication_id=publication_id))


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
    """Publish the photos ticked on the media list as one post; blocked: every item's blockers."""
    channel = request.form.get("channel", "")
    caption = request.form.get("caption", "").strip() or None
    attested = request.form.get("attest") == "yes"

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
        publication = request_album_publication(items, channel=channel, caption=caption,
                                                attested=attested, actor=_actor())
    except PublishRefused as exc:
        db.session.rollback()
        return refused(exc.message)
    except PublishBlocked as exc:
        db.session.commit()  # keeps the gate:blocked events
        blockers = exc.blockers_json()
        return render_template(
            "publications/blocked.html", album=True, items={m.id: m for m in items}, media=None,
            blockers=blockers, error=None, channel=channel,
            names=_names([b["person_id"] for b in blockers if b["person_id"]])), 409
    publication_id = publication.id
    db.session.commit()
    enqueue(publish_job, publication_id)
    flash(_("Publishing has started; this page shows how far it is."), "success")
    return redirect(url_for("publications.detail", publication_id=publication_id))


@bp.post("/<int:publication_id>/takedown")
@allow(*PUBLISHERS)
def take_down(publication_id: int) -> Response:
    """Take a publication down on request."""
    publication = _publication_or_404(publication_id)
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
    data = get_storage().get(publication.rendition_key)
    record("publication:download", actor=_actor(), subject_type="publication",
           subject_id=publication.id, details={"rendition_sha256": publication.rendition_sha256})
    db.session.commit()
    kind = _kind_of(publication)
    content_type = CONTENT_TYPES.get(kind, "application/octet-stream")
    name = f"publication-{publication.id}.{EXTENSIONS.get(kind, 'bin')}"
    return Response(data, mimetype=content_type, headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})

