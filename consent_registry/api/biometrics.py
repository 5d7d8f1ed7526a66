"""API routes for face matching: the school's switch and people's reference photos."""

from __future__ import annotations

from flask import Response, current_app, jsonify, request, url_for
from flask_babel import gettext as _
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.formparser import parse_form_data

from ..auth.access import allow
from ..biometrics.schemas import FaceMatchingIn, face_matching_json, reference_json
from ..biometrics.service import (
    BiometricError,
    add_reference,
    delete_reference,
    enrolment_refusal,
    face_matching,
    reference_of,
    references_of,
    set_face_matching,
)
from ..db import db, utcnow
from ..media.ingest import Limits
from . import bp
from .errors import ApiError, json_object, validated
from .media import FORM_OVERHEAD, MAX_FORM_PARTS
from .people import _actor, _person_or_404

SETTINGS_READERS = ("admin", "dpo")
REFERENCE_WRITERS = ("admin", "communications")
REFERENCE_READERS = ("admin", "communications", "dpo")
# Refusals about the uploaded file name the field; those about the person or the switch do not.
_FILE_CODES = frozenset({"unsupported_type", "corrupt", "too_large", "too_many_pixels", "empty",
                         "not_one_face"})


def biometric_error(exc: BiometricError) -> ApiError:
    """A refused biometric change in the API's error shape."""
    fields = {"file": exc.message} if exc.code in _FILE_CODES else None
    if exc.code in ("dpia_required", "invalid"):
        fields = {"dpia_reference": exc.message}
    return ApiError(exc.status, exc.code, exc.message, fields)


@bp.get("/settings/face-matching")
@allow(*SETTINGS_READERS)
def get_face_matching() -> Response:
    """Whether face matching is on, on which DPIA, changed by whom and when."""
    return jsonify(face_matching_json(face_matching()))


@bp.put("/settings/face-matching")
@allow("admin")
def put_face_matching() -> Response:
    """Switch face matching on (a DPIA reference is required) or off (every reference is deleted)."""
    data = validated(FaceMatchingIn, json_object())
    try:
        setting = set_face_matching(enabled=data.enabled, dpia_reference=data.dpia_reference,
                                    actor=_actor())
    except BiometricError as exc:
        db.session.rollback()
        raise biometric_error(exc) from None
    db.session.commit()
    return jsonify(face_matching_json(setting))


@bp.get("/people/<int:person_id>/reference-photos")
@allow(*REFERENCE_READERS)
def list_reference_photos(person_id: int) -> Response:
    """A person's references for face matching, oldest first (never the encodings)."""
    person = _person_or_404(person_id)
    return jsonify({"items": [reference_json(r) for r in references_of(person.id)]})


def _one_file(files: MultiDict[str, FileStorage], form: MultiDict[str, str]) -> FileStorage:
    """The single file part named `file`, or a 422 saying what is wrong with the parts."""
    errors = {name: _("Unknown field.") for name in (*files, *form) if name != "file"}
    uploads = files.getlist("file")
    if len(uploads) > 1:
        errors["file"] = _("Send one file per request.")
    elif not uploads:
        errors["file"] = (_("Send the file itself as a file part, not as text.") if "file" in form
                          else _("This field is required."))
    if errors:
        raise ApiError(422, "invalid", _("Some fields are invalid."), errors)
    return uploads[0]


@bp.post("/people/<int:person_id>/reference-photos")
@allow(*REFERENCE_WRITERS)
def add_reference_photo(person_id: int) -> tuple[Response, int, dict[str, str]]:
    """Enrol a reference photo (multipart field `file`, exactly one face); the photo is not kept."""
    person = _person_or_404(person_id)
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type",
                       _("Send the upload as multipart/form-data, with the file in the field “file”."))
    # Refuse before reading the photo when no photo could be enrolled anyway.
    if (refusal := enrolment_refusal(person, utcnow())) is not None:
        raise biometric_error(refusal)
    actor, config = _actor(), current_app.config
    # No transaction (nor SQLite's write lock) while the photo arrives and its face is found.
    db.session.commit()
    try:
        _stream, form, files = parse_form_data(
            request.environ, silent=False,
            max_content_length=Limits.from_config(config).photo + FORM_OVERHEAD,
            max_form_memory_size=config.get("MAX_FORM_MEMORY_SIZE") or 500_000,
            max_form_parts=MAX_FORM_PARTS,
        )
    except ValueError:
        raise ApiError(400, "bad_request", _("The multipart body cannot be read.")) from None
    upload = _one_file(files, form)
    try:
        reference = add_reference(person, upload.stream.read(), actor=actor)
    except BiometricError as exc:
        db.session.rollback()
        raise biometric_error(exc) from None
    db.session.commit()
    location = url_for("api.list_reference_photos", person_id=reference.person_id)
    return jsonify(reference_json(reference)), 201, {"Location": location}


@bp.delete("/people/<int:person_id>/reference-photos/<int:reference_id>")
@allow(*REFERENCE_WRITERS)
def delete_reference_photo(person_id: int, reference_id: int) -> tuple[str, int]:
    """Delete one reference of a person (audited)."""
    person = _person_or_404(person_id)
    reference = reference_of(person.id, reference_id)
    if reference is None:
        raise ApiError(404, "not_found", _("No reference photo with this id for this person."))
    delete_reference(reference, actor=_actor(), reason="by_staff")
    db.session.commit()
    return "", 204
