"""The record of processing (page and Markdown download) and the DPO's index of pages."""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template, url_for
from flask_babel import get_locale, lazy_gettext
from flask_login import current_user
from werkzeug.wrappers import Response

from ..audit import Actor, record
from ..auth.access import allow
from ..biometrics.service import face_matching, voice_matching
from ..db import db
from . import bp
from .processing import processing_markdown, record_of_processing

READERS = ("dpo", "admin")
# Pages the index links to when they exist: (endpoint, title, description). Others are built in
# parallel; a link appears once its view is registered.
PAGES: tuple[tuple[str, Any, Any], ...] = (
    ("dpo.audit", lazy_gettext("Audit log"),
     lazy_gettext("Search, filter and export every audit event.")),
    ("dpo.audit_verify", lazy_gettext("Audit chain verification"),
     lazy_gettext("Check that no audit event was changed or removed.")),
    ("dpo.processing", lazy_gettext("Record of processing"),
     lazy_gettext("GDPR art. 30, from the live configuration.")),
    ("dpo.retention", lazy_gettext("Retention"),
     lazy_gettext("The retention periods and what was removed.")),
    ("settings.face_matching_page", lazy_gettext("Face matching"),
     lazy_gettext("The switch and its DPIA reference.")),
    ("settings.voice_matching_page", lazy_gettext("Voice matching"),
     lazy_gettext("The switch and its DPIA reference.")),
    ("people.list_people", lazy_gettext("People"),
     lazy_gettext("Open a person to see their file, export their data or erase them.")),
    ("publications.list_publications", lazy_gettext("Publications"),
     lazy_gettext("Open a publication to see the proof of consent for everyone in it.")),
)


def _record() -> dict[str, Any]:
    """The record of processing in the page's language."""
    return record_of_processing(current_app.config, face_matching(),
                                language=str(get_locale() or "nl"), voice_matching=voice_matching())


def _links() -> list[dict[str, str]]:
    """Links to the DPO pages that exist, then any other DPO page without arguments."""
    links = []
    listed = {endpoint for endpoint, _title, _text in PAGES}
    for endpoint, title, text in PAGES:
        if endpoint in current_app.view_functions:
            links.append({"url": url_for(endpoint), "title": str(title), "text": str(text)})
    for rule in sorted(current_app.url_map.iter_rules(), key=lambda r: r.rule):
        if (rule.endpoint.startswith("dpo.") and rule.endpoint not in listed
                and rule.endpoint != "dpo.index" and "GET" in (rule.methods or ())
                and not rule.arguments and "." not in rule.rule.rsplit("/", 1)[-1]):
            links.append({"url": url_for(rule.endpoint), "title": rule.rule, "text": ""})
    return links


@bp.get("/")
@allow(*READERS)
def index() -> str:
    """The DPO's starting page: every DPO page that exists."""
    return render_template("dpo/index.html", links=_links())


@bp.get("/processing")
@allow(*READERS)
def processing() -> str:
    """The record of processing, printable."""
    return render_template("dpo/processing.html", record=_record())


@bp.get("/processing.md")
@allow(*READERS)
def processing_md() -> Response:
    """The record of processing as a Markdown download (audited)."""
    text = processing_markdown(_record())
    record("processing:exported", actor=Actor("user", current_user.id), subject_type="processing",
           details={"format": "markdown"})
    db.session.commit()
    return Response(text, mimetype="text/markdown", headers={
        "Content-Disposition": 'attachment; filename="record-of-processing.md"',
        "Cache-Control": "no-store"})
