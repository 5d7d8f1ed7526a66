"""Validated shapes of media data for the API (and its OpenAPI document) and the upload forms."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from ..people.schemas import IsoDate, Strict, Text
from .models import Appearance, Media

MediaKind = Literal["photo", "video", "audio"]
MediaStatus = Literal["queued", "analysing", "ready", "failed"]
# What an upload accepts, by content: the OpenAPI document lists them for clients.
ACCEPTED_CONTENT_TYPES = (
    "image/jpeg", "image/png", "image/webp", "image/heic", "image/heif", "video/mp4",
    "video/quicktime", "video/webm", "audio/wav", "audio/mpeg", "audio/mp4", "audio/flac",
    "audio/ogg",
)


class MediaUploadFields(Strict):
    """The fields sent along with an uploaded file (all optional)."""

    title: Annotated[Text, Field(max_length=200)] | None = None
    taken_on: IsoDate | None = None


class BoxOut(BaseModel):
    """A face's box in the displayed picture, in pixels."""

    x: int
    y: int
    w: int
    h: int


class AppearanceOut(BaseModel):
    """A face or voice found in a media item, and who it is (or why that does not matter)."""

    id: int
    kind: Literal["face", "voice"]
    box: BoxOut | None
    segments: list[Annotated[list[float], Field(min_length=2, max_length=2)]] | None = Field(
        description="[start_s, end_s] pairs for face tracks in videos and for voices")
    person_id: int | None
    suggested_person_id: int | None
    distance: float | None
    resolution: Literal["unresolved", "identified", "not_recognisable", "blur"]
    source: Literal["detected", "manual"] = Field(
        description="found by analysis, or added by a staff member")
    auto_accepted: bool = Field(description="identified by the matcher's auto-accept, not a person")
    resolved_by: int | None = Field(description="the user who made the last decision")
    resolved_at: str | None = Field(description="when that decision was made (ISO 8601, UTC)")


class MediaSummary(BaseModel):
    """A media item without its appearances, as lists show it."""

    id: int
    kind: MediaKind
    status: MediaStatus
    progress: int = Field(ge=0, le=100)
    failure_reason: str | None
    content_type: str
    size_bytes: int
    width: int | None
    height: int | None
    duration_s: float | None
    title: str | None
    taken_on: date | None
    sha256: str
    created_at: str


class MediaOut(MediaSummary):
    """A media item with the faces and voices found in it."""

    appearances: list[AppearanceOut]


class MediaPage(BaseModel):
    """One page of media items."""

    items: list[MediaSummary]
    page: int
    per_page: int
    total: int


def appearance_out(row: Appearance) -> AppearanceOut:
    """The API's view of an appearance."""
    return AppearanceOut(
        id=row.id, kind=row.kind, box=BoxOut(**row.box) if row.box else None,  # type: ignore[arg-type]
        segments=row.segments, person_id=row.person_id,
        suggested_person_id=row.suggested_person_id, distance=row.distance,
        resolution=row.resolution,  # type: ignore[arg-type]
        source=row.source or "detected", auto_accepted=bool(row.auto_accepted),  # type: ignore[arg-type]
        resolved_by=row.resolved_by,
        resolved_at=row.resolved_at.isoformat() if row.resolved_at else None,
    )


def _summary_fields(media: Media) -> dict[str, object]:
    """The fields every view of an item shares."""
    return {
        "id": media.id, "kind": media.kind, "status": media.status, "progress": media.progress,
        "failure_reason": media.failure_reason, "content_type": media.content_type,
        "size_bytes": media.size_bytes, "width": media.width, "height": media.height,
        "duration_s": media.duration_s, "title": media.title, "taken_on": media.taken_on,
        "sha256": media.sha256, "created_at": media.created_at.isoformat(),
    }


def media_summary_json(media: Media) -> dict[str, object]:
    """An item for lists, JSON-ready."""
    return MediaSummary.model_validate(_summary_fields(media)).model_dump(mode="json")


def media_json(media: Media) -> dict[str, object]:
    """An item with its appearances, JSON-ready."""
    out = MediaOut.model_validate(
        {**_summary_fields(media), "appearances": [appearance_out(a) for a in media.appearances]}
    )
    return out.model_dump(mode="json")
