"""API routes for face and voice matching: the school's switches and people's references."""

from __future__ import annotations

from flask import Response, current_app, jsonify, request, url_for
from flask_babel import gettext as _
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.formparser import parse_form_data

from ..auth.access import allow
from ..biometrics.models import FaceReference, VoiceReference
from ..biometrics.schemas import FaceMatchingIn, face_matching_json, reference_json
from ..biometrics.service import (
    FACE,
    VOICE,
    BiometricError,
    add_reference,
    delete_reference,
    enrolment_refusal,
    matching_setting,
    reference_of,
    references_of,
    set_matching,
)
from ..biometrics.voice_enrolment import MAX_REFERENCE_RECORDING_BYTES, add_voice_reference
from ..db import db, utcnow
from ..media.ingest import Limits
from ..people.models import Person
from . import bp
from .errors import ApiError, json_object, validated
from .media import FORM_OVERHEAD, MAX_FORM_PARTS
from .people import _actor, _person_or_404

SETTINGS_READERS = ("admin", "dpo")
REFERENCE_WRITERS = ("admin", "communications")
REFERENCE_READERS = ("admin", "communications", "dpo")
# Refusals about the uploaded file name the field; those about the person or the switch do not.
_FILE_CODES = frozenset({"unsupported_type", "corrupt", "too_large", "too_many_pixels", "empty",
                         "not_one_face", "not_one_voice"})


def biometric_error(exc: BiometricError) -> ApiError:
    """A refused biometric change in the API's error shape."""
    fields = {"file": exc.message} if exc.code in _FILE_CODES else None
    if exc.code in ("dpia_required", "invalid"):
        fields = {"dpia_reference": exc.message}
    return ApiError(exc.status, exc.code, exc.message, fields)


def _get_matching(modality: str) -> Response:
    """Whether this matching is on, on which DPIA, changed by whom and when."""
    return jsonify(face_matching_json(matching_setting(modality)))


def _put_matching(modality: str) -> Response:
    """Switch this matching on (a DPIA reference is required) or off (its references are deleted)."""
    data = validated(FaceMatchingIn, json_object())
    try:
        setting = set_matching(modality, enabled=data.enabled, dpia_reference=data.dpia_reference,
                               actor=_actor())
    except BiometricError as exc:
        db.session.rollback()
        raise biometric_error(exc) from None
    db.session.commit()
    return jsonify(face_matching_json(setting))


@bp.get("/settings/face-matching")
@allow(*SETTINGS_READERS)
def get_face_matching() -> Response:
    """Whether face matching is on, on which DPIA, changed by whom and when."""
    return _get_matching(FACE)


@bp.put("/settings/face-matching")
@allow("admin")
def put_face_matching() -> Response:
    """Switch face matching on (a DPIA reference is required) or off (every reference is deleted)."""
    return _put_matching(FACE)


@bp.get("/settings/voice-matching")
@allow(*SETTINGS_READERS)
def get_voice_matching() -> Response:
    """Whether voice matching is on, on which DPIA, changed by whom and when."""
    return _get_matching(VOICE)


@bp.put("/settings/voice-matching")
@allow("admin")
def put_voice_matching() -> Response:
    """Switch voice matching on (a DPIA reference is required) or off (every voice reference goes)."""
    return _put_matching(VOICE)


@bp.get("/people/<int:person_id>/reference-photos")
@allow(*REFERENCE_READERS)
def list_reference_photos(person_id: int) -> Response:
    """A person's references for face matching, oldest first (never the encodings)."""
    person = _person_or_404(person_id)
    return jsonify({"items": [reference_json(r) for r in references_of(person.id)]})


@bp.get("/people/<int:person_id>/reference-voices")
@allow(*REFERENCE_READERS)
def list_reference_voices(person_id: int) -> Response:
    """A person's references for voice matching, oldest first (never the encodings)."""
    person = _person_or_404(person_id)
    return jsonify({"items": [reference_json(r) for r in references_of(person.id, VOICE)]})


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


def _enrol(person: Person, modality: str) -> FaceReference | VoiceReference:
    """Read the one uploaded file and enrol it as a reference of this modality (committed)."""
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type",
                       _("Send the upload as multipart/form-data, with the file in the field “file”."))
    # Refuse before reading the file when nothing could be enrolled anyway.
    if (refusal := enrolment_refusal(person, utcnow(), modality)) is not None:
        raise biometric_error(refusal)
    actor, config = _actor(), current_app.config
    limits = Limits.from_config(config)
    # No transaction (nor SQLite's write lock) while the file arrives and is analysed.
    db.session.commit()
    try:
        _stream, form, files = parse_form_data(
            request.environ, silent=False,
            max_content_length=(limits.photo if modality == FACE else
                                min(limits.audio, MAX_REFERENCE_RECORDING_BYTES)) + FORM_OVERHEAD,
            max_form_memory_size=config.get("MAX_FORM_MEMORY_SIZE") or 500_000,
            max_form_parts=MAX_FORM_PARTS,
        )
    except ValueError:
        raise ApiError(400, "bad_request", _("The multipart body cannot be read.")) from None
    upload = _one_file(files, form)
    add = add_reference if modality == FACE else add_voice_reference
    try:
        reference = add(person, upload.stream.read(), actor=actor)
    except BiometricError as exc:
        db.session.rollback()
        raise biometric_error(exc) from None
    db.session.commit()
    return reference


@bp.post("/people/<int:person_id>/reference-photos")
@allow(*REFERENCE_WRITERS)
def add_reference_photo(person_id: int) -> tuple[Response, int, dict[str, str]]:
    """Enrol a reference photo (multipart field `file`, exactly one face); the photo is not kept."""
    reference = _enrol(_person_or_404(person_id), FACE)
    location = url_for("api.list_reference_photos", person_id=reference.person_id)
    return jsonify(reference_json(reference)), 201, {"Location": location}


@bp.post("/people/<int:person_id>/reference-voices")
@allow(*REFERENCE_WRITERS)
def add_reference_voice(person_id: int) -> tuple[Response, int, dict[str, str]]:
    """Enrol a reference recording (multipart `file`, one voice); the recording is not kept."""
    reference = _enrol(_person_or_404(person_id), VOICE)
    location = url_for("api.list_reference_voices", person_id=reference.person_id)
    return jsonify(reference_json(reference)), 201, {"Location": location}


def _delete_reference(person_id: int, reference_id: int, modality: str) -> tuple[str, int]:
    """Delete one reference of a person (audited), or 404."""
    person = _person_or_404(person_id)
    reference = reference_of(person.id, reference_id, modality)
    if reference is None:
        raise ApiError(404, "not_found", _("No reference photo with this id for this person.")
                       if modality == FACE else
                       _("No reference recording with this id for this person."))
    delete_reference(reference, actor=_actor(), reason="by_staff")
    db.session.commit()
    return "", 204


@bp.delete("/people/<int:person_id>/reference-photos/<int:reference_id>")
@allow(*REFERENCE_WRITERS)
def delete_reference_photo(person_id: int, reference_id: int) -> tuple[str, int]:
    """Delete one reference photo of a person (audited)."""
    return _delete_reference(person_id, reference_id, FACE)


@bp.delete("/people/<int:person_id>/reference-voices/<int:reference_id>")
@allow(*REFERENCE_WRITERS)
def delete_reference_voice(person_id: int, reference_id: int) -> tuple[str, int]:
    """Delete one reference recording of a person (audited)."""
    return _delete_reference(person_id, reference_id, VOICE)
