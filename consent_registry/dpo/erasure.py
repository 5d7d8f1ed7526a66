"""Erasure (GDPR art. 17) of one person, on request or after they left the school.

What `erase_person` does, in the caller's transaction (it never commits):

- reference photos (face encodings) are deleted through the biometrics service (audited there);
- every appearance tagged as the person is unlinked: a face becomes `blur` with nobody attached
  (the erased person can never consent again, so their face must never be shown; `blur` lets the
  item still be published with that face unrecognisable), a voice goes back to `unresolved` (the
  gate then blocks the sound until staff decide); its crop is deleted from storage; suggestions of
  the person are cleared;
- live (or queued, or publishing) publications showing them are taken down (reason "erased");
- consent records that are proof for a publication that was actually published are kept (the
  retention job removes them when the proof period ends, see retention.py); every other consent
  record of theirs is deleted, with its scanned paper form;
- consent recipients about them are deleted, or (when a kept record points at one) stripped of
  the address; their notices and subject-access exports (with the ZIP) are deleted;
- guardians no longer linked to anyone are deleted, or pseudonymised when a kept record or
  recipient still points at them;
- the person row stays (the ids in proof and audit events point at it) but is pseudonymised:
  names "Erased", no e-mail, group or birth date of theirs, external id `erased-<id>`, status left.

Audit events hold ids, never personal values (checked over every `record(...)` call), so nothing
in the chain has to change: the pseudonymisation of the person row is the pseudonymisation of the
events about them, and the chain keeps verifying. The erasure itself is one `person:erased` event
with counts only, plus one `appearance:unlinked` event per appearance.

Consent records are append-only: the ORM refuses `session.delete` on them and the database refuses
UPDATE. Records are removed only here and in the retention job, through `delete_consent_records`,
a Core DELETE on exactly the ids given: the one deliberate path, leaving the guard in place for
everything else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from ..audit import Actor, record
from ..biometrics.service import VOICE, clear_suggestions, delete_reference, references_of
from ..consent.models import ConsentRecipient, ConsentRecord, Notice
from ..db import db, utcnow
from ..media.models import Appearance
from ..people.models import Guardian, GuardianLink, Person
from ..publishing.models import Publication, PublicationPerson
from ..publishing.takedown import TAKE_DOWN_STATES, request_takedown
from ..storage import get_storage
from .models import SubjectExport

log = logging.getLogger(__name__)

ERASURE_REASONS = ("request", "left")
ERASED_NAME = "Erased"
ERASED_BIRTH_DATE = date(1900, 1, 1)  # a valid date that says nothing about anyone
# Reference deletion reasons the biometrics service knows: leaving, or on staff's request.
_REFERENCE_REASONS = {"left": "person_left", "request": "by_staff"}
_PENDING_KEYS = "dpo_erasure_storage_keys"


class ErasureError(ValueError):
    """An erasure that cannot be done (unknown reason)."""


def delete_after_commit(keys: Iterable[str | None]) -> None:
    """Delete these storage keys once the current transaction commits; forgotten on rollback."""
    db.session().info.setdefault(_PENDING_KEYS, []).extend(k for k in keys if k)


@event.listens_for(Session, "after_commit")
def _delete_committed(session: Session) -> None:
    """Rows first, files second: a failure leaves an unreferenced file (logged), never a dangling row."""
    keys = session.info.pop(_PENDING_KEYS, None)
    if not keys:
        return
    storage = get_storage()
    for key in keys:
        try:
            storage.delete(key)
        except Exception:  # a file left behind must not undo the committed erasure
            log.exception("could not delete stored file %s", key)


@event.listens_for(Session, "after_rollback")
def _forget_keys(session: Session) -> None:
    """A rolled-back erasure deletes no file."""
    session.info.pop(_PENDING_KEYS, None)


def delete_consent_records(record_ids: Iterable[int]) -> int:
    """Remove exactly these consent records (erasure and retention only); their scans after commit."""
    ids = sorted(set(record_ids))
    if not ids:
        return 0
    table = ConsentRecord.__table__
    scans = db.session.execute(
        sa.select(table.c.scan_key).where(table.c.id.in_(ids), table.c.scan_key.is_not(None))
    ).scalars().all()
    # Core, not session.delete: the ORM guard stays for every other caller.
    removed = db.session.execute(sa.delete(table).where(table.c.id.in_(ids))).rowcount
    delete_after_commit(scans)
    return removed


def was_published(publication: Publication) -> bool:
    """Whether the publication ever reached its channel (then it is proof)."""
    return publication.published_at is not None or publication.state in ("live", "takedown_pending")


def proof_record_ids(person_id: int) -> set[int]:
    """Ids of this person's consent records that allowed a publication that was published."""
    rows = db.session.execute(
        sa.select(Publication).join(PublicationPerson)
        .where(PublicationPerson.person_id == person_id)).scalars().all()
    ids: set[int] = set()
    for publication in rows:
        if not was_published(publication):
            continue
        for shown in (publication.decision or {}).get("people", []):
            if shown.get("person_id") == person_id:
                ids.update(int(i) for i in shown.get("consent_record_ids") or ())
    return ids


def _unlink_appearances(person_id: int, *, actor: Actor) -> int:
    """Unlink every appearance tagged as the person and queue their crops for deletion."""
    appearances = db.session.execute(
        sa.select(Appearance).where(Appearance.person_id == person_id).order_by(Appearance.id)
    ).scalars().all()
    for appearance in appearances:
        delete_after_commit([appearance.crop_key])
        appearance.crop_key = None
        appearance.person_id = None
        appearance.suggested_person_id = None
        appearance.distance = None
        appearance.auto_accepted = False
        appearance.resolution = "blur" if appearance.kind == "face" else "unresolved"
        appearance.resolved_by = actor.id if actor.type == "user" else None
        appearance.resolved_at = utcnow()
        record("appearance:unlinked", actor=actor, subject_type="appearance",
               subject_id=appearance.id,
               details={"media_id": appearance.media_id, "old_person_id": person_id,
                        "new_resolution": appearance.resolution, "reason": "erased"})
    db.session.execute(
        sa.update(Appearance).where(Appearance.suggested_person_id == person_id)
        .values(suggested_person_id=None, distance=None)
        .execution_options(synchronize_session="fetch"))
    return len(appearances)


def _take_down(person_id: int, *, actor: Actor) -> int:
    """Request the takedown of everything that shows the person (reason "erased")."""
    publications = db.session.execute(
        sa.select(Publication).join(PublicationPerson)
        .where(PublicationPerson.person_id == person_id,
               Publication.state.in_(TAKE_DOWN_STATES))
        .order_by(Publication.id)).scalars().all()
    return sum(request_takedown(p, reason="erased", actor=actor, person_id=person_id)
               for p in publications)


def _renditions(person_id: int) -> int:
    """Delete the published renditions that show the person (their faces are in them); the hash
    of what was published stays as proof. Returns how many files go."""
    publications = db.session.execute(
        sa.select(Publication).join(PublicationPerson)
        .where(PublicationPerson.person_id == person_id, Publication.state != "live")
        .order_by(Publication.id)).scalars().all()
    keys: list[str] = []
    for publication in publications:
        if publication.rendition_key:
            keys.append(publication.rendition_key)
            publication.rendition_key = None
        for item in publication.items:
            if item.rendition_key:
                keys.append(item.rendition_key)
                item.rendition_key = None
    delete_after_commit(keys)
    return len(keys)


def _consent_data(person_id: int) -> tuple[int, int]:
    """Delete consent records not needed as proof, and recipients; (records removed, kept)."""
    keep = proof_record_ids(person_id)
    all_ids = set(db.session.execute(
        sa.select(ConsentRecord.id).where(ConsentRecord.person_id == person_id)).scalars())
    removed = delete_consent_records(all_ids - keep)
    kept_recipients = set(db.session.execute(
        sa.select(ConsentRecord.recipient_id).where(ConsentRecord.id.in_(keep),
                                                    ConsentRecord.recipient_id.is_not(None))
    ).scalars())
    recipients = db.session.execute(
        sa.select(ConsentRecipient).where(ConsentRecipient.person_id == person_id)).scalars().all()
    for recipient in recipients:
        if recipient.id in kept_recipients:
            recipient.email = None
            recipient.last_error = None
            recipient.message_id = None
        else:
            db.session.delete(recipient)
    db.session.execute(sa.delete(Notice).where(Notice.person_id == person_id))
    return removed, len(all_ids & keep)


def _exports(person_id: int) -> int:
    """Delete the person's subject-access exports and their ZIPs."""
    exports = db.session.execute(
        sa.select(SubjectExport).where(SubjectExport.person_id == person_id)).scalars().all()
    for export in exports:
        delete_after_commit([export.storage_key])
        db.session.delete(export)
    return len(exports)


def guardian_still_referenced(guardian_id: int) -> bool:
    """Whether any kept consent record or recipient still points at the guardian."""
    for column in (ConsentRecord.guardian_id, ConsentRecipient.guardian_id):
        if db.session.execute(sa.select(column).where(column == guardian_id).limit(1)).first():
            return True
    return False


def pseudonymise_guardian(guardian: Guardian) -> None:
    """Replace a guardian's name and address by values that say nothing (unique, invalid domain)."""
    guardian.name = ERASED_NAME
    guardian.email = f"erased-guardian-{guardian.id}@erased.invalid"


def _guardians(person: Person) -> int:
    """Unlink the person's guardians; remove (or pseudonymise) those nobody else is linked to."""
    guardian_ids = [link.guardian_id for link in person.guardian_links]
    person.guardian_links.clear()
    db.session.flush()
    removed = 0
    for guardian_id in guardian_ids:
        others = db.session.execute(
            sa.select(GuardianLink).where(GuardianLink.guardian_id == guardian_id).limit(1)).first()
        guardian = db.session.get(Guardian, guardian_id)
        if others is not None or guardian is None:
            continue
        if guardian_still_referenced(guardian_id):
            pseudonymise_guardian(guardian)
        else:
            db.session.delete(guardian)
        removed += 1
    return removed


def pseudonymise_person(person: Person, at: datetime) -> None:
    """Replace every identifying field of the row by a value that keeps the constraints valid."""
    person.given_name = ERASED_NAME
    person.family_name = ERASED_NAME
    person.email = None
    person.group = None
    person.birth_date = ERASED_BIRTH_DATE
    person.external_id = f"erased-{person.id}"
    person.language = "nl"
    person.status = "left"
    person.left_on = person.left_on or at.date()
    person.erased_at = at


def erase_person(person: Person, *, actor: Actor, reason: str = "request") -> dict[str, Any]:
    """Erase a person (audited, in the caller's transaction); the counts of what went."""
    if reason not in ERASURE_REASONS:
        raise ErasureError(f"unknown erasure reason {reason!r}")
    if person.erased_at is not None:
        return {"already_erased": True}
    now = utcnow()
    references = references_of(person.id) + references_of(person.id, VOICE)
    for reference in references:
        delete_reference(reference, actor=actor, reason=_REFERENCE_REASONS[reason])
    clear_suggestions(person.id, actor=actor, reason=_REFERENCE_REASONS[reason])
    counts: dict[str, Any] = {"references": len(references)}
    counts["appearances"] = _unlink_appearances(person.id, actor=actor)
    counts["takedowns"] = _take_down(person.id, actor=actor)
    counts["renditions"] = _renditions(person.id)
    counts["consent_records_removed"], counts["consent_records_kept"] = _consent_data(person.id)
    counts["exports"] = _exports(person.id)
    counts["guardians_removed"] = _guardians(person)
    pseudonymise_person(person, now)
    db.session.flush()
    record("person:erased", actor=actor, subject_type="person", subject_id=person.id,
           details={"reason": reason, **counts})
    return counts
