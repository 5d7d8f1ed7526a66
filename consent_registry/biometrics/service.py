"""Matching's switches and the reference encodings of enrolled people, kept within their consent.

Two modalities under the same rules: faces (reference photos) and voices (reference recordings).
Each is off until an admin switches it on with a DPIA reference. A reference encoding is computed
from a photo or recording that is analysed and then dropped; it is stored only while the person is
active with a valid biometric consent, and deleted (each deletion audited) when that consent ends,
the person leaves, or that modality's matching is switched off. `matching_references` checks the
consent again itself, so a purge that did not run yet never lets an expired consent be matched.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from flask import current_app
from PIL import Image
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import selectinload

from ..audit import SYSTEM, Actor, record
from ..consent.models import ConsentRecord
from ..consent.rules import effective_consent
from ..consent.service import as_rule_record, effective_for, facts_of, policy
from ..consent.texts import BIOMETRIC
from ..db import db, utcnow
from ..events import ConsentMayHaveEnded, subscribe
from ..jobs import crontab, periodic_task
from ..media.faces import oriented
from ..media.ingest import PILLOW_FORMATS, Guess, IngestError, Limits, probe_photo, spool_stream
from ..media.matching import ENCODING_SIZE, Reference
from ..media.models import Appearance
from ..people.models import GuardianLink, Person
from ..translate import _
from .models import BiometricSetting, FaceReference, VoiceReference, encoding_bytes

log = logging.getLogger(__name__)

FACE = "face"
VOICE = "voice"
REFERENCE_MODELS: dict[str, type[FaceReference] | type[VoiceReference]] = {
    FACE: FaceReference, VOICE: VoiceReference}
MIN_REFERENCE_SPEECH_S = 3.0  # a reference recording must hold this much speech of its one voice
DELETE_REASONS = ("consent_ended", "person_left", "matching_off", "by_staff")
DPIA_MAX_LENGTH = 200


class BiometricError(ValueError):
    """A refused biometric change: `code` for programs, `message` for people, `status` for HTTP."""

    def __init__(self, code: str, message: str, status: int) -> None:
        """Keep the code, the (translated) message and the HTTP status."""
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


# --- the switch -------------------------------------------------------------------------------------

def matching_setting(modality: str) -> BiometricSetting:
    """The school's matching setting for faces or voices; an unsaved 'off' row when none is stored."""
    stored = db.session.get(BiometricSetting, modality)
    if stored is not None:
        return stored
    return BiometricSetting(modality=modality, enabled=False, dpia_reference=None, updated_at=None,
                            updated_by=None)


def matching_enabled(modality: str) -> bool:
    """Whether matching of this modality is switched on."""
    return bool(matching_setting(modality).enabled)


def face_matching() -> BiometricSetting:
    """The school's face-matching setting."""
    return matching_setting(FACE)


def face_matching_enabled() -> bool:
    """Whether face matching is switched on."""
    return matching_enabled(FACE)


def voice_matching() -> BiometricSetting:
    """The school's voice-matching setting."""
    return matching_setting(VOICE)


def voice_matching_enabled() -> bool:
    """Whether voice matching is switched on."""
    return matching_enabled(VOICE)


def clean_dpia_reference(value: str | None) -> str | None:
    """A DPIA reference without surrounding blanks; None when blank."""
    cleaned = (value or "").strip()
    return cleaned or None


def check_switch(*, enabled: bool, dpia_reference: str | None, modality: str = FACE) -> None:
    """Refuse switching matching on without a DPIA reference, or with one that is too long."""
    if enabled and dpia_reference is None:
        raise BiometricError("dpia_required", _(
            "Record the reference of the DPIA (data protection impact assessment) before "
            "switching face matching on.") if modality == FACE else _(
            "Record the reference of the DPIA (data protection impact assessment) before "
            "switching voice matching on."), 422)
    if dpia_reference is not None and len(dpia_reference) > DPIA_MAX_LENGTH:
        raise BiometricError("invalid", _("Too long: at most %(n)s characters.", n=DPIA_MAX_LENGTH),
                             422)


def _ensure_setting_row(modality: str) -> None:
    """Create the switch's row (off) if it is missing; two admins doing so at once both succeed."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    db.session.execute(insert(BiometricSetting).values(
        modality=modality, enabled=False, updated_at=utcnow()).on_conflict_do_nothing())


def set_face_matching(*, enabled: bool, dpia_reference: str | None, actor: Actor) -> BiometricSetting:
    """Switch face matching on or off; switching off deletes every face reference. Audited."""
    return set_matching(FACE, enabled=enabled, dpia_reference=dpia_reference, actor=actor)


def set_voice_matching(*, enabled: bool, dpia_reference: str | None, actor: Actor) -> BiometricSetting:
    """Switch voice matching on or off; switching off deletes every voice reference. Audited."""
    return set_matching(VOICE, enabled=enabled, dpia_reference=dpia_reference, actor=actor)


def set_matching(modality: str, *, enabled: bool, dpia_reference: str | None,
                 actor: Actor) -> BiometricSetting:
    """Switch one modality's matching on or off; off deletes all its references. Audited."""
    dpia = clean_dpia_reference(dpia_reference)
    check_switch(enabled=enabled, dpia_reference=dpia, modality=modality)
    _ensure_setting_row(modality)
    setting = db.session.execute(
        sa.select(BiometricSetting).where(BiometricSetting.modality == modality).with_for_update()
    ).scalar_one()
    changed = [name for name, value in (("enabled", enabled), ("dpia_reference", dpia))
               if getattr(setting, name) != value]
    if changed:
        setting.enabled = enabled
        setting.dpia_reference = dpia
        setting.updated_at = utcnow()
        setting.updated_by = actor.id if actor.type == "user" else None
        db.session.flush()
        record(f"settings:{modality}_matching", actor=actor, subject_type="setting",
               subject_id=modality, details={"fields": sorted(changed), "enabled": enabled})
    if not enabled:
        # Without matching, a template serves no purpose: none may be kept (also after a crash).
        _delete_all(actor=actor, reason="matching_off", modality=modality)
    return setting


# --- reference photos -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AnalysedPhoto:
    """What is kept of a reference photo: its SHA-256 and the one face's encoding."""

    sha256: str
    encoding: np.ndarray


def _photo_only(exc: IngestError) -> BiometricError:
    """An ingest refusal as a biometric one, with a message about photos only."""
    if exc.code == "unsupported_type":
        return BiometricError("unsupported_type", _(
            "This type of file is not accepted. Upload a photo (JPEG, PNG, WebP, HEIC)."), 415)
    return BiometricError(exc.code, exc.message, exc.status)


def _decoded(path: Path, guess: Guess) -> Image.Image:
    """The photo decoded whole, EXIF orientation applied, in RGB; BiometricError when it will not."""
    try:
        with Image.open(path, formats=[PILLOW_FORMATS[guess.format]]) as img:
            image = oriented(img)
            image.load()
            return image.copy() if image is img else image
    except Image.DecompressionBombError:
        raise BiometricError("too_many_pixels", _("The picture has too many pixels."), 422) from None
    except Exception:
        raise _photo_only(_corrupt_photo()) from None


def _corrupt_photo() -> IngestError:
    """The refusal of a photo that does not decode."""
    return IngestError("corrupt", _("The file looks like %(what)s but cannot be read: it is "
                                    "damaged or incomplete.", what=_("a photo")))


def analyse_reference_photo(image_bytes: bytes, *, limits: Limits) -> AnalysedPhoto:
    """Check the bytes are one photo with exactly one face, and encode that face; nothing is stored."""
    from ..media import analysis  # late: analysis calls this module, and tests swap its engine

    try:
        spooled = spool_stream(io.BytesIO(image_bytes), limits=limits,
                               tmp_dir=current_app.config.get("INGEST_TMP_DIR"))
    except IngestError as exc:
        raise _photo_only(exc) from None
    try:
        if spooled.guess.kind != "photo":
            raise _photo_only(IngestError("unsupported_type", ""))
        probe_photo(spooled.path, guess=spooled.guess, max_pixels=limits.pixels)
        image = _decoded(spooled.path, spooled.guess)
    except IngestError as exc:
        raise _photo_only(exc) from None
    finally:
        spooled.discard()
    engine = analysis.engine()
    faces = engine.detect(image)
    if len(faces) != 1:
        raise BiometricError("not_one_face", _(
            "A reference photo must show exactly one face; %(n)d were found.", n=len(faces)), 422)
    encodings = engine.encode(image, [faces[0].box])
    encoding = np.asarray(encodings[0], dtype=np.float64) if encodings else np.empty(0)
    if encoding.shape != (ENCODING_SIZE,) or not np.isfinite(encoding).all():
        raise BiometricError("not_one_face", _("The face in this photo cannot be used for matching."),
                             422)
    return AnalysedPhoto(spooled.sha256, encoding)


def has_left(person: Person) -> bool:
    """Whether the person no longer counts as at school for biometrics (marked left, any date)."""
    return person.status != "active"


def enrolment_refusal(person: Person, at: datetime, modality: str = FACE) -> BiometricError | None:
    """Why this person may not get a reference of this modality now, or None when they may."""
    if not matching_enabled(modality):
        return BiometricError("matching_off", _("Face matching is switched off for the school.")
                              if modality == FACE else
                              _("Voice matching is switched off for the school."), 409)
    if has_left(person):
        return BiometricError("no_biometric_consent", _("This person has left the school."), 409)
    if effective_for(person, BIOMETRIC, at).state != "granted":
        return BiometricError("no_biometric_consent", _(
            "This person has no valid consent for face matching.") if modality == FACE else _(
            "This person has no valid consent for voice matching."), 409)
    return None


def references_of(person_id: int, modality: str = FACE) -> list[Any]:
    """A person's reference encodings of one modality, oldest first."""
    model = REFERENCE_MODELS[modality]
    return list(db.session.execute(
        sa.select(model).where(model.person_id == person_id)
        .order_by(model.created_at, model.id)).scalars())


def reference_of(person_id: int, reference_id: int, modality: str = FACE) -> Any:
    """One reference of a person, or None (also when it belongs to someone else)."""
    model = REFERENCE_MODELS[modality]
    reference = db.session.get(model, reference_id) if 0 < reference_id < 2**31 else None
    return reference if reference is not None and reference.person_id == person_id else None


def _is_duplicate(person_id: int, sha256: str, modality: str = FACE) -> bool:
    """Whether this photo or recording already gave this person a reference."""
    if modality == FACE:
        query = sa.select(FaceReference.id).where(FaceReference.person_id == person_id,
                                                  FaceReference.photo_sha256 == sha256)
    else:
        query = sa.select(VoiceReference.id).where(VoiceReference.person_id == person_id,
                                                   VoiceReference.recording_sha256 == sha256)
    return db.session.execute(query).first() is not None


def _duplicate(modality: str = FACE) -> BiometricError:
    """The refusal of a photo or recording this person was already enrolled with."""
    return BiometricError("duplicate", _("This photo is already a reference of this person.")
                          if modality == FACE else
                          _("This recording is already a reference of this person."), 409)


def add_reference(person: Person, image_bytes: bytes, *, actor: Actor,
                  at: datetime | None = None) -> FaceReference:
    """Enrol one reference photo of a person with a valid biometric consent; audited.

    The photo is analysed before the database is touched, so a caller that ended its transaction
    first holds no lock (SQLite's write lock) while the face is found and encoded.
    """
    analysed = analyse_reference_photo(image_bytes, limits=Limits.from_config(current_app.config))
    return enrol(person, modality=FACE, sha256=analysed.sha256, encoding=analysed.encoding,
                 actor=actor, at=at)


def enrol(person: Person, *, modality: str, sha256: str, encoding: np.ndarray, actor: Actor,
          at: datetime | None = None) -> Any:
    """Store an analysed reference (face or voice) when the person may be enrolled now; audited."""
    moment = at or utcnow()
    refusal = enrolment_refusal(person, moment, modality)
    if refusal is not None:
        raise refusal
    if _is_duplicate(person.id, sha256, modality):
        raise _duplicate(modality)
    consent = effective_for(person, BIOMETRIC, moment)
    fields = {"person_id": person.id, "encoding": encoding_bytes(encoding),
              "consent_record_id": max(consent.record_ids, default=None), "created_at": moment,
              "created_by": actor.id if actor.type == "user" else None}
    reference = (FaceReference(photo_sha256=sha256, **fields) if modality == FACE
                 else VoiceReference(recording_sha256=sha256, **fields))
    try:
        with db.session.begin_nested():
            db.session.add(reference)
    except sa.exc.IntegrityError:
        raise _duplicate(modality) from None  # the same file arrived twice at once
    details: dict[str, Any] = {"reference_id": reference.id,
                               "consent_record_id": reference.consent_record_id}
    if modality == VOICE:
        details["modality"] = VOICE
    record("biometric:reference_added", actor=actor, subject_type="person", subject_id=person.id,
           details=details)
    return reference


def modality_of(reference: FaceReference | VoiceReference) -> str:
    """Whether a reference is a face's or a voice's."""
    return VOICE if isinstance(reference, VoiceReference) else FACE


def _delete(reference: FaceReference | VoiceReference, *, actor: Actor, reason: str) -> None:
    """Delete one reference and audit it, by id, modality and reason only."""
    if reason not in DELETE_REASONS:
        raise ValueError(f"unknown deletion reason {reason!r}")
    reference_id, person_id = reference.id, reference.person_id
    details: dict[str, Any] = {"reason": reason, "reference_id": reference_id}
    if modality_of(reference) == VOICE:
        details["modality"] = VOICE
    db.session.delete(reference)
    record("biometric:reference_deleted", actor=actor, subject_type="person", subject_id=person_id,
           details=details)


def clear_suggestions(person_id: int, *, actor: Actor, reason: str, kind: str | None = None) -> int:
    """Forget unconfirmed suggestions of this person (of faces or voices only, when kind is given)."""
    query = sa.update(Appearance).where(Appearance.suggested_person_id == person_id,
                                        Appearance.resolution == "unresolved")
    if kind is not None:
        query = query.where(Appearance.kind == kind)
    cleared = db.session.execute(
        query.values(suggested_person_id=None, distance=None)
        .execution_options(synchronize_session="fetch")
    ).rowcount
    if cleared:
        record("biometric:suggestions_cleared", actor=actor, subject_type="person",
               subject_id=person_id, details={"reason": reason, "count": cleared})
    return cleared


def delete_reference(reference: FaceReference | VoiceReference, *, actor: Actor, reason: str) -> None:
    """Delete one reference (audited) and the person's unconfirmed suggestions of that kind."""
    person_id, kind = reference.person_id, modality_of(reference)
    _delete(reference, actor=actor, reason=reason)
    db.session.flush()
    clear_suggestions(person_id, actor=actor, reason=reason, kind=kind)


def _delete_all(*, actor: Actor, reason: str, modality: str = FACE) -> int:
    """Delete every reference of one modality of everyone; returns how many."""
    model = REFERENCE_MODELS[modality]
    references = list(db.session.execute(sa.select(model).order_by(model.id)).scalars())
    for reference in references:
        _delete(reference, actor=actor, reason=reason)
    db.session.flush()
    for person_id in sorted({r.person_id for r in references}):
        clear_suggestions(person_id, actor=actor, reason=reason, kind=modality)
    return len(references)


def deletion_reason(person: Person, at: datetime, modality: str = FACE) -> str | None:
    """Why this person's references of a modality must go now, or None while they may stay."""
    if has_left(person):
        return "person_left"
    if effective_for(person, BIOMETRIC, at).state != "granted":
        return "consent_ended"
    if not matching_enabled(modality):
        return "matching_off"
    return None


def enforce_biometric_consent(person: Person, at: datetime) -> int:
    """Delete the person's references when they may no longer be kept; returns how many (audited)."""
    deleted = 0
    for modality in REFERENCE_MODELS:
        references = references_of(person.id, modality)
        if not references:
            continue
        reason = deletion_reason(person, at, modality)
        if reason is None:
            continue
        for reference in references:
            _delete(reference, actor=SYSTEM, reason=reason)
        db.session.flush()
        clear_suggestions(person.id, actor=SYSTEM, reason=reason, kind=modality)
        deleted += len(references)
    return deleted


@subscribe(name="biometrics", order=10)
def references_when_consent_may_have_ended(event: ConsentMayHaveEnded) -> int:
    """Delete the person's references when the change ended their biometric consent or they left."""
    if not event.concerns(BIOMETRIC):
        return 0
    return enforce_biometric_consent(event.person, event.at)


def purge_expired(at: datetime) -> int:
    """Enforce the rules for everyone with references (consents that lapsed with time); how many went."""
    enrolled = sa.union(sa.select(FaceReference.person_id), sa.select(VoiceReference.person_id))
    people = db.session.execute(
        sa.select(Person).where(Person.id.in_(enrolled)).order_by(Person.id)).scalars().all()
    return sum(enforce_biometric_consent(person, at) for person in people)


@periodic_task(crontab(minute="17"))
def purge_expired_references_hourly() -> None:
    """Delete references whose biometric consent lapsed since the last run."""
    if deleted := purge_expired(utcnow()):
        log.info("deleted %d references whose consent ended", deleted)
    db.session.commit()


def matching_references(at: datetime, modality: str = FACE) -> list[Reference]:
    """The encodings matching may use at `at`: active people with a granted biometric consent.

    Checked here again rather than trusting the purge; empty while that matching is switched off.
    """
    if not matching_enabled(modality):
        return []
    model = REFERENCE_MODELS[modality]
    rows = db.session.execute(
        sa.select(model, Person).join(Person, Person.id == model.person_id)
        .where(Person.status == "active")
        .options(selectinload(Person.guardian_links).load_only(GuardianLink.guardian_id))
        .order_by(model.person_id, model.id)).all()
    if not rows:
        return []
    people = {person.id: person for _ref, person in rows}
    records: dict[int, list[ConsentRecord]] = {}
    for row in db.session.execute(
        sa.select(ConsentRecord).where(ConsentRecord.person_id.in_(people),
                                       ConsentRecord.channel == BIOMETRIC)
        .order_by(ConsentRecord.decided_at, ConsentRecord.id)).scalars():
        records.setdefault(row.person_id, []).append(row)
    rule_policy = policy()
    allowed = {
        person_id for person_id, person in people.items()
        if effective_consent(person=facts_of(person), channel=BIOMETRIC, at=at,
                             records=[as_rule_record(r) for r in records.get(person_id, [])],
                             policy=rule_policy).state == "granted"
    }
    references = []
    for reference, _person in rows:
        if reference.person_id not in allowed:
            continue
        try:
            references.append(Reference(reference.person_id, reference.vector()))
        except ValueError:
            log.warning("%s reference %s has an unusable encoding; skipped", modality, reference.id)
    return references
