"""A person's file: everything the registry holds about one person, as one JSON-ready dict.

The data protection officer's page and API show it, and the subject-access export writes it as
`file.json`. Every value is JSON-serialisable (dates and times as ISO strings). Reference photos
appear only as a count and dates: encodings never leave the biometrics table.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from ..audit import AuditEvent
from ..biometrics.models import FaceReference, VoiceReference
from ..consent.models import ConsentRecipient, ConsentRecord, ConsentRequest, ConsentText
from ..db import db
from ..media.models import Appearance, Media
from ..people.models import Person
from ..publishing.models import Publication, PublicationPerson
from .audit_query import about_person

MAX_ID = 2**31 - 1  # larger ids cannot exist and would overflow PostgreSQL's integer


def iso(value: date | datetime | None) -> str | None:
    """A date or time as an ISO 8601 string, or None."""
    return None if value is None else value.isoformat()


def get_person_checked(person_id: int) -> Person | None:
    """The person with this id, or None (also for ids no row can have)."""
    return db.session.get(Person, person_id) if 0 < person_id <= MAX_ID else None


def _person_data(person: Person) -> dict[str, Any]:
    """The person's own fields."""
    return {
        "id": person.id, "external_id": person.external_id, "role": person.role,
        "given_name": person.given_name, "family_name": person.family_name,
        "birth_date": iso(person.birth_date), "email": person.email, "group": person.group,
        "status": person.status, "left_on": iso(person.left_on), "erased_at": iso(person.erased_at),
        "language": person.language, "created_at": iso(person.created_at),
        "updated_at": iso(person.updated_at),
    }


def _guardians(person: Person) -> list[dict[str, Any]]:
    """The person's guardians and how they are related."""
    return [{"id": link.guardian.id, "name": link.guardian.name, "email": link.guardian.email,
             "language": link.guardian.language, "relation": link.relation}
            for link in person.guardian_links]


def consent_record_json(record: ConsentRecord, text: ConsentText | None) -> dict[str, Any]:
    """One consent record with the version of the text the decider was shown."""
    return {
        "id": record.id, "channel": record.channel, "decision": record.decision,
        "decider_kind": record.decider_kind, "guardian_id": record.guardian_id,
        "guardian_name": record.guardian.name if record.guardian else None,
        "method": record.method, "entered_by": record.entered_by,
        "text_sha256": record.text_sha256,
        "text_version": text.version if text else None,
        "text_language": text.language if text else None,
        "text_title": text.title if text else None,
        "valid_from": iso(record.valid_from), "valid_until": iso(record.valid_until),
        "decided_at": iso(record.decided_at), "recipient_id": record.recipient_id,
        "possibly_scanner": record.possibly_scanner, "note": record.note,
        "paper_scan": record.scan_key is not None,
    }


def consent_records_by_id(ids: list[int]) -> dict[int, dict[str, Any]]:
    """Consent records (JSON-ready, with their texts) by id."""
    if not ids:
        return {}
    rows = db.session.execute(
        sa.select(ConsentRecord, ConsentText)
        .join(ConsentText, ConsentText.sha256 == ConsentRecord.text_sha256, isouter=True)
        .where(ConsentRecord.id.in_(ids))
    ).all()
    return {record.id: consent_record_json(record, text) for record, text in rows}


def _consent_records(person: Person) -> list[dict[str, Any]]:
    """Every consent record about the person, oldest first."""
    rows = db.session.execute(
        sa.select(ConsentRecord, ConsentText)
        .join(ConsentText, ConsentText.sha256 == ConsentRecord.text_sha256, isouter=True)
        .where(ConsentRecord.person_id == person.id)
        .order_by(ConsentRecord.decided_at, ConsentRecord.id)
    ).all()
    return [consent_record_json(record, text) for record, text in rows]


def _consent_requests(person: Person) -> list[dict[str, Any]]:
    """Every time a decider was asked about the person, with the delivery's outcome."""
    rows = db.session.execute(
        sa.select(ConsentRecipient, ConsentRequest)
        .join(ConsentRequest, ConsentRequest.id == ConsentRecipient.request_id)
        .where(ConsentRecipient.person_id == person.id)
        .order_by(ConsentRecipient.id)
    ).all()
    return [{
        "request_id": request.id, "recipient_id": recipient.id,
        "requested_at": iso(request.created_at), "requested_by": request.created_by,
        "channels": list(request.channels or []), "note": request.note,
        "media_id": request.media_id, "decider_kind": recipient.decider_kind,
        "guardian_id": recipient.guardian_id, "email": recipient.email,
        "delivery": recipient.delivery, "sent_at": iso(recipient.sent_at),
        "opened_at": iso(recipient.opened_at), "answered_at": iso(recipient.answered_at),
        "reminders_sent": recipient.reminders_sent,
    } for recipient, request in rows]


def _appearance_json(appearance: Appearance) -> dict[str, Any]:
    """One appearance of the person: where, and how it was resolved."""
    return {
        "id": appearance.id, "kind": appearance.kind, "resolution": appearance.resolution,
        "box": appearance.box, "segments": appearance.segments, "source": appearance.source,
        "auto_accepted": appearance.auto_accepted, "resolved_by": appearance.resolved_by,
        "resolved_at": iso(appearance.resolved_at),
    }


def _media(person: Person) -> list[dict[str, Any]]:
    """Every media item the person is identified in, with their appearances."""
    rows = db.session.execute(
        sa.select(Appearance, Media).join(Media, Media.id == Appearance.media_id)
        .where(Appearance.person_id == person.id)
        .order_by(Media.id, Appearance.id)
    ).all()
    items: dict[int, dict[str, Any]] = {}
    for appearance, media in rows:
        item = items.setdefault(media.id, {
            "id": media.id, "kind": media.kind, "title": media.title,
            "taken_on": iso(media.taken_on), "uploaded_at": iso(media.created_at),
            "sha256": media.sha256, "status": media.status, "appearances": [],
        })
        item["appearances"].append(_appearance_json(appearance))
    return list(items.values())


def _suggestions(person: Person) -> list[dict[str, Any]]:
    """Faces that face matching suggested might be the person (not confirmed by anyone)."""
    rows = db.session.execute(
        sa.select(Appearance).where(Appearance.suggested_person_id == person.id,
                                    sa.or_(Appearance.person_id.is_(None),
                                           Appearance.person_id != person.id))
        .order_by(Appearance.id)
    ).scalars()
    return [{"appearance_id": a.id, "media_id": a.media_id, "distance": a.distance}
            for a in rows]


def _proof_entry(publication: Publication, person_id: int) -> dict[str, Any]:
    """The gate decision's entry for the person in a publication, or an empty dict."""
    for entry in (publication.decision or {}).get("people", []):
        if entry.get("person_id") == person_id:
            return entry
    return {}


def takedown_json(publication: Publication) -> dict[str, Any] | None:
    """A publication's takedown, or None when none was asked for."""
    if publication.takedown_reason is None:
        return None
    return {"reason": publication.takedown_reason,
            "requested_at": iso(publication.takedown_requested_at),
            "taken_down_at": iso(publication.taken_down_at),
            "taken_down_by": publication.taken_down_by}


def _publications(person: Person) -> list[Publication]:
    """Publications that showed the person, oldest first."""
    return list(db.session.execute(
        sa.select(Publication).join(PublicationPerson,
                                    PublicationPerson.publication_id == Publication.id)
        .where(PublicationPerson.person_id == person.id).order_by(Publication.id)
    ).scalars())


def _publication_json(publication: Publication, person_id: int) -> dict[str, Any]:
    """A publication that showed the person and the consent records that allowed it."""
    entry = _proof_entry(publication, person_id)
    return {
        "id": publication.id, "media_id": publication.media_id,
        "media_sha256": publication.media_sha256, "channel": publication.channel,
        "connector": publication.connector, "state": publication.state,
        "live": publication.state == "live", "attested": publication.attested,
        "published_by": publication.published_by, "created_at": iso(publication.created_at),
        "published_at": iso(publication.published_at),
        "evaluated_at": (publication.decision or {}).get("evaluated_at"),
        "appearance_ids": list(entry.get("appearance_ids") or []),
        "consent_state": entry.get("state"),
        "consent_record_ids": list(entry.get("consent_record_ids") or []),
        "consent_valid_until": entry.get("valid_until"),
        "takedown": takedown_json(publication),
    }


def _reference_photos(person: Person, model: type[FaceReference] | type[VoiceReference] = FaceReference
                      ) -> dict[str, Any]:
    """Whether reference encodings are held: count and dates only, never the encodings."""
    rows = db.session.execute(
        sa.select(model.id, model.created_at, model.consent_record_id)
        .where(model.person_id == person.id).order_by(model.id)
    ).all()
    return {"held": bool(rows), "count": len(rows),
            "created_at": [iso(created) for _id, created, _record in rows],
            "consent_record_ids": sorted({r for _id, _c, r in rows if r is not None})}


def audit_event_json(audit_event: AuditEvent) -> dict[str, Any]:
    """One audit event as JSON."""
    return {"id": audit_event.id, "occurred_at": iso(audit_event.occurred_at),
            "actor_type": audit_event.actor_type, "actor_id": audit_event.actor_id,
            "action": audit_event.action, "subject_type": audit_event.subject_type,
            "subject_id": audit_event.subject_id, "details": audit_event.details}


def _audit_events(person: Person) -> list[dict[str, Any]]:
    """Audit events about the person, oldest first."""
    rows = db.session.execute(
        sa.select(AuditEvent).where(about_person(person.id)).order_by(AuditEvent.id)
    ).scalars()
    return [audit_event_json(e) for e in rows]


def person_file(person: Person) -> dict[str, Any]:
    """Everything held about the person, JSON-ready (dates as ISO strings)."""
    publications = _publications(person)
    return {
        "person": _person_data(person),
        "guardians": _guardians(person),
        "consent_records": _consent_records(person),
        "consent_requests": _consent_requests(person),
        "media": _media(person),
        "match_suggestions": _suggestions(person),
        "publications": [_publication_json(p, person.id) for p in publications],
        "takedowns": [{"publication_id": p.id, "channel": p.channel, "state": p.state,
                       **(takedown_json(p) or {})}
                      for p in publications if p.takedown_reason is not None],
        "reference_photos": _reference_photos(person),
        "reference_voices": _reference_photos(person, VoiceReference),
        "audit_events": _audit_events(person),
    }
