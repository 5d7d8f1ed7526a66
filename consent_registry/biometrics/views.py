"""Web pages for face and voice matching: the school's switches (admin) and references on the person page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import current_user
from werkzeug.wrappers import Response

from ..audit import Actor
from ..auth.access import allow
from ..confirm import confirmation_page, confirmed
from ..db import db, utcnow
from ..people.models import Person
from ..people.views import WRITERS as PEOPLE_WRITERS
from ..people.views import person_or_404
from .models import FaceReference, VoiceReference
from .service import (
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
from .voice_enrolment import add_voice_reference

settings_bp = Blueprint("settings", __name__, url_prefix="/settings")
bp = Blueprint("reference_photos", __name__, url_prefix="/people")
REFERENCE_WRITERS = ("admin", "communications")
REFERENCE_READERS = ("admin", "communications", "dpo")
# What the pages say for each modality; the templates are shared.
TEXTS: dict[str, dict[str, Any]] = {
    FACE: {
        "title": lazy_gettext("Face matching"),
        "intro": lazy_gettext(
            "Face matching suggests who a face in a photo is by comparing it with reference photos. "
            "That is processing of biometric data: it is off by default, may only be switched on "
            "after a DPIA (data protection impact assessment), and only people with a valid consent "
            "for face matching are enrolled. Everyone else is tagged by hand."),
        "kept": lazy_gettext("Reference photos kept"),
        "off_warning": lazy_gettext(
            "Switching face matching off deletes every reference photo encoding (%(n)d now) and "
            "every unconfirmed suggestion. They cannot be restored; people have to be enrolled "
            "again."),
        "confirm": lazy_gettext(
            "When switching off: I understand that all %(n)d reference photo encodings will be "
            "deleted."),
        "confirm_error": lazy_gettext("Confirm that all %(n)d reference photos will be deleted."),
        "now_on": lazy_gettext("Face matching is now on."),
        "now_off": lazy_gettext("Face matching is now off."),
        "section": lazy_gettext("Reference photos for face matching"),
        "file_label": lazy_gettext("Photo with exactly one face"),
        "accept": "image/jpeg,image/png,image/webp,image/heic,image/heif",
        "add": lazy_gettext("Add reference photo"),
        "cannot_add": lazy_gettext("No reference photo can be added: %(why)s"),
        "choose": lazy_gettext("Choose a photo."),
        "added": lazy_gettext("The reference photo has been added; the photo itself is not kept."),
        "deleted": lazy_gettext("The reference photo has been deleted."),
    },
    VOICE: {
        "title": lazy_gettext("Voice matching"),
        "intro": lazy_gettext(
            "Voice matching suggests who a voice in a recording or film is by comparing it with "
            "reference recordings. That is processing of biometric data: it is off by default, may "
            "only be switched on after a DPIA (data protection impact assessment), and only people "
            "with a valid consent for biometric matching are enrolled. Everyone else is tagged by "
            "hand."),
        "kept": lazy_gettext("Reference recordings kept"),
        "off_warning": lazy_gettext(
            "Switching voice matching off deletes every reference voice encoding (%(n)d now) and "
            "every unconfirmed voice suggestion. They cannot be restored; people have to be "
            "enrolled again."),
        "confirm": lazy_gettext(
            "When switching off: I understand that all %(n)d reference voice encodings will be "
            "deleted."),
        "confirm_error": lazy_gettext("Confirm that all %(n)d reference recordings will be deleted."),
        "now_on": lazy_gettext("Voice matching is now on."),
        "now_off": lazy_gettext("Voice matching is now off."),
        "section": lazy_gettext("Reference recordings for voice matching"),
        "file_label": lazy_gettext("Recording of this person speaking alone (at least 3 seconds)"),
        "accept": "audio/*",
        "add": lazy_gettext("Add reference recording"),
        "cannot_add": lazy_gettext("No reference recording can be added: %(why)s"),
        "choose": lazy_gettext("Choose a recording."),
        "added": lazy_gettext("The reference recording has been added; the recording itself is "
                              "not kept."),
        "deleted": lazy_gettext("The reference recording has been deleted."),
    },
}
_ENDPOINTS = {FACE: ("settings.face_matching_page", "settings.face_matching_submit",
                     "reference_photos.upload", "reference_photos.delete"),
              VOICE: ("settings.voice_matching_page", "settings.voice_matching_submit",
                      "reference_photos.upload_voice", "reference_photos.delete_voice")}


def _actor() -> Actor:
    """The staff member making the change."""
    return Actor("user", current_user.id)


def _reference_count(modality: str) -> int:
    """How many reference encodings of this modality the school keeps."""
    return db.session.query(FaceReference if modality == FACE else VoiceReference).count()


def _settings_page(modality: str, *, values: dict[str, Any] | None = None,
                   errors: dict[str, str] | None = None, status: int = 200) -> tuple[str, int]:
    """The matching settings page of one modality."""
    setting = matching_setting(modality)
    if values is None:
        values = {"enabled": "1" if setting.enabled else "0",
                  "dpia_reference": setting.dpia_reference or ""}
    return render_template(
        "settings/matching.html", setting=setting, values=values, errors=errors or {},
        reference_count=_reference_count(modality), can_change=current_user.role == "admin",
        texts=TEXTS[modality], submit_endpoint=_ENDPOINTS[modality][1],
    ), status


def _off_confirmation(modality: str, *, values: dict[str, str], count: int) -> tuple[str, int]:
    """The page that asks before switching matching off (and deleting every reference)."""
    texts = TEXTS[modality]
    return confirmation_page(
        title=_("Switch off: %(what)s", what=texts["title"]),
        explanation=[str(texts["off_warning"]) % {"n": count}],
        action=url_for(_ENDPOINTS[modality][1]), button=_("Yes, switch it off"),
        cancel=url_for(_ENDPOINTS[modality][0]),
        fields=[("enabled", "0"), ("dpia_reference", values["dpia_reference"]), ("confirm", "1")])


def _settings_submit(modality: str) -> tuple[str, int] | Response:
    """Switch matching on with a DPIA reference, or off after confirming the deletions."""
    texts = TEXTS[modality]
    values = {"enabled": request.form.get("enabled", ""),
              "dpia_reference": request.form.get("dpia_reference", "")}
    if values["enabled"] not in ("0", "1"):
        return _settings_page(modality, values=values, errors={"enabled": _("Choose on or off.")},
                              status=422)
    enabled = values["enabled"] == "1"
    count = _reference_count(modality)
    if not enabled and matching_setting(modality).enabled and not confirmed():
        return _off_confirmation(modality, values=values, count=count)
    if not enabled and count and request.form.get("confirm") != "1":
        return _settings_page(modality, values=values, status=422,
                              errors={"confirm": str(texts["confirm_error"]) % {"n": count}})
    try:
        set_matching(modality, enabled=enabled, dpia_reference=values["dpia_reference"],
                     actor=_actor())
    except BiometricError as exc:
        db.session.rollback()
        return _settings_page(modality, values=values, errors={"dpia_reference": exc.message},
                              status=422)
    db.session.commit()
    flash(str(texts["now_on"] if enabled else texts["now_off"]), "success")
    return redirect(url_for(_ENDPOINTS[modality][0]), 303)


@settings_bp.get("/face-matching")
@allow("admin", "dpo")
def face_matching_page() -> tuple[str, int]:
    """Whether face matching is on, and (for the admin) the form to change it."""
    return _settings_page(FACE)


@settings_bp.post("/face-matching")
@allow("admin")
def face_matching_submit() -> tuple[str, int] | Response:
    """Switch face matching on with a DPIA reference, or off after confirming the deletions."""
    return _settings_submit(FACE)


@settings_bp.get("/voice-matching")
@allow("admin", "dpo")
def voice_matching_page() -> tuple[str, int]:
    """Whether voice matching is on, and (for the admin) the form to change it."""
    return _settings_page(VOICE)


@settings_bp.post("/voice-matching")
@allow("admin")
def voice_matching_submit() -> tuple[str, int] | Response:
    """Switch voice matching on with a DPIA reference, or off after confirming the deletions."""
    return _settings_submit(VOICE)


def references_panel(person: Person, modality: str = FACE) -> dict[str, Any]:
    """What the person page's reference section of one modality shows to the current user."""
    role = current_user.role
    refusal = enrolment_refusal(person, utcnow(), modality)
    references = references_of(person.id, modality)
    return {
        "count": len(references),
        "references": references if role in REFERENCE_READERS else [],
        "can_see_details": role in REFERENCE_READERS,
        "can_manage": role in REFERENCE_WRITERS,
        "can_upload": role in REFERENCE_WRITERS and refusal is None,
        "why_not": refusal.message if refusal is not None else None,
        "modality": modality,
        "texts": TEXTS[modality],
        "upload_endpoint": _ENDPOINTS[modality][2],
        "delete_endpoint": _ENDPOINTS[modality][3],
    }


def reference_photos_panel(person: Person) -> dict[str, Any]:
    """The reference-photo section of the person page."""
    return references_panel(person, FACE)


@bp.app_context_processor
def _panel_helper() -> dict[str, Any]:
    """Templates call references_panel(person, modality) only where the section is shown."""
    return {"reference_photos_panel": reference_photos_panel, "references_panel": references_panel}


def _person_page_with_error(person: Person, message: str, status: int, modality: str
                            ) -> tuple[str, int]:
    """The person page again, with a refusal shown in that modality's reference section."""
    return render_template("people/detail.html", person=person,
                           can_write=current_user.role in PEOPLE_WRITERS, errors={}, values={},
                           reference_errors={modality: message},
                           reference_photo_error=message if modality == FACE else None), status


def _upload(person_id: int, modality: str) -> tuple[str, int] | Response:
    """Enrol one reference of a person; the photo or recording itself is not kept."""
    person = person_or_404(person_id)
    texts = TEXTS[modality]
    upload_file = request.files.get("file")
    if upload_file is None or not upload_file.filename:
        return _person_page_with_error(person, str(texts["choose"]), 422, modality)
    if (refusal := enrolment_refusal(person, utcnow(), modality)) is not None:
        return _person_page_with_error(person, refusal.message, refusal.status, modality)
    actor = _actor()
    db.session.commit()  # no transaction (nor SQLite's write lock) while the file is analysed
    add = add_reference if modality == FACE else add_voice_reference
    try:
        add(person, upload_file.stream.read(), actor=actor)
    except BiometricError as exc:
        db.session.rollback()
        return _person_page_with_error(person, exc.message, exc.status, modality)
    db.session.commit()
    flash(str(texts["added"]), "success")
    return redirect(url_for("people.detail", person_id=person_id), 303)


def _delete(person_id: int, reference_id: int, modality: str) -> Response:
    """Delete one reference of a person (audited)."""
    person = person_or_404(person_id)
    reference = reference_of(person.id, reference_id, modality)
    if reference is None:
        abort(404)
    delete_reference(reference, actor=_actor(), reason="by_staff")
    db.session.commit()
    flash(str(TEXTS[modality]["deleted"]), "success")
    return redirect(url_for("people.detail", person_id=person_id), 303)


@bp.post("/<int:person_id>/reference-photos")
@allow(*REFERENCE_WRITERS)
def upload(person_id: int) -> tuple[str, int] | Response:
    """Enrol one reference photo of a person; the photo itself is not kept."""
    return _upload(person_id, FACE)


@bp.post("/<int:person_id>/reference-photos/<int:reference_id>/delete")
@allow(*REFERENCE_WRITERS)
def delete(person_id: int, reference_id: int) -> Response:
    """Delete one reference photo of a person (audited)."""
    return _delete(person_id, reference_id, FACE)


@bp.post("/<int:person_id>/reference-voices")
@allow(*REFERENCE_WRITERS)
def upload_voice(person_id: int) -> tuple[str, int] | Response:
    """Enrol one reference recording of a person; the recording itself is not kept."""
    return _upload(person_id, VOICE)


@bp.post("/<int:person_id>/reference-voices/<int:reference_id>/delete")
@allow(*REFERENCE_WRITERS)
def delete_voice(person_id: int, reference_id: int) -> Response:
    """Delete one reference recording of a person (audited)."""
    return _delete(person_id, reference_id, VOICE)
