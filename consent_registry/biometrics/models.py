"""The school-wide biometric switch and the reference encodings of enrolled people.

Reference encodings are special-category data (GDPR art. 9). They live in their own table, are
never joined into other answers, never leave the service through the API, and are deleted (with
an audit event) when the person's biometric consent ends, the person leaves, or the school
switches matching off.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..db import UTCDateTime, db, utcnow

MODALITIES = ("face", "voice")
ENCODING_DTYPE = np.dtype("<f8")  # stored as 128 little-endian doubles: 1,024 bytes


class BiometricSetting(db.Model):
    """Whether matching of one modality (faces, voices) is switched on, and on what DPIA."""

    __tablename__ = "biometric_settings"

    modality: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=False)
    dpia_reference: Mapped[str | None] = mapped_column(sa.String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    __table_args__ = (
        sa.CheckConstraint(sa.column("modality").in_(MODALITIES), name="modality"),
        # Matching can be on only with the DPIA it was decided on.
        sa.CheckConstraint("NOT enabled OR dpia_reference IS NOT NULL", name="dpia_when_enabled"),
    )


class FaceReference(db.Model):
    """One enrolled face encoding of a person, computed from a reference photo (not kept)."""

    __tablename__ = "face_references"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(sa.ForeignKey("people.id", ondelete="CASCADE"), index=True)
    encoding: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # The photo itself is not stored; its hash refuses the same photo twice for one person.
    photo_sha256: Mapped[str] = mapped_column(sa.String(64))
    # The biometric consent record that allowed the enrolment: the proof for the DPO.
    consent_record_id: Mapped[int | None] = mapped_column(sa.ForeignKey("consent_records.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    __table_args__ = (sa.UniqueConstraint("person_id", "photo_sha256", name="uq_face_reference_photo"),)

    def vector(self) -> np.ndarray:
        """The stored encoding as a float64 vector."""
        return np.frombuffer(self.encoding, dtype=ENCODING_DTYPE).astype(np.float64)


class VoiceReference(db.Model):
    """One enrolled speaker embedding of a person, computed from a reference recording (not kept)."""

    __tablename__ = "voice_references"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(sa.ForeignKey("people.id", ondelete="CASCADE"), index=True)
    encoding: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # The recording itself is not stored; its hash refuses the same recording twice for one person.
    recording_sha256: Mapped[str] = mapped_column(sa.String(64))
    consent_record_id: Mapped[int | None] = mapped_column(sa.ForeignKey("consent_records.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    __table_args__ = (sa.UniqueConstraint("person_id", "recording_sha256",
                                          name="uq_voice_reference_recording"),)

    def vector(self) -> np.ndarray:
        """The stored embedding as a float64 vector."""
        return np.frombuffer(self.encoding, dtype=ENCODING_DTYPE).astype(np.float64)


def encoding_bytes(vector: np.ndarray) -> bytes:
    """An encoding (128 numbers for a face, 256 for a voice) as the bytes the tables store."""
    return np.asarray(vector, dtype=ENCODING_DTYPE).tobytes()
