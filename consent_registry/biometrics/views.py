"""Web pages for face matching: the school's switch (admin) and reference photos on the person page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from ..audit import Actor
from ..auth.access import allow
from ..db import db, utcnow
from ..people.models import Person
from ..people.views import WRITERS as PEOPLE_WRITERS
from ..people.views import person_or_404
from .models import FaceReference
from .service import (
    BiometricError,
    add_reference,
    delete_reference,
    enrolment_refusal,
    face_matching,
    reference_of,
    references_of,
    set_face_matching,
)

settings_bp = Blueprint("settings", __name__, url_prefix="/settings")
bp = Blueprint("reference_photos", __name__, url_prefix="/people")
REFERENCE_WRITERS = ("admin", "communications")
REFERENCE_READERS = ("admin", "communications", "dpo")


def _actor() -> Actor:
    """The staff member making the change."""
    return Actor("user", current_user.id)


def _reference_count() -> int:
    """How many reference encodings the school keeps."""
    return db.session.query(FaceReference).count()


def _settings_page(*, values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                   status: int = 200) -> tuple[str, int]:
    """The face-matching settings page."""
    setting = face_matching()
    if values is None:
        values = {"enabled": "1" if setting.enabled else "0",
                  "dpia_reference": setting.dpia_reference or ""}
    return render_template(
        "settings/face_matching.html", setting=setting, values=values, errors=errors or {},
        reference_count=_reference_count(), can_change=current_user.role == "admin",
    ), status


@settings_bp.get("/face-matching")
@allow("admin", "dpo")
def face_matching_page() -> tuple[str, int]:
    """Whether face matching is on, and (for the admin) the form to change it."""
    return _settings_page()


@settings_bp.post("/face-matching")
@allow("admin")
def face_matching_submit() -> tuple[str, int] | Response:
    """Switch face matching on with a DPIA reference, or off after confirming the deletions."""
    values = {"enabled": request.form.get("enabled", ""),
              "dpia_reference": request.form.get("dpia_reference", "")}
    if values["enabled"] not in ("0", "1"):
        return _settings_page(values=values, errors={"enabled": _("Choose on or off.")}, status=422)
    enabled = values["enabled"] == "1"
    count = _reference_count()
    if not enabled and count and request.form.get("confirm") != "1":
        return _settings_page(values=values, status=422, errors={"confirm": _(
            "Confirm that all %(n)d reference photos will be deleted.", n=count)})
    try:
        set_face_matching(enabled=enabled, dpia_reference=values["dpia_reference"], actor=_actor())
    except BiometricError as exc:
        db.session.rollback()
        return _settings_page(values=values, errors={"dpia_reference": exc.message}, status=422)
    db.session.commit()
    flash(_("Face matching is now on.") if enabled else _("Face matching is now off."), "success")
    return redirect(url_for("settings.face_matching_page"), 303)


def reference_photos_panel(person: Person) -> dict[str, Any]:
    """What the person page's reference-photo section shows to the current user."""
    role = current_user.role
    refusal = enrolment_refusal(person, utcnow())
    references = references_of(person.id)
    return {
        "count": len(references),
        "references": references if role in REFERENCE_READERS else [],
        "can_see_details": role in REFERENCE_READERS,
        "can_manage": role in REFERENCE_WRITERS,
        "can_upload": role in REFERENCE_WRITERS and refusal is None,
        "why_not": refusal.message if refusal is not None else None,
    }


@bp.app_context_processor
def _panel_helper() -> dict[str, Any]:
    """Templates call reference_photos_panel(person) only where the section is shown."""
    return {"reference_photos_panel": reference_photos_panel}


def _person_page_with_error(person: Person, message: str, status: int) -> tuple[str, int]:
    """The person page again, with a refusal shown in the reference-photo section."""
    return render_template("people/detail.html", person=person,
                           can_write=current_user.role in PEOPLE_WRITERS, errors={}, values={},
                           reference_photo_error=message), status


@bp.post("/<int:person_id>/reference-photos")
@allow(*REFERENCE_WRITERS)
def upload(person_id: int) -> tuple[str, int] | Response:
    """Enrol one reference photo of a person; the photo itself is not kept."""
    person = person_or_404(person_id)
    upload_file = request.files.get("file")
    if upload_file is None or not upload_file.filename:
        return _person_page_with_error(person, _("Choose a photo."), 422)
    if (refusal := enrolment_refusal(person, utcnow())) is not None:
        return _person_page_with_error(person, refusal.message, refusal.status)
    actor = _actor()
    db.session.commit()  # no transaction (nor SQLite's write lock) while the face is found
    try:
        add_reference(person, upload_file.stream.read(), actor=actor)
    except BiometricError as exc:
        db.session.rollback()
        return _person_page_with_error(person, exc.message, exc.status)
    db.session.commit()
    flash(_("The reference photo has been added; the photo itself is not kept."), "success")
    return redirect(url_for("people.detail", person_id=person_id), 303)


@bp.post("/<int:person_id>/reference-photos/<int:reference_id>/delete")
@allow(*REFERENCE_WRITERS)
def delete(person_id: int, reference_id: int) -> Response:
    """Delete one reference of a person (audited)."""
    person = person_or_404(person_id)
    reference = reference_of(person.id, reference_id)
    if reference is None:
        abort(404)
    delete_reference(reference, actor=_actor(), reason="by_staff")
    db.session.commit()
    flash(_("The reference photo has been deleted."), "success")
    return redirect(url_for("people.detail", person_id=person_id), 303)
