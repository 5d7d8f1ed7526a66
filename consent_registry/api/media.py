"""API routes for media: upload by content, read, list and delete."""

from __future__ import annotations

from flask import Response, current_app, jsonify, request, url_for
from flask_babel import gettext as _
from pydantic import ValidationError
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.formparser import parse_form_data

from ..auth.access import ANY_ROLE, allow
from ..db import db
from ..media.analysis import start_analysis
from ..media.ingest import IngestError, Limits, Spool, SpoolFactory, delete_media, ingest_spooled
from ..media.models import MEDIA_KINDS, MEDIA_STATUSES, Media, get_media, page_of_media
from ..media.schemas import MediaUploadFields, media_json, media_summary_json
from ..publishing.slots import StillPublished, active_publications, holder_json
from ..storage import get_storage
from . import bp
from .errors import ApiError, choice_arg, int_arg, page_size, validation_fields
from .people import _actor

UPLOADERS = ("admin", "communications")
# Room for the multipart boundaries and the small text fields around the file.
FORM_OVERHEAD = 1024 * 1024
MAX_FORM_PARTS = 20


def ingest_error(exc: IngestError) -> ApiError:
    """A refused upload as 413, 415 or 422, naming the file field."""
    return ApiError(exc.status, exc.code, exc.message, {"file": exc.message})


def media_or_404(media_id: int) -> Media:
    """The item, or a 404 in the API's shape."""
    media = get_media(media_id)
    if media is None:
        raise ApiError(404, "not_found", _("No media item with this id."))
    return media


def upload_fields(form: MultiDict[str, str]) -> tuple[MediaUploadFields | None, dict[str, str]]:
    """The text fields of an upload form validated (empty means absent), or the errors per field."""
    errors: dict[str, str] = {}
    document: dict[str, str] = {}
    for name in form:
        values = form.getlist(name)
        if len(values) > 1:
            errors[name] = _("Send this field once.")
        elif values[0].strip():
            document[name] = values[0]
    try:
        return MediaUploadFields.model_validate(document), errors
    except ValidationError as exc:
        return None, {**validation_fields(exc), **errors}


def _the_file(form: MultiDict[str, str], files: MultiDict[str, FileStorage]) -> tuple[Spool | None,
                                                                                      dict[str, str]]:
    """The one file part named `file`, or the errors that say what is wrong with the parts."""
    errors = {name: _("Unknown field.") for name in files if name != "file"}
    uploads = files.getlist("file")
    if len(uploads) > 1:
        errors["file"] = _("Send one file per request.")
    elif not uploads:
        errors["file"] = (_("Send the file itself as a file part, not as text.") if "file" in form
                          else _("This field is required."))
    spool = uploads[0].stream if len(uploads) == 1 else None
    return (spool if isinstance(spool, Spool) else None), errors


@bp.post("/media")
@allow(*UPLOADERS)
def upload_media() -> tuple[Response, int, dict[str, str]]:
    """Upload one photo, video or recording (multipart field `file`); its type comes from its content."""
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type",
                       _("Send the upload as multipart/form-data, with the file in the field “file”."))
    config = current_app.config
    limits = Limits.from_config(config)
    actor = _actor()
    # End the transaction the token lookup began: a large body takes a while to arrive, and
    # SQLite would hold its write lock all that time.
    db.session.commit()
    with SpoolFactory(limits=limits, tmp_dir=config.get("INGEST_TMP_DIR")) as factory:
        try:
            _stream, form, files = parse_form_data(
                request.environ, stream_factory=factory, silent=False,
                max_content_length=limits.largest + FORM_OVERHEAD,
                max_form_memory_size=config.get("MAX_FORM_MEMORY_SIZE") or 500_000,
                max_form_parts=MAX_FORM_PARTS,
            )
        except ValueError:
            raise ApiError(400, "bad_request", _("The multipart body cannot be read.")) from None
        spool, errors = _the_file(form, files)
        fields, field_errors = upload_fields(
            MultiDict([(k, v) for k, v in form.items(multi=True) if k != "file"]))
        errors.update(field_errors)
        if errors or spool is None or fields is None:
            raise ApiError(422, "invalid", _("Some fields are invalid."), errors)
        try:
            spooled = spool.finish()
            result = ingest_spooled(
                spooled, limits=limits, storage=get_storage(), actor=actor, uploaded_by=actor.id,
                title=fields.title, taken_on=fields.taken_on, original_name=files["file"].filename,
            )
        except IngestError as exc:
            raise ingest_error(exc) from None
    if result.created:
        start_analysis(result.media.id)
    location = url_for("api.get_media_route", media_id=result.media.id)
    return jsonify(media_json(result.media)), 201 if result.created else 200, {"Location": location}


@bp.get("/media")
@allow(*ANY_ROLE)
def list_media() -> Response:
    """A page of media items, newest first, filtered by status and kind."""
    status, kind = choice_arg("status", MEDIA_STATUSES), choice_arg("kind", MEDIA_KINDS)
    page, per_page = int_arg("page", default=1, maximum=100_000), page_size()
    rows, total = page_of_media(status=status, kind=kind, page=page, per_page=per_page)
    return jsonify({"items": [media_summary_json(m) for m in rows], "page": page,
                    "per_page": per_page, "total": total})


@bp.get("/media/<int:media_id>")
@allow(*ANY_ROLE)
def get_media_route(media_id: int) -> Response:
    """One media item with its appearances."""
    return jsonify(media_json(media_or_404(media_id)))


@bp.delete("/media/<int:media_id>")
@allow(*UPLOADERS)
def delete_media_route(media_id: int) -> tuple[str, int]:
    """Remove an item, its appearances and its stored files; 409 while it is queued or live."""
    try:
        delete_media(media_or_404(media_id), actor=_actor(), storage=get_storage())
    except StillPublished as exc:
        holders = active_publications([exc.media_id])
        raise ApiError(409, "still_published",
                       _("This item is queued or live; take these publications down first."),
                       extra={"publications": [holder_json(p) for p in holders]}) from None
    return "", 204
