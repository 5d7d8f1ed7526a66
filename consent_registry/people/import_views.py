"""The import page: upload a pupil administration export, preview the changes, then apply."""

from __future__ import annotations

import hashlib

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from ..audit import Actor, record
from ..auth.access import allow
from ..db import db, utcnow
from .importing import (
    MAX_IMPORT_BYTES,
    ImportBatch,
    apply_plan,
    discard_stale_batches,
    plan_for,
    report_of,
)

bp = Blueprint("people_import", __name__, url_prefix="/people/import")
MAPPABLE_FIELDS = ("external_id", "given_name", "family_name_prefix", "family_name", "birth_date",
                   "email", "group", "guardian1_name", "guardian1_email", "guardian1_relation",
                   "guardian2_name", "guardian2_email", "guardian2_relation")


def _batch_or_404(batch_id: int) -> ImportBatch:
    """A batch that is still waiting to be applied, or 404."""
    batch = db.session.get(ImportBatch, batch_id) if batch_id < 2**31 else None
    if batch is None or batch.status != "previewed":
        abort(404)
    return batch


@bp.get("/")
@allow("admin")
def upload_form() -> str:
    """The upload form."""
    return render_template("people/import.html")


@bp.post("/")
@allow("admin")
def upload() -> tuple[str, int] | Response:
    """Keep the uploaded file for its preview; nothing in the register changes yet."""
    file = request.files.get("file")
    if file is None or not file.filename:
        return render_template("people/import.html", error=_("Choose a file.")), 422
    content = file.read(MAX_IMPORT_BYTES + 1)
    if len(content) > MAX_IMPORT_BYTES:
        return render_template("people/import.html", error=_("The file is larger than 10 MB.")), 413
    if not content.strip():
        return render_template("people/import.html", error=_("The file is empty.")), 422
    batch = ImportBatch(uploaded_by=current_user.id, filename=file.filename[:255],
                        sha256=hashlib.sha256(content).hexdigest(), content=content, mapping={})
    db.session.add(batch)
    db.session.flush()
    record("import:upload", actor=Actor("user", current_user.id), subject_type="import",
           subject_id=batch.id, details={"sha256": batch.sha256, "bytes": len(content)})
    discard_stale_batches(now=utcnow())
    db.session.commit()
    return redirect(url_for("people_import.preview", batch_id=batch.id))


@bp.get("/<int:batch_id>")
@allow("admin")
def preview(batch_id: int) -> str:
    """What applying the file would do: counts, each rejected row with its reason, missing pupils."""
    batch = _batch_or_404(batch_id)
    plan = plan_for(batch.content, batch.mapping)
    return render_template("people/import_preview.html", batch=batch, plan=plan,
                           report=report_of(plan), fields=MAPPABLE_FIELDS)


@bp.post("/<int:batch_id>/mapping")
@allow("admin")
def set_mapping(batch_id: int) -> Response:
    """Tell the import which column holds which field, then preview again."""
    batch = _batch_or_404(batch_id)
    batch.mapping = {
        name: request.form[name].strip()[:100]
        for name in MAPPABLE_FIELDS if request.form.get(name, "").strip()
    }
    db.session.commit()
    return redirect(url_for("people_import.preview", batch_id=batch.id))


@bp.post("/<int:batch_id>/apply")
@allow("admin")
def apply(batch_id: int) -> tuple[str, int] | Response:
    """Apply the whole file, or nothing when any row is rejected."""
    batch = _batch_or_404(batch_id)
    plan = plan_for(batch.content, batch.mapping)
    report = apply_plan(plan, actor=Actor("user", current_user.id), source_sha256=batch.sha256)
    if not report.applied:
        db.session.rollback()
        flash(_("Nothing was imported: fix the rejected rows and upload the file again."), "error")
        return render_template("people/import_preview.html", batch=batch, plan=plan,
                               report=report, fields=MAPPABLE_FIELDS), 422
    # The file holds personal data that is now in the register; keep only its fingerprint.
    batch.content = b""
    batch.status = "applied"
    batch.applied_at = utcnow()
    batch.summary = report.as_dict()
    db.session.commit()
    return render_template("people/import_done.html", report=report)
