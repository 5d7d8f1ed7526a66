"""The preview on a consent answer page: the media the request is about, every other person blurred.

`GET /c/<token>/preview` belongs to the public `consent_public` blueprint (its strict headers and
rate limit apply) and checks the token exactly as the answer page does. For a photo it answers a
small JPEG in which every face is blurred except those tagged as the recipient's person (a face
of someone else always wins where boxes overlap); for a video, the thumbnail of the person's own
face track only (no frame of the video with others in it); for a sound recording, nothing. No
image is ever attached to an e-mail: the page loads this one from the school's own site.
"""

from __future__ import annotations

import logging

from flask import abort
from werkzeug.wrappers import Response

from ..auth.access import allow_public
from ..consent.models import ConsentRecipient, ConsentRequest
from ..consent.public import _recipient_or_problem, bp
from ..db import db
from ..media.faces import Box
from ..media.models import Appearance, Media, get_media
from ..storage import StorageKeyError, get_storage
from .rendition import preview_photo

log = logging.getLogger(__name__)
PREVIEW_MAX_SIDE = 1024


def _box(appearance: Appearance) -> Box | None:
    """An appearance's face box, if it has one."""
    box = appearance.box
    return Box(box["x"], box["y"], box["w"], box["h"]) if box else None


def preview_kind(request_: ConsentRequest, person_id: int) -> str | None:
    """What preview the answer page shows: "photo", "video" (own face only) or None."""
    media = get_media(request_.media_id) if request_.media_id else None
    if media is None:
        return None
    if media.kind == "photo":
        return "photo"
    if media.kind == "video" and _own_crop(media, person_id):
        return "video"
    return None


def _own_crop(media: Media, person_id: int) -> str | None:
    """The stored thumbnail of the person's own face in a video, if any."""
    return next((a.crop_key for a in media.appearances
                 if a.kind == "face" and a.person_id == person_id and a.crop_key), None)


def split_boxes(media: Media, person_id: int) -> tuple[list[Box], list[Box]]:
    """The person's own face boxes (kept sharp) and everyone else's (blurred)."""
    keep, blur = [], []
    for appearance in media.appearances:
        box = _box(appearance) if appearance.kind == "face" else None
        if box is not None:
            (keep if appearance.person_id == person_id else blur).append(box)
    return keep, blur


@bp.context_processor
def _preview_helpers() -> dict[str, object]:
    """Lets the answer page ask whether it has a preview to show."""
    return {"preview_kind": preview_kind}


@bp.get("/c/<token>/preview")
@allow_public
def answer_preview(token: str) -> Response | tuple[str, int]:
    """The preview image of a live answer link; a dead link gets the friendly page, no image."""
    found = _recipient_or_problem(token)
    if not isinstance(found, ConsentRecipient):
        return found
    person_id = found.person_id
    media = get_media(found.request.media_id) if found.request.media_id else None
    if media is None or media.kind not in ("photo", "video"):
        abort(404)
    storage = get_storage()
    if media.kind == "video":
        key = _own_crop(media, person_id)
        if key is None:
            abort(404)
        db.session.commit()
        try:
            return Response(storage.get(key), mimetype="image/jpeg")
        except StorageKeyError:
            abort(404)
    keep, blur = split_boxes(media, person_id)
    storage_key = media.storage_key
    db.session.commit()  # no transaction (SQLite's write lock) while the photo is read and blurred
    try:
        data = storage.get(storage_key)
    except StorageKeyError:
        log.error("media %s has no stored file", media.id)
        abort(404)
    return Response(preview_photo(data, keep, blur, max_side=PREVIEW_MAX_SIDE), mimetype="image/jpeg")
