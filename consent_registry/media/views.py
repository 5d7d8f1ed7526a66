"""Web pages for media: upload (many files, one request each, or one plain form), list, detail.

`POST /media/files` takes one file as the raw request body (the upload page's script sends it
with XMLHttpRequest, the session cookie and the page's CSRF token in `X-CSRFToken`) and answers
JSON. A raw body is never parsed as a form, so the file streams straight into the ingest spool
with no copy in between and no database transaction open. `POST /media/upload` is the same for
browsers without scripts: a multipart form with any number of files, answered with a page.
"""

from __future__ import annotations

import io
import logging
import math
from typing import Any

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
from PIL import Image, ImageOps
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from ..api.errors import ApiError, error_response
from ..api.media import FORM_OVERHEAD, ingest_error, upload_fields
from ..audit import Actor, record
from ..auth.access import ANY_ROLE, allow
from ..consent.service import channels
from ..db import db
from ..people.views import page_arg
from ..publishing.service import ALBUM_MAX, ALBUM_MIN, connector_for
from ..storage import StorageKeyError, get_storage
from .analysis import start_analysis
from .ingest import EXTENSIONS, IngestError, Limits, delete_media, ingest_stream, readable_size
from .models import MEDIA_STATUSES, Media, get_media, page_of_media

log = logging.getLogger(__name__)
bp = Blueprint("media", __name__, url_prefix="/media")
UPLOADERS = ("admin", "communications")
ALBUM_PUBLISHERS = ("admin", "communications")  # publish ticked photos together (Facebook only)
# The original file keeps every byte that was uploaded (EXIF with GPS among them): only the
# roles that publish or supervise may fetch it, and each fetch is audited.
ORIGINAL_VIEWERS = ("admin", "communications", "dpo")
DISPLAY_MAX_SIDE = 1600
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


@bp.context_processor
def _labels() -> dict[str, Any]:
    """Template functions that show stored codes as translated labels."""
    def label(table: dict[str, Any]) -> Any:
        return lambda code: str(table.get(code, code))
    return {"media_kind_label": label(KIND_LABELS), "media_status_label": label(STATUS_LABELS),
            "resolution_label": label(RESOLUTION_LABELS),
            "appearance_label": label(APPEARANCE_LABELS)}


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
    from .tagging_views import tagging_context

    return render_template("media/detail.html", media=media, name=name,
                           can_view_original=current_user.role in ORIGINAL_VIEWERS,
                           can_delete=current_user.role in UPLOADERS, **tagging_context(media),
                           **gate_context(media))


def display_rendition(data: bytes, *, max_side: int = DISPLAY_MAX_SIDE) -> bytes:
    """A photo as shown on the pages: turned upright, at most max_side pixels, no metadata, JPEG."""
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (max_side, max_side))  # JPEG decodes straight at a smaller scale
        upright = ImageOps.exif_transpose(img)
        upright.thumbnail((max_side, max_side))
        if upright.mode != "RGB":
            flat = Image.new("RGB", upright.size, (255, 255, 255))
            rgba = upright.convert("RGBA")
            flat.paste(rgba, mask=rgba.getchannel("A"))
            upright = flat
        out = io.BytesIO()
        upright.save(out, format="JPEG", quality=85)
    return out.getvalue()


@bp.get("/<int:media_id>/display")
@allow(*ANY_ROLE)
def display(media_id: int) -> Response:
    """The photo for the pages: a smaller copy without its metadata (no GPS, no camera serial)."""
    media = media_or_404(media_id)
    if media.kind != "photo":
        abort(404)
    etag = f"display-{DISPLAY_MAX_SIDE}-{media.sha256}"
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        try:
            data = get_storage().get(media.storage_key)
        except StorageKeyError:
            log.error("media %s has no stored file", media.id)
            abort(404)
        response = Response(display_rendition(data), mimetype="image/jpeg")
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


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


@bp.post("/<int:media_id>/delete")
@allow(*UPLOADERS)
def delete(media_id: int) -> Response:
    """Remove an item, the people found in it and its stored files."""
    delete_media(media_or_404(media_id), actor=_actor(), storage=get_storage())
    flash(_("The media item has been deleted."), "success")
    return redirect(url_for("media.list_media"))


# The gate's request button and the staff's look at the published version join this blueprint too.
from ..publishing import gate_views, rendition_views  # noqa: E402,F401

# The tagging routes and the live analysis status join this blueprint.
from . import status_views, tagging_views  # noqa: E402,F401
