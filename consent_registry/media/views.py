"""Web pages for media: upload (many files, one request each, or one plain form), list, detail.

`POST /media/files` takes one file as the raw request body (the upload page's script sends it
with XMLHttpRequest, the session cookie and the page's CSRF token in `X-CSRFToken`) and answers
JSON. A raw body is never parsed as a form, so the file streams straight into the ingest spool
with no copy in between and no database transaction open. `POST /media/upload` is the same for
browsers without scripts: a multipart form with any number of files, answered with a page.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import sqlalchemy as sa
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import current_user
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from ..api.errors import ApiError, error_response
from ..api.media import FORM_OVERHEAD, ingest_error, upload_fields
from ..audit import Actor, record
from ..auth.access import ANY_ROLE, allow
from ..confirm import confirmation_page, confirmed
from ..consent.service import channels
from ..db import db
from ..people.views import page_arg
from ..publishing.service import ALBUM_MAX, ALBUM_MIN, connector_for
from ..publishing.slots import StillPublished, active_publications
from ..storage import StorageKeyError, get_storage
from .analysis import start_analysis
from .display import DISPLAY_MAX_SIDE, DisplayTooLarge, DisplayUnavailable, ensure_display
from .ingest import EXTENSIONS, IngestError, Limits, delete_media, ingest_stream, readable_size
from .models import MEDIA_STATUSES, Media, get_media, page_of_media

log = logging.getLogger(__name__)
bp = Blueprint("media", __name__, url_prefix="/media")
UPLOADERS = ("admin", "communications")
ALBUM_PUBLISHERS = ("admin", "communications")  # publish ticked photos together (Facebook only)
# The original file keeps every byte that was uploaded (EXIF with GPS among them): only the
# roles that publish or supervise may fetch it, and each fetch is audited.
ORIGINAL_VIEWERS = ("admin", "communications", "dpo")
_FORM_MIMETYPES = ("multipart/form-data", "application/x-www-form-urlencoded")

KIND_LABELS = {"photo": lazy_gettext("Photo"), "video": lazy_gettext("Video"),
               "audio": lazy_gettext("Sound recording")}
STATUS_LABELS = {"queued": lazy_gettext("waiting for analysis"),
                 "analysing": lazy_gettext("being analysed"), "ready": lazy_gettext("ready"),
                 "failed": lazy_gettext("analysis failed")}
RESOLUTION_LABELS = {"unresolved": lazy_gettext("not yet tagged"),
                     "identified": lazy_gettext("tagged"),
                     "not_recognisable": lazy_gettext("not recognisable"),
                     "blur": lazy_gettext("blurred when published")}
APPEARANCE_LABELS = {"face": lazy_gettext("Face"), "voice": lazy_gettext("Voice")}
# Why an analysis failed, by the code of a file that did not decode whole (media/completeness.py).
FAILURE_LABELS = {
    "sound_damaged": lazy_gettext("The sound is damaged and could not be listened to: upload an "
                                  "undamaged copy."),
    "sound_incomplete": lazy_gettext("Part of the sound is missing or could not be decoded: upload "
                                     "a complete copy."),
    "sound_tracks": lazy_gettext("The file has more than one sound track; only one can be listened "
                                 "to: upload a copy with one."),
    "video_tracks": lazy_gettext("The file has more than one video track; only one can be looked "
                                 "at: upload a copy with one."),
    "frames_damaged": lazy_gettext("The picture of the video is damaged and could not be looked "
                                   "at: upload an undamaged copy."),
    "frames_incomplete": lazy_gettext("Part of the video is missing or could not be decoded: "
                                      "upload a complete copy."),
    "worker_lost": lazy_gettext("The analysis stopped several times without finishing (its worker "
                                "was ended, perhaps for lack of memory): look at the file, or upload "
                                "a smaller copy."),
    "photo_incomplete": lazy_gettext("The photo holds less picture than it claims: upload the "
                                     "original."),
}
# Any other failure (an exception's text) stays in the audit log: a reader gets this sentence.
UNKNOWN_FAILURE = lazy_gettext("The analysis stopped with an error; the details are in the audit "
                               "log.")


def failure_label(reason: str | None) -> str:
    """A stored failure reason for people: the translated sentence of its code, the detail after."""
    if not reason:
        return ""
    code, _sep, detail = reason.partition(": ")
    if code in FAILURE_LABELS:
        return f"{FAILURE_LABELS[code]} ({detail})" if detail else str(FAILURE_LABELS[code])
    return str(UNKNOWN_FAILURE)


@bp.context_processor
def _labels() -> dict[str, Any]:
    """Template functions that show stored codes as translated labels."""
    def label(table: dict[str, Any]) -> Any:
        return lambda code: str(table.get(code, code))
    return {"media_kind_label": label(KIND_LABELS), "media_status_label": label(STATUS_LABELS),
            "resolution_label": label(RESOLUTION_LABELS),
            "appearance_label": label(APPEARANCE_LABELS), "failure_label": failure_label}


def _limits() -> Limits:
    """The upload limits of this app."""
    return Limits.from_config(current_app.config)


@bp.url_value_preprocessor
def _allow_large_uploads(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    """Raise the request size limit for the upload routes only, before anything reads the body.

    This runs before the access and CSRF checks (which read form bodies); it reads nothing itself.
    The kind-specific limits are applied while the file is spooled.
    """
    if endpoint in ("media.upload_form", "media.upload_file"):
        request.max_content_length = _limits().largest + FORM_OVERHEAD


def _actor() -> Actor:
    """The staff member acting."""
    return Actor("user", current_user.id)


def media_or_404(media_id: int) -> Media:
    """The item, or a 404 page."""
    media = get_media(media_id)
    if media is None:
        abort(404)
    return media


@bp.get("/")
@allow(*ANY_ROLE)
def list_media() -> str:
    """Uploaded media, newest first, with their analysis status."""
    status = request.args.get("status") if request.args.get("status") in MEDIA_STATUSES else None
    per_page = current_app.config["PAGE_SIZE"]
    page = page_arg()
    rows, total = page_of_media(status=status, page=page, per_page=per_page)
    album_channels = ([c for c in channels() if connector_for(c) != "export"]
                      if current_user.role in ALBUM_PUBLISHERS else [])
    return render_template("media/list.html", items=rows, total=total, page=page,
                           pages=max(1, math.ceil(total / per_page)), status=status,
                           statuses=MEDIA_STATUSES, can_upload=current_user.role in UPLOADERS,
                           album_channels=album_channels, album_min=ALBUM_MIN,
                           album_max=ALBUM_MAX)


def _upload_page(*, values: Any = None, errors: dict[str, str] | None = None,
                 results: list[dict[str, Any]] | None = None) -> str:
    """The upload page, with the limits spelled out and any results of a plain form post."""
    limits = _limits()
    return render_template(
        "media/upload.html", values=values or {}, errors=errors or {}, results=results,
        limits={kind: readable_size(limits.bytes_for(kind)) for kind in ("photo", "video", "audio")},
    )


@bp.get("/upload")
@allow(*UPLOADERS)
def upload_page() -> str:
    """Upload several files at once, by drag and drop or by choosing them."""
    return _upload_page()


@bp.post("/upload")
@allow(*UPLOADERS)
def upload_form() -> tuple[str, int]:
    """The upload form without scripts: every chosen file in one post, a result for each."""
    form = MultiDict([(k, v) for k, v in request.form.items(multi=True) if k != "csrf_token"])
    fields, errors = upload_fields(form)
    uploads = [f for f in request.files.getlist("files") if f.filename]
    if not uploads:
        errors["files"] = _("Choose at least one file.")
    if fields is None or errors:
        return _upload_page(values=request.form, errors=errors), 422
    actor = _actor()
    db.session.commit()  # no transaction (nor SQLite's write lock) while files are checked
    results = []
    for upload in uploads:
        outcome: dict[str, Any] = {"name": upload.filename}
        try:
            result = ingest_stream(
                upload.stream, limits=_limits(), storage=get_storage(), actor=actor,
                uploaded_by=actor.id, title=fields.title, taken_on=fields.taken_on,
                original_name=upload.filename, tmp_dir=current_app.config.get("INGEST_TMP_DIR"),
            )
        except IngestError as exc:
            outcome.update(ok=False, message=exc.message)
        else:
            outcome.update(ok=True, media_id=result.media.id, duplicate=not result.created)
            if result.created:
                start_analysis(result.media.id)
        results.append(outcome)
    failed = any(not r["ok"] for r in results)
    return _upload_page(results=results), 422 if failed else 200


@bp.post("/files")
@allow(*UPLOADERS)
def upload_file() -> tuple[Response, int]:
    """One file as the raw request body (name, title and taken_on in the query); JSON answer."""
    if request.mimetype in _FORM_MIMETYPES:
        return error_response(ApiError(
            415, "unsupported_media_type",
            _("Send the file itself as the request body, not as a form."))), 415
    fields, errors = upload_fields(MultiDict(
        [(k, v) for k, v in request.args.items(multi=True) if k != "name"]))
    if fields is None or errors:
        return error_response(ApiError(422, "invalid", _("Some fields are invalid."), errors)), 422
    actor = _actor()
    db.session.commit()  # no transaction (nor SQLite's write lock) while the body arrives
    try:
        result = ingest_stream(
            request.stream, limits=_limits(), storage=get_storage(), actor=actor,
            uploaded_by=actor.id, title=fields.title, taken_on=fields.taken_on,
            original_name=request.args.get("name"),
            tmp_dir=current_app.config.get("INGEST_TMP_DIR"),
        )
    except IngestError as exc:
        error = ingest_error(exc)
        return error_response(error), error.status
    media = result.media
    if result.created:
        start_analysis(media.id)
    return jsonify({"id": media.id, "kind": media.kind, "status": media.status,
                    "duplicate": not result.created,
                    "url": url_for("media.detail", media_id=media.id)}), (
        201 if result.created else 200)


@bp.get("/<int:media_id>")
@allow(*ANY_ROLE)
def detail(media_id: int) -> str:
    """One item: the photo (or a player), its facts and the people found in it."""
    media = media_or_404(media_id)
    name = media.title or media.original_name or _("Item %(id)d", id=media.id)
    from ..publishing.gate_views import gate_context
    from ..publishing.slots import active_publications
    from .tagging_views import tagging_context

    return render_template("media/detail.html", media=media, name=name,
                           can_view_original=current_user.role in ORIGINAL_VIEWERS,
                           can_delete=current_user.role in UPLOADERS, **tagging_context(media),
                           **gate_context(media), live_publications=active_publications([media.id]))


@bp.get("/<int:media_id>/display")
@allow(*ANY_ROLE)
def display(media_id: int) -> Response | tuple[str, int]:
    """The photo for the pages: a smaller copy without its metadata (no GPS, no camera serial).

    Served from the stored display rendition (made once, see media/display.py); no transaction
    is open while it is read, or made when missing.
    """
    media = media_or_404(media_id)
    if media.kind != "photo":
        abort(404)
    etag = f"display-{DISPLAY_MAX_SIDE}-{media.sha256}"
    db.session.commit()  # nothing below needs the database open (SQLite: its write lock)
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        try:
            data = _display_bytes(media_id)
        except DisplayTooLarge:
            log.warning("media %s is too large to show within the display budget", media_id)
            return _("This photo is too large to show here."), 422
        except DisplayUnavailable:
            log.error("media %s has no stored file", media_id)
            abort(404)
        response = Response(data, mimetype="image/jpeg")
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def _display_bytes(media_id: int) -> bytes:
    """The stored display rendition's bytes, made first when missing or lost from storage."""
    key = ensure_display(media_id)
    try:
        return get_storage().get(key)
    except StorageKeyError:
        # Lost from storage: forget the key (only if it is still this one) and make it again.
        db.session.execute(sa.update(Media).where(Media.id == media_id, Media.display_key == key)
                           .values(display_key=None))
        db.session.commit()
        try:
            return get_storage().get(ensure_display(media_id))
        except StorageKeyError:
            raise DisplayUnavailable(f"media {media_id} has no display rendition") from None


@bp.get("/<int:media_id>/original")
@allow(*ORIGINAL_VIEWERS)
def original(media_id: int) -> Response:
    """The uploaded file exactly as received, streamed from storage; every fetch is audited."""
    media = media_or_404(media_id)
    size, content_type = media.size_bytes, media.content_type
    # The download name is made here from the id and the detected type, never from the upload.
    filename = f"media-{media.id}.{EXTENSIONS.get(content_type, 'bin')}"
    try:
        handle = get_storage().open(media.storage_key)
    except StorageKeyError:
        log.error("media %s has no stored file", media.id)
        abort(404)
    try:
        range_header = request.headers.get("Range")
        record("media:original_view", actor=_actor(), subject_type="media", subject_id=media.id,
               details={"range": range_header[:100]} if range_header else {})
        db.session.commit()
        response = Response(wrap_file(request.environ, handle), mimetype=content_type,
                            direct_passthrough=True)
        response.content_length = size
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        response.headers["Cache-Control"] = "private, no-store"
        return response.make_conditional(request.environ, accept_ranges=True,
                                         complete_length=size)
    except BaseException:
        handle.close()
        raise


def _delete_page(media: Media, *, status: int = 200) -> tuple[str, int]:
    """What deleting the item loses, and the button; while it is queued or live, why it cannot."""
    name = media.title or media.original_name or _("Item %(id)d", id=media.id)
    return confirmation_page(
        title=_("Delete %(name)s?", name=name),
        explanation=[_("The file, the people found in it and their tags are deleted. "
                       "Publications keep their proof. This cannot be undone.")],
        action=url_for("media.delete", media_id=media.id), button=_("Yes, delete this item"),
        cancel=url_for("media.detail", media_id=media.id),
        holders=active_publications([media.id]), status=status,
        refusal=_("This item is queued or live on these channels: take these publications down "
                  "before deleting it."))


@bp.get("/<int:media_id>/delete")
@allow(*UPLOADERS)
def delete_page(media_id: int) -> tuple[str, int]:
    """Ask before deleting an item."""
    return _delete_page(media_or_404(media_id))


@bp.post("/<int:media_id>/delete")
@allow(*UPLOADERS)
def delete(media_id: int) -> Response | tuple[str, int]:
    """Remove an item, the people found in it and its stored files, once confirmed; 409 while
    it is queued or live."""
    media = media_or_404(media_id)
    if not confirmed():
        return redirect(url_for("media.delete_page", media_id=media_id), 303)
    try:
        delete_media(media, actor=_actor(), storage=get_storage())
    except StillPublished:
        return _delete_page(media_or_404(media_id), status=409)
    flash(_("The media item has been deleted."), "success")
    return redirect(url_for("media.list_media"))


# The gate's request button and the staff's look at the published version join this blueprint too.
from ..publishing import gate_views, rendition_views  # noqa: E402,F401

# The tagging routes and the live analysis status join this blueprint.
from . import status_views, tagging_views  # noqa: E402,F401
