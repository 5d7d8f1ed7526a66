"""Shapes of face-matching data in the API: the switch and reference photos (never an encoding)."""

from __future__ import annotations

from pydantic import BaseModel, Field, StrictBool

from ..people.schemas import Strict
from .models import BiometricSetting, FaceReference, VoiceReference


class FaceMatchingIn(Strict):
    """Switch face matching on (with the DPIA it was decided on) or off."""

    enabled: StrictBool
    dpia_reference: str | None = Field(
        default=None, max_length=200,
        description="The DPIA the decision rests on; required (not blank) when enabled is true")


class FaceMatchingOut(BaseModel):
    """Whether face matching is on, on which DPIA, and who last changed it when."""

    enabled: bool
    dpia_reference: str | None
    updated_at: str | None
    updated_by: int | None


class ReferencePhotoOut(BaseModel):
    """One reference of a person for face matching; the photo is not kept, the encoding never shown."""

    id: int
    person_id: int
    created_at: str
    consent_record_id: int | None


class ReferencePhotoList(BaseModel):
    """A person's references, oldest first."""

    items: list[ReferencePhotoOut]


def face_matching_json(setting: BiometricSetting) -> dict[str, object]:
    """The setting as the API shows it."""
    return FaceMatchingOut(
        enabled=bool(setting.enabled), dpia_reference=setting.dpia_reference,
        updated_at=setting.updated_at.isoformat() if setting.updated_at else None,
        updated_by=setting.updated_by,
    ).model_dump(mode="json")


def reference_json(reference: FaceReference | VoiceReference) -> dict[str, object]:
    """A reference as the API shows it: no encoding, no photo or recording hash."""
    return ReferencePhotoOut(
        id=reference.id, person_id=reference.person_id, created_at=reference.created_at.isoformat(),
        consent_record_id=reference.consent_record_id,
    ).model_dump(mode="json")
