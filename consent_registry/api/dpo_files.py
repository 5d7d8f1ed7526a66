"""API for the data protection officer (read-only): a person's file and a publication's proof."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from pydantic import BaseModel, ConfigDict, Field

from ..audit import record
from ..auth.access import allow
from ..db import db
from ..dpo.person_file import get_person_checked, person_file
from ..dpo.proof import get_publication_checked, publication_proof
from ..translate import _
from . import bp
from .errors import ApiError
from .people import _actor

DPO_READERS = ("dpo", "admin")


class ReferencePhotosHeld(BaseModel):
    """Whether reference encodings are held: a count and dates, never the encodings."""

    model_config = ConfigDict(extra="forbid")

    held: bool
    count: int
    created_at: list[str]
    consent_record_ids: list[int]


class PersonFileOut(BaseModel):
    """Everything held about one person (dates and times as ISO 8601 strings)."""

    model_config = ConfigDict(extra="forbid")

    person: dict[str, Any]
    guardians: list[dict[str, Any]]
    consent_records: list[dict[str, Any]] = Field(
        description="Every record, with text_version/text_sha256, decider, method, decided_at")
    consent_requests: list[dict[str, Any]]
    media: list[dict[str, Any]] = Field(description="Items they are identified in, with appearances")
    match_suggestions: list[dict[str, Any]]
    publications: list[dict[str, Any]] = Field(
        description="Publications that showed them, with the consent_record_ids that allowed it")
    takedowns: list[dict[str, Any]]
    reference_photos: ReferencePhotosHeld
    reference_voices: ReferencePhotosHeld = Field(description="Reference recordings for voice matching")
    audit_events: list[dict[str, Any]]


class ProofPerson(BaseModel):
    """A person shown in a publication and the consent records that allowed it at that moment."""

    model_config = ConfigDict(extra="forbid")

    person_id: int
    name: str | None
    external_id: str | None
    appearance_ids: list[int]
    consent_state: str | None
    valid_until: str | None
    consent_records: list[dict[str, Any]]


class PublicationProofOut(BaseModel):
    """The proof of one publication: people, consent records, attestation, publisher, state."""

    model_config = ConfigDict(extra="forbid")

    publication_id: int
    media_id: int | None
    media_sha256: str
    rendition_sha256: str | None
    channel: str
    connector: str
    caption: str | None
    post_id: str | None
    state: str
    live: bool
    attested: bool
    publisher: dict[str, Any] | None
    allowed: bool | None
    evaluated_at: str | None
    created_at: str | None
    published_at: str | None
    people: list[ProofPerson]
    appearances: list[dict[str, Any]]
    takedown: dict[str, Any] | None


@bp.get("/people/<int:person_id>/file")
@allow(*DPO_READERS)
def get_person_file(person_id: int) -> Response:
    """A person's whole file; the view is audited (person:file_viewed)."""
    person = get_person_checked(person_id)
    if person is None:
        raise ApiError(404, "not_found", _("No person with this id."))
    document = person_file(person)
    record("person:file_viewed", actor=_actor(), subject_type="person", subject_id=person.id,
           details={"person_id": person.id, "via": "api"})
    db.session.commit()
    return jsonify(document)


@bp.get("/publications/<int:publication_id>/proof")
@allow(*DPO_READERS)
def get_publication_proof(publication_id: int) -> Response:
    """A publication's proof of consent; the view is audited (publication:proof_viewed)."""
    publication = get_publication_checked(publication_id)
    if publication is None:
        raise ApiError(404, "not_found", _("No publication with this id."))
    proof = publication_proof(publication)
    record("publication:proof_viewed", actor=_actor(), subject_type="publication",
           subject_id=publication.id, details={"via": "api"})
    db.session.commit()
    return jsonify(proof)
