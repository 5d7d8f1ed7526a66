"""API routes for subject-access exports: request one (202) and follow its status."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from flask import Response, jsonify, url_for
from flask_babel import gettext as _
from pydantic import BaseModel, Field

from ..auth.access import allow
from ..db import db
from ..dpo.export import build_subject_export, export_json, get_export, request_export
from ..dpo.models import EXPORT_STATES, SubjectExport
from ..dpo.person_file import get_person_checked
from ..jobs import enqueue
from . import bp
from .errors import ApiError
from .people import _actor

DPO_READERS = ("dpo", "admin")


class ExportCreated(BaseModel):
    """An export queued: follow it at `Location`, download it once (logged in) at `download_url`."""

    export_id: int
    status: Literal[EXPORT_STATES]  # type: ignore[valid-type]
    download_url: str = Field(description="The web page that serves the ZIP once, to a logged-in "
                                          "DPO or admin, when the status is ready")


class ExportOut(ExportCreated):
    """Where an export stands."""

    person_id: int
    requested_by: int | None
    requested_at: datetime
    size: int | None = Field(description="Bytes of the ZIP once built")
    error: str | None = Field(description="Why the build failed (status failed)")
    downloaded_at: datetime | None


def _download_url(export: SubjectExport) -> str:
    """The absolute URL of the one-time download."""
    return url_for("dpo.export_download", export_id=export.id, _external=True)


@bp.post("/people/<int:person_id>/export")
@allow(*DPO_READERS)
def request_person_export_api(person_id: int) -> tuple[Response, int, dict[str, str]]:
    """Queue a subject-access export of the person; 202 with its id, status and download link."""
    person = get_person_checked(person_id)
    if person is None:
        raise ApiError(404, "not_found", _("No person with this id."))
    actor = _actor()
    export = request_export(person, user_id=actor.id, actor=actor)
    export_id = export.id
    db.session.commit()
    enqueue(build_subject_export, export_id)
    export = get_export(export_id)
    assert export is not None
    db.session.refresh(export)
    return (jsonify({"export_id": export.id, "status": export.status,
                     "download_url": _download_url(export)}), 202,
            {"Location": url_for("api.get_export_route", export_id=export.id)})


@bp.get("/exports/<int:export_id>")
@allow(*DPO_READERS)
def get_export_route(export_id: int) -> Response:
    """Where an export stands (queued, building, ready, downloaded, failed)."""
    export = get_export(export_id)
    if export is None:
        raise ApiError(404, "not_found", _("No export with this id."))
    return jsonify(export_json(export, _download_url(export)))
