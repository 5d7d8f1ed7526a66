"""DPO pages: a person's file and the printable proof of a publication; every view is audited."""

from __future__ import annotations

from flask import abort, render_template
from flask_login import current_user

from ..audit import Actor, record
from ..auth.access import allow
from ..db import db
from . import bp
from .person_file import get_person_checked, person_file
from .proof import get_publication_checked, publication_proof

DPO_READERS = ("dpo", "admin")


@bp.get("/people/<int:person_id>")
@allow(*DPO_READERS)
def person_file_page(person_id: int) -> str:
    """Everything held about one person; the view itself is recorded (person:file_viewed)."""
    person = get_person_checked(person_id)
    if person is None:
        abort(404)
    document = person_file(person)
    record("person:file_viewed", actor=Actor("user", current_user.id), subject_type="person",
           subject_id=person.id, details={"person_id": person.id, "via": "web"})
    db.session.commit()
    return render_template("dpo/file.html", file=document, person_id=person_id)


@bp.get("/publications/<int:publication_id>/proof")
@allow(*DPO_READERS)
def publication_proof_page(publication_id: int) -> str:
    """The printable proof of one publication; recorded (publication:proof_viewed)."""
    publication = get_publication_checked(publication_id)
    if publication is None:
        abort(404)
    proof = publication_proof(publication)
    record("publication:proof_viewed", actor=Actor("user", current_user.id),
           subject_type="publication", subject_id=publication.id, details={"via": "web"})
    db.session.commit()
    return render_template("dpo/proof.html", proof=proof)
