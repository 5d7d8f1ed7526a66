"""The proof of one publication: who was in it and which consent allowed each of them at that moment."""

from __future__ import annotations

from typing import Any

from ..auth.models import User
from ..db import db
from ..people.models import Person
from ..publishing.models import Publication
from .person_file import consent_records_by_id, iso, takedown_json

MAX_ID = 2**31 - 1


def get_publication_checked(publication_id: int) -> Publication | None:
    """The publication with this id, or None (also for ids no row can have)."""
    return db.session.get(Publication, publication_id) if 0 < publication_id <= MAX_ID else None


def _user(user_id: int | None) -> dict[str, Any] | None:
    """A staff member as id, name and e-mail address."""
    user = db.session.get(User, user_id) if user_id is not None else None
    if user is None:
        return None if user_id is None else {"id": user_id, "name": None, "email": None}
    return {"id": user.id, "name": user.name or None, "email": user.email}


def _decider_name(record: dict[str, Any], person: Person | None) -> str | None:
    """Who decided: the guardian's name, or the person's own."""
    if record["decider_kind"] == "guardian":
        return record["guardian_name"]
    return person.full_name if person else None


def publication_proof(publication: Publication) -> dict[str, Any]:
    """Per person the consent records that allowed the publication; attestation, publisher, state."""
    decision = publication.decision or {}
    entries = list(decision.get("people", []))
    records = consent_records_by_id(
        sorted({r for e in entries for r in (e.get("consent_record_ids") or [])}))
    people = []
    for entry in entries:
        person = db.session.get(Person, entry["person_id"])
        consent = []
        for record_id in entry.get("consent_record_ids") or []:
            record = records.get(record_id)
            if record is None:  # removed when its proof period ended
                consent.append({"id": record_id, "removed": True})
                continue
            consent.append({**record, "decider_name": _decider_name(record, person),
                            "removed": False})
        people.append({
            "person_id": entry["person_id"],
            "name": person.full_name if person else None,
            "external_id": person.external_id if person else None,
            "appearance_ids": list(entry.get("appearance_ids") or []),
            "consent_state": entry.get("state"),
            "valid_until": entry.get("valid_until"),
            "consent_records": consent,
        })
    return {
        "publication_id": publication.id, "media_id": publication.media_id,
        "media_sha256": publication.media_sha256, "rendition_sha256": publication.rendition_sha256,
        "channel": publication.channel, "connector": publication.connector,
        "caption": publication.caption, "post_id": publication.post_id,
        "state": publication.state, "live": publication.state == "live",
        "attested": publication.attested, "publisher": _user(publication.published_by),
        "allowed": decision.get("allowed"), "evaluated_at": decision.get("evaluated_at"),
        "created_at": iso(publication.created_at), "published_at": iso(publication.published_at),
        "people": people,
        "appearances": list(decision.get("appearances") or []),
        "takedown": takedown_json(publication),
    }
