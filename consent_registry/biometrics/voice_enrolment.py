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

import av
import numpy as np
from flask import current_app

from ..audit import Actor
from ..media.ingest import IngestError, Limits, probe_av, spool_stream
from ..media.matching import VOICE_ENCODING_SIZE
from ..media.sound import pcm_chunks
from ..media.voices import find_voices
from ..people.models import Person
from ..translate import _
from .models import VoiceReference
from .service import MIN_REFERENCE_SPEECH_S, VOICE, BiometricError, enrol

# A reference needs seconds of speech, not a lecture: uploads past this are refused (413) early.
MAX_REFERENCE_RECORDING_BYTES = 40 * 1024 * 1024


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
    except av.error.FFmpegError:  # opened and probed, but damaged further on
        raise BiometricError("corrupt", _("The file looks like %(what)s but cannot be read: it is "
                                          "damaged or incomplete.", what=_("a sound recording")),
                             422) from None
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
    return enrol(person, modality=VOICE, sha256=analysed.sha256, encoding=analysed.encoding,
                 actor=actor, at=at)
