"""Tagging pages: forms on an item's page that decide who each appearance is, without scripts.

Every form posts to a route here and is answered with a redirect back to the item (to the
appearance's panel) and a flash message; a refused decision is a flash error, never a 500.
Searching for a person is a GET on the item's page (`?q=...&appearance=<id>` or `=new`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from ..auth.access import ANY_ROLE, allow
from ..db import db
from ..people.models import Person
from ..people.service import get_person, groups, search_people
from ..storage import StorageKeyError, get_storage
from .faces import Box
from .models import MAX_ID, Appearance, Media
from .tagging import (
    TaggingError,
    accept_suggestion,
    add_appearance,
    reject_suggestion,
    set_resolution,
    tag_person,
)
from .views import KIND_LABELS, RESOLUTION_LABELS, UPLOADERS, _actor, bp, media_or_404

SEARCH_LIMIT = 20


def _appearance_or_404(media: Media, appearance_id: int) -> Appearance:
    """The item's appearance, or a 404 page (also for another item's appearance)."""
    appearance = db.session.get(Appearance, appearance_id) if 0 < appearance_id <= MAX_ID else None
    if appearance is None or appearance.media_id != media.id:
        abort(404)
    return appearance


def _back(media: Media, appearance_id: int | None = None) -> Response:
    """Back to the item's page, at the appearance's panel when there is one."""
    anchor = f"appearance-{appearance_id}" if appearance_id else "appearances"
    return redirect(url_for("media.detail", media_id=media.id, _anchor=anchor))


def _form_int(name: str) -> int | None:
    """A whole number from the form, or None when absent or not a number."""
    raw = request.form.get(name, "").strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        return None
    return int(raw)


def _form_person() -> Person | None:
    """The person the form names, or None when it names nobody that exists."""
    person_id = _form_int("person_id")
    return get_person(person_id) if person_id else None


def _decided(media: Media, appearance_id: int | None, change: Any, message: str) -> Response:
    """Run a tagging change: commit and say so, or roll back and show why it was refused."""
    try:
        change()
    except TaggingError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return _back(media, appearance_id)
    db.session.commit()
    flash(message, "success")
    return _back(media, appearance_id)


@bp.get("/<int:media_id>/appearances/<int:appearance_id>/crop")
@allow(*ANY_ROLE)
def appearance_crop(media_id: int, appearance_id: int) -> Response:
    """The small picture of one face (or the snippet of one voice), for tagging and the person page."""
    appearance = _appearance_or_404(media_or_404(media_id), appearance_id)
    crop_key, kind = appearance.crop_key, appearance.kind
    if not crop_key:
        abort(404)
    db.session.commit()  # no transaction (SQLite: the write lock) while storage answers
    try:
        data = get_storage().get(crop_key)
    except StorageKeyError:
        abort(404)
    # A voice keeps a short WAV snippet where a face keeps its JPEG crop.
    response = Response(data, mimetype="audio/wav" if kind == "voice" else "image/jpeg")
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@bp.post("/<int:media_id>/appearances/<int:appearance_id>/tag")
@allow(*UPLOADERS)
def tag_appearance(media_id: int, appearance_id: int) -> Response:
    """“This is X”: tag the person chosen from the search results."""
    media = media_or_404(media_id)
    appearance = _appearance_or_404(media, appearance_id)
    person = _form_person()
    if person is None:
        flash(_("Choose a person from the search results."), "error")
        return _back(media, appearance_id)
    return _decided(media, appearance_id, lambda: tag_person(appearance, person, _actor()),
                    _("Tagged as %(name)s.", name=person.full_name))


@bp.post("/<int:media_id>/appearances/<int:appearance_id>/suggestion")
@allow(*UPLOADERS)
def decide_suggestion(media_id: int, appearance_id: int) -> Response:
    """Confirm or reject the matcher's suggestion."""
    media = media_or_404(media_id)
    appearance = _appearance_or_404(media, appearance_id)
    decision = request.form.get("decision")
    if decision not in ("accept", "reject"):
        flash(_("Confirm or reject the suggestion."), "error")
        return _back(media, appearance_id)
    if decision == "accept":
        return _decided(media, appearance_id, lambda: accept_suggestion(appearance, _actor()),
                        _("The suggestion has been confirmed."))
    return _decided(media, appearance_id, lambda: reject_suggestion(appearance, _actor()),
                    _("The suggestion has been rejected."))


@bp.post("/<int:media_id>/appearances/<int:appearance_id>/resolution")
@allow(*UPLOADERS)
def set_appearance_resolution(media_id: int, appearance_id: int) -> Response:
    """Mark not recognisable or blurred, or reset to not yet tagged."""
    media = media_or_404(media_id)
    appearance = _appearance_or_404(media, appearance_id)
    resolution = request.form.get("resolution", "")
    return _decided(media, appearance_id, lambda: set_resolution(appearance, resolution, _actor()),
                    _("Saved: %(state)s.", state=RESOLUTION_LABELS.get(resolution, resolution)))


def _form_box() -> tuple[Box | None, str | None]:
    """The box of the add form, None when all four fields are empty, or why it is unusable."""
    names = ("x", "y", "w", "h")
    raw = [request.form.get(n, "").strip() for n in names]
    if not any(raw):
        return None, None
    values = [_form_int(n) for n in names]
    if any(v is None for v in values):
        return None, _("Fill in all four numbers of the box, in whole pixels.")
    return Box(*values), None  # type: ignore[arg-type]


@bp.post("/<int:media_id>/appearances")
@allow(*UPLOADERS)
def add_appearance_form(media_id: int) -> Response:
    """Add a missed face (a box, drawn or typed) or a person present but not detected."""
    media = media_or_404(media_id)
    box, problem = _form_box()
    if problem:
        flash(problem, "error")
        return _back(media)
    person = None
    if request.form.get("person_id"):
        person = _form_person()
        if person is None:
            flash(_("Choose a person from the search results."), "error")
            return _back(media)
    added: list[Appearance] = []
    response = _decided(
        media, None, lambda: added.append(add_appearance(media, box, person, _actor())),
        _("The face has been added.") if box else _("The person has been added."))
    return _back(media, added[0].id) if added else response


@dataclass(frozen=True, slots=True)
class Panel:
    """What an appearance's panel shows: its number, the people it names, and its state."""

    number: int
    appearance: Appearance
    person: Person | None
    suggested: Person | None


def _search(q: str) -> list[Person]:
    """People by name or number, or everyone in a class when the words are a class's name."""
    q = q.strip()[:200]
    if not q:
        return []
    group = next((g for g in groups() if g.casefold() == q.casefold()), None)
    found, _total = (search_people(group=group, per_page=SEARCH_LIMIT) if group
                     else search_people(q=q, per_page=SEARCH_LIMIT))
    return found


def tagging_context(media: Media) -> dict[str, Any]:
    """The detail page's tagging parts: numbered panels, who may tag, any search and its results."""
    ids = {i for a in media.appearances for i in (a.person_id, a.suggested_person_id) if i}
    people = {p.id: p for p in db.session.execute(
        sa.select(Person).where(Person.id.in_(ids))).scalars()} if ids else {}
    panels = [Panel(n, a, people.get(a.person_id or 0), people.get(a.suggested_person_id or 0))
              for n, a in enumerate(media.appearances, start=1)]
    target = request.args.get("appearance", "")[:20]
    # PostgreSQL refuses NUL in text, and no name holds a control character anyway.
    q = "".join(ch for ch in request.args.get("q", "")[:200] if ch.isprintable())
    return {
        "panels": panels,
        "can_tag": current_user.role in UPLOADERS,
        "search_target": target,
        "search_q": q,
        "search_results": _search(q) if target else [],
    }


def _person_media_rows(person_id: int) -> list[dict[str, Any]]:
    """The appearances of a person, newest item first, ready for the person page."""
    rows = db.session.execute(
        sa.select(Appearance, Media).join(Media, Appearance.media_id == Media.id)
        .where(Appearance.person_id == person_id)
        .order_by(Media.created_at.desc(), Media.id.desc(), Appearance.id).limit(200)
    ).all()
    return [{"media_id": m.id, "appearance_id": a.id, "has_crop": bool(a.crop_key),
             "is_voice": a.kind == "voice",
             "title": m.title or m.original_name or _("Item %(id)d", id=m.id),
             "kind": str(KIND_LABELS.get(m.kind, m.kind)),
             "resolution": str(RESOLUTION_LABELS.get(a.resolution, a.resolution))}
            for a, m in rows]


@bp.app_context_processor
def _person_media() -> dict[str, Any]:
    """`person_media(id)` for the person page's list of the media they appear in."""
    return {"person_media": _person_media_rows}
