"""DPO pages for subject-access exports: request one, follow its status, download it once."""

from __future__ import annotations

from flask import abort, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from ..audit import Actor
from ..auth.access import allow
from ..db import db
from ..jobs import enqueue
from ..people.models import Person
from . import bp
from .export import ExportNotReady, build_subject_export, get_export, request_export, take_download
from .person_file import get_person_checked

DPO_READERS = ("dpo", "admin")


@bp.post("/people/<int:person_id>/export")
@allow(*DPO_READERS)
def request_person_export(person_id: int) -> Response:
    """Queue a subject-access export of the person and show its status page."""
    person = get_person_checked(person_id)
    if person is None:
        abort(404)
    export = request_export(person, user_id=current_user.id, actor=Actor("user", current_user.id))
    export_id = export.id
    db.session.commit()
    enqueue(build_subject_export, export_id)
    return redirect(url_for("dpo.export_status", export_id=export_id), 303)


@bp.get("/exports/<int:export_id>")
@allow(*DPO_READERS)
def export_status(export_id: int) -> str:
    """Where an export stands: queued, building, ready (with the download), downloaded or failed."""
    export = get_export(export_id)
    if export is None:
        abort(404)
    person = db.session.get(Person, export.person_id)
    return render_template("dpo/export_status.html", export=export, person=person)


@bp.get("/exports/<int:export_id>/download")
@allow(*DPO_READERS)
def export_download(export_id: int) -> Response | tuple[str, int]:
    """The ZIP, once: it is deleted after this download; later tries get 410 Gone."""
    export = get_export(export_id)
    if export is None:
        abort(404)
    person_id = export.person_id
    try:
        body, size = take_download(export, actor=Actor("user", current_user.id))
    except ExportNotReady as exc:
        export = get_export(export_id)
        code = 410 if exc.status == "downloaded" else 409
        return render_template("dpo/export_status.html", export=export,
                               person=db.session.get(Person, person_id), refused=exc.status), code
    response = Response(body, mimetype="application/zip", direct_passthrough=True)
    response.content_length = size
    response.headers["Content-Disposition"] = (
        f'attachment; filename="subject-access-{person_id}-{export_id}.zip"')
    response.headers["Cache-Control"] = "no-store"
    return response
