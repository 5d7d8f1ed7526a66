"""Retention: what is kept how long, applied by a daily job (each run audited with counts only).

Periods (days, consent_registry/config.py): RETENTION_MEDIA_DAYS (365) after upload for media
items never published, RETENTION_REQUESTS_DAYS (730) for consent requests, RETENTION_PROOF_DAYS
(1825) for the proof of a publication, counted from its takedown.

- Media: an item uploaded more than the media period ago is deleted (original, analysis crops and
  the renditions of its publications; the rows with them) unless a publication of it is live or
  was ever published: then it is kept while that proof is kept, i.e. until every such
  publication was taken down more than the proof period ago. Publication rows always stay.
- Requests: requests older than the request period go with their recipients; a recipient a
  consent record still points at stays, without its address.
- Proof: the consent records of erased people that were kept as proof go once every published
  publication they allowed was taken down more than the proof period ago. Records of people
  still in the register are their consent and are never removed by age.
- Leaving: people marked as left whose leaving date has come are erased (reason "left").
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from ..audit import SYSTEM, record
from ..consent.models import ConsentRecipient, ConsentRecord, ConsentRequest
from ..db import db, utcnow
from ..jobs import crontab, periodic_task
from ..media.models import Media
from ..people.models import Person
from ..publishing.models import Publication, PublicationPerson
from ..publishing.slots import StillPublished, prepare_delete
from .erasure import delete_after_commit, delete_consent_records, erase_person, was_published

log = logging.getLogger(__name__)

DEFAULTS = {"RETENTION_MEDIA_DAYS": 365, "RETENTION_REQUESTS_DAYS": 730,
            "RETENTION_PROOF_DAYS": 1825}


def period(name: str) -> timedelta:
    """A configured retention period."""
    return timedelta(days=int(current_app.config.get(name, DEFAULTS[name])))


def proof_ended(publication: Publication, now: datetime) -> bool:
    """Whether a publication's proof may go: never published, or taken down long enough ago."""
    if not was_published(publication):
        return True
    if publication.state != "taken_down" or publication.taken_down_at is None:
        return False
    return publication.taken_down_at + period("RETENTION_PROOF_DAYS") <= now


def _expired_media(now: datetime) -> int:
    """Delete media past the media period whose publications' proof is over; how many."""
    old = db.session.execute(
        sa.select(Media).where(Media.created_at < now - period("RETENTION_MEDIA_DAYS"))
        .order_by(Media.id)).scalars().all()
    removed = 0
    for media in old:
        publications = db.session.execute(
            sa.select(Publication).where(Publication.media_id == media.id)).scalars().all()
        if not all(proof_ended(p, now) for p in publications):
            continue
        try:  # also an album's photo: never delete what is queued or live (its slot refuses it)
            prepare_delete(media.id)
        except StillPublished:
            continue
        keys = [media.storage_key, media.display_key, *(a.crop_key for a in media.appearances)]
        for publication in publications:
            keys.append(publication.rendition_key)
            publication.rendition_key = None
            publication.media_id = None  # SQLite does not enforce the ON DELETE SET NULL
        record("media:delete", actor=SYSTEM, subject_type="media", subject_id=media.id,
               details={"kind": media.kind, "sha256": media.sha256,
                        "appearances": len(media.appearances), "reason": "retention"})
        db.session.delete(media)
        delete_after_commit(keys)
        removed += 1
    return removed


def _expired_requests(now: datetime) -> tuple[int, int]:
    """Delete requests past the request period and their recipients; (requests, recipients)."""
    old = db.session.execute(
        sa.select(ConsentRequest).where(ConsentRequest.created_at < now - period("RETENTION_REQUESTS_DAYS"))
        .order_by(ConsentRequest.id)).scalars().all()
    requests = recipients = 0
    for request in old:
        referenced = set(db.session.execute(
            sa.select(ConsentRecord.recipient_id).where(
                ConsentRecord.recipient_id.in_([r.id for r in request.recipients]))).scalars())
        for recipient in list(request.recipients):
            if recipient.id in referenced:
                recipient.email = recipient.message_id = recipient.last_error = None
            else:
                db.session.delete(recipient)
                recipients += 1
        if not referenced:
            db.session.delete(request)
            requests += 1
    return requests, recipients


def _expired_proof(now: datetime) -> int:
    """Delete the consent records of erased people whose proof period is over; how many."""
    erased = db.session.execute(
        sa.select(Person.id).where(Person.erased_at.is_not(None))).scalars().all()
    removed = 0
    for person_id in erased:
        record_ids = set(db.session.execute(
            sa.select(ConsentRecord.id).where(ConsentRecord.person_id == person_id)).scalars())
        if not record_ids:
            continue
        still_needed: set[int] = set()
        for publication in db.session.execute(
                sa.select(Publication).join(PublicationPerson)
                .where(PublicationPerson.person_id == person_id)).scalars():
            if proof_ended(publication, now):
                continue
            for shown in (publication.decision or {}).get("people", []):
                if shown.get("person_id") == person_id:
                    still_needed.update(int(i) for i in shown.get("consent_record_ids") or ())
        gone = record_ids - still_needed
        if gone:
            db.session.execute(sa.update(ConsentRecipient)
                               .where(ConsentRecipient.person_id == person_id,
                                      ConsentRecipient.id.not_in(
                                          sa.select(ConsentRecord.recipient_id)
                                          .where(ConsentRecord.id.in_(still_needed),
                                                 ConsentRecord.recipient_id.is_not(None))))
                               .values(email=None))
        removed += delete_consent_records(gone)
    return removed


def _leavers(now: datetime) -> int:
    """Erase people marked as left whose leaving date has come (reason "left"); how many."""
    people = db.session.execute(
        sa.select(Person).where(Person.status == "left", Person.erased_at.is_(None),
                                sa.or_(Person.left_on.is_(None), Person.left_on <= now.date()))
        .order_by(Person.id)).scalars().all()
    for person in people:
        erase_person(person, actor=SYSTEM, reason="left")
    return len(people)


def apply_retention(now: datetime) -> dict[str, int]:
    """Apply every retention rule at `now`; audited (counts only) in the caller's transaction."""
    counts: dict[str, Any] = {"people_erased": _leavers(now)}
    db.session.flush()
    counts["media"] = _expired_media(now)
    counts["requests"], counts["recipients"] = _expired_requests(now)
    db.session.flush()
    counts["consent_records"] = _expired_proof(now)
    record("retention:applied", actor=SYSTEM, details=counts)
    return counts


@periodic_task(crontab(minute="41", hour="3"))
def apply_retention_daily() -> None:
    """Apply the retention periods once a day."""
    counts = apply_retention(utcnow())
    db.session.commit()
    log.info("retention removed %s", counts)
