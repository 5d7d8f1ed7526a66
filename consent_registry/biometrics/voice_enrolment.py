"""Reference recordings: one person's voice enrolled for voice matching, under the face rules.

A recording is checked by its content (a sound recording, not damaged), its speech found and its
speakers told apart exactly as analysis does (media/voices.py); it must hold one voice with at
least MIN_REFERENCE_SPEECH_S of speech. Only that voice's 256-number embedding is kept, in its own
table; the recording itself is dropped.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from flask import current_app

from ..audit import Actor, record
from ..consent.service import effective_for
from ..consent.texts import BIOMETRIC
from ..db import db, utcnow
from ..media.ingest import IngestError, Limits, probe_av, spool_stream
from ..media.matching import VOICE_ENCODING_SIZE
from ..media.sound import pcm_chunks
from ..media.voices import find_voices
from ..people.models import Person
from ..translate import _
from .models import VoiceReference, encoding_bytes
from .service import (
    MIN_REFERENCE_SPEECH_S,
    VOICE,
    BiometricError,
    _duplicate,
    _is_duplicate,
    enrolment_refusal,
)


@dataclass(frozen=True, slots=True)
class AnalysedRecording:
    """What is kept of a reference recording: its SHA-256 and the one voice's embedding."""

    sha256: str
    encoding: np.ndarray


def _recording_only(exc: IngestError) -> BiometricError:
    """An ingest refusal as a biometric one, with a message about sound recordings only."""
    if exc.code == "unsupported_type":
        return BiometricError("unsupported_type", _(
            "This type of file is not accepted. Upload a sound recording (WAV, MP3, M4A, FLAC, "
            "OGG)."), 415)
    return BiometricError(exc.code, exc.message, exc.status)


def analyse_reference_recording(data: bytes, *, limits: Limits) -> AnalysedRecording:
    """Check the bytes are a recording of exactly one voice, and embed it; nothing is stored."""
    from ..media import analysis  # late: tests swap its engine

    try:
        spooled = spool_stream(io.BytesIO(data), limits=limits,
                               tmp_dir=current_app.config.get("INGEST_TMP_DIR"))
    except IngestError as exc:
        raise _recording_only(exc) from None
    try:
        if spooled.guess.kind != "audio":
            raise _recording_only(IngestError("unsupported_type", ""))
        probe_av(spooled.path, guess=spooled.guess, max_pixels=limits.pixels)
        voices = find_voices(pcm_chunks(spooled.path), engine=analysis.voice_engine())
    except IngestError as exc:
        raise _recording_only(exc) from None
    finally:
        spooled.discard()
    if len(voices) != 1:
        raise BiometricError("not_one_voice", _(
            "A reference recording must hold exactly one voice; %(n)d were found.", n=len(voices)),
            422)
    if voices[0].speech_s < MIN_REFERENCE_SPEECH_S:
        raise BiometricError("not_one_voice", _(
            "The recording holds too little speech: at least %(n)d seconds are needed.",
            n=int(MIN_REFERENCE_SPEECH_S)), 422)
    encoding = np.asarray(voices[0].encoding, dtype=np.float64)
    if encoding.shape != (VOICE_ENCODING_SIZE,) or not np.isfinite(encoding).all():
        raise BiometricError("not_one_voice", _("The voice in this recording cannot be used for "
                                                "matching."), 422)
    return AnalysedRecording(spooled.sha256, encoding)


def add_voice_reference(person: Person, data: bytes, *, actor: Actor,
                        at: datetime | None = None) -> VoiceReference:
    """Enrol one reference recording of a person with a valid biometric consent; audited.

    The recording is analysed before the database is touched (no lock is held meanwhile).
    """
    analysed = analyse_reference_recording(data, limits=Limits.from_config(current_app.config))
    moment = at or utcnow()
    refusal = enrolment_refusal(person, moment, VOICE)
    if refusal is not None:
        raise refusal
    if _is_duplicate(person.id, analysed.sha256, VOICE):
        raise _duplicate(VOICE)
    consent = effective_for(person, BIOMETRIC, moment)
    reference = VoiceReference(
        person_id=person.id, encoding=encoding_bytes(analysed.encoding),
        recording_sha256=analysed.sha256, consent_record_id=max(consent.record_ids, default=None),
        created_at=moment, created_by=actor.id if actor.type == "user" else None,
    )
    try:
        with db.session.begin_nested():
            db.session.add(reference)
    except sa.exc.IntegrityError:
        raise _duplicate(VOICE) from None  # the same recording arrived twice at once
    record("biometric:reference_added", actor=actor, subject_type="person", subject_id=person.id,
           details={"reference_id": reference.id, "modality": VOICE,
                    "consent_record_id": reference.consent_record_id})
    return reference
