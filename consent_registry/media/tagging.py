"""Tagging: staff decide who each appearance is, or why that does not matter for publication.

The decisions themselves are pure (`decide`, `check_box`, `check_segments`); the functions that
change rows apply them, stamp who decided and when, and write an audit event in the caller's
transaction. The caller commits. Tagging a person who has left the school is allowed: the
publication gate blocks them, and the record of who is in the picture stays true.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, replace
from typing import Any, Literal

from PIL import Image

from ..audit import Actor, record
from ..db import db, utcnow
from ..people.models import Person
from ..storage import StorageKeyError, get_storage
from ..translate import _
from .faces import Box, crop, oriented
from .models import Appearance, Media

log = logging.getLogger(__name__)
CROP_PREFIX = "crops"  # where analysis keeps its crops too
MIN_BOX_SIDE = 8  # pixels; smaller boxes are mis-clicks, not faces
MAX_SEGMENTS = 1000
SETTABLE_RESOLUTIONS = ("unresolved", "not_recognisable", "blur")


class TaggingError(Exception):
    """A decision that cannot be made: an HTTP-like status, a code, a message and the field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        """Keep what the API and the pages need to say what went wrong."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class State:
    """What a decision changes on an appearance."""

    resolution: str
    person_id: int | None
    suggested_person_id: int | None
    distance: float | None


@dataclass(frozen=True, slots=True)
class Tag:
    """This appearance is that person."""

    person_id: int


@dataclass(frozen=True, slots=True)
class Accept:
    """The matcher's suggestion is right."""


@dataclass(frozen=True, slots=True)
class Reject:
    """The matcher's suggestion is wrong."""


@dataclass(frozen=True, slots=True)
class Resolve:
    """Not recognisable, blurred when published, or back to undecided."""

    resolution: str


Decision = Tag | Accept | Reject | Resolve


def decide(state: State, decision: Decision) -> State:
    """The state after a human decision, or a TaggingError when it cannot be made."""
    if isinstance(decision, Tag):
        keep = state.suggested_person_id == decision.person_id
        # A suggestion of someone else was wrong; keeping it would show a stale hint.
        return State("identified", decision.person_id, state.suggested_person_id if keep else None,
                     state.distance if keep else None)
    if isinstance(decision, Accept | Reject) and state.suggested_person_id is None:
        raise TaggingError(409, "no_suggestion", _("There is no suggestion to decide on."))
    if isinstance(decision, Accept):
        return replace(state, resolution="identified", person_id=state.suggested_person_id)
    if isinstance(decision, Reject):
        return replace(state, suggested_person_id=None, distance=None)
    if decision.resolution == "identified":
        raise TaggingError(422, "invalid", _("Choose a person to mark someone as identified."),
                           "resolution")
    if decision.resolution not in SETTABLE_RESOLUTIONS:
        raise TaggingError(422, "invalid", _("Choose one of: %(choices)s.",
                                             choices=", ".join(SETTABLE_RESOLUTIONS)), "resolution")
    if decision.resolution == "blur":
        # Who is blurred stays known: useful when the blur is checked, and for removal requests.
        return replace(state, resolution="blur")
    return replace(state, resolution=decision.resolution, person_id=None)


def check_box(box: Box, width: int | None, height: int | None) -> str | None:
    """Why a box cannot be a face in a picture of this size, or None when it can."""
    if not width or not height:
        return _("This item has no picture to draw a box on.")
    if box.w < MIN_BOX_SIDE or box.h < MIN_BOX_SIDE:
        return _("A box must be at least %(n)d pixels wide and high.", n=MIN_BOX_SIDE)
    if box.x < 0 or box.y < 0 or box.right > width or box.bottom > height:
        return _("The box must lie within the picture (%(w)d by %(h)d pixels).", w=width, h=height)
    return None


def check_segments(segments: list[list[float]], duration_s: float | None) -> str | None:
    """Why these [start, end] times cannot be, or None when they can."""
    if len(segments) > MAX_SEGMENTS:
        return _("Too many: at most %(n)s.", n=MAX_SEGMENTS)
    for pair in segments:
        if len(pair) != 2:
            return _("Each time span is a start and an end in seconds.")
        start, end = pair
        if not 0 <= start < end:
            return _("Each time span must start at 0 or later and end after it starts.")
        if duration_s is not None and end > duration_s + 0.5:
            return _("A time span ends after the recording does.")
    return None


def require_ready(media: Media) -> None:
    """Only analysed items are tagged: until then appearances may still change underneath."""
    if media.status != "ready":
        raise TaggingError(409, "not_ready", _("This item is not ready for tagging yet."))


def _state(appearance: Appearance) -> State:
    """The decision-relevant part of an appearance."""
    return State(appearance.resolution, appearance.person_id, appearance.suggested_person_id,
                 appearance.distance)


def _apply(appearance: Appearance, decision: Decision, actor: Actor, action: str) -> Appearance:
    """Make a decision on an appearance, stamp it and audit old and new state."""
    require_ready(appearance.media)
    old = _state(appearance)
    new = decide(old, decision)
    appearance.resolution = new.resolution
    appearance.person_id = new.person_id
    appearance.suggested_person_id = new.suggested_person_id
    appearance.distance = new.distance
    appearance.auto_accepted = False  # whatever the matcher did, a person has decided now
    undecided = new.resolution == "unresolved" and new.person_id is None
    appearance.resolved_by = None if undecided else actor.id
    appearance.resolved_at = None if undecided else utcnow()
    details: dict[str, Any] = {
        "media_id": appearance.media_id, "old_person_id": old.person_id,
        "new_person_id": new.person_id, "old_resolution": old.resolution,
        "new_resolution": new.resolution,
    }
    if old.suggested_person_id is not None:
        details["suggested_person_id"] = old.suggested_person_id
    record(action, actor=actor, subject_type="appearance", subject_id=appearance.id, details=details)
    return appearance


def tag_person(appearance: Appearance, person: Person, actor: Actor) -> Appearance:
    """This appearance is this person (who must exist; having left the school is allowed)."""
    return _apply(appearance, Tag(person.id), actor, "appearance:tagged")


def accept_suggestion(appearance: Appearance, actor: Actor) -> Appearance:
    """Confirm the matcher's suggestion; 409 no_suggestion when there is none."""
    return _apply(appearance, Accept(), actor, "appearance:suggestion_accepted")


def reject_suggestion(appearance: Appearance, actor: Actor) -> Appearance:
    """Drop the matcher's suggestion; the appearance stays as it was (usually unresolved)."""
    return _apply(appearance, Reject(), actor, "appearance:suggestion_rejected")


def set_resolution(appearance: Appearance, resolution: str, actor: Actor) -> Appearance:
    """Mark not recognisable or blurred, or reset to unresolved (which forgets the person)."""
    if appearance.kind == "voice" and resolution == "blur":
        # The published rendition keeps the sound as it is: "blur" would clear a voice unheard.
        raise TaggingError(422, "invalid", _("A voice cannot be blurred: tag the person, or mark it "
                                             "not recognisable (a murmur, a crowd)."), "resolution")
    return _apply(appearance, Resolve(resolution), actor, "appearance:resolution")


def _store_crop(media: Media, box: Box) -> str | None:
    """A small JPEG of the boxed face, cut from the upright photo, stored like analysis does."""
    try:
        data = get_storage().get(media.storage_key)
    except StorageKeyError:
        log.error("media %s has no stored file; the added face gets no crop", media.id)
        return None
    with Image.open(io.BytesIO(data)) as img:
        face = crop(oriented(img), box)
    buffer = io.BytesIO()
    face.save(buffer, format="JPEG", quality=85)
    return get_storage().put(buffer.getvalue(), prefix=CROP_PREFIX)


def add_appearance(media: Media, box: Box | None, person: Person | None, actor: Actor,
                   segments: list[list[float]] | None = None) -> Appearance:
    """A face the detector missed (a box), or a person present but not detected (no box).

    With a person it is identified at once; a box without a person waits to be tagged. The crop
    is stored last, after every check, so a refused request leaves no file behind.
    """
    require_ready(media)
    kind: Literal["face", "voice"] = "voice" if media.kind == "audio" else "face"
    if box is None and person is None:
        raise TaggingError(422, "person_required",
                           _("Without a box, say who is present."), "person_id")
    if box is not None:
        width, height = (None, None) if kind == "voice" else (media.width, media.height)
        if reason := check_box(box, width, height):
            raise TaggingError(422, "invalid_box", reason, "box")
    if segments is not None:
        if media.kind == "photo":
            raise TaggingError(422, "invalid", _("A photo has no times."), "segments")
        if reason := check_segments(segments, media.duration_s):
            raise TaggingError(422, "invalid", reason, "segments")
    appearance = Appearance(
        media=media, kind=kind, source="manual", segments=segments,
        box_x=box.x if box else None, box_y=box.y if box else None,
        box_w=box.w if box else None, box_h=box.h if box else None,
        person_id=person.id if person else None,
        resolution="identified" if person else "unresolved", auto_accepted=False,
        resolved_by=actor.id if person else None, resolved_at=utcnow() if person else None,
    )
    if box is not None and media.kind == "photo":
        appearance.crop_key = _store_crop(media, box)
    db.session.add(appearance)
    db.session.flush()
    record("appearance:added", actor=actor, subject_type="appearance", subject_id=appearance.id,
           details={"media_id": media.id, "kind": kind, "has_box": box is not None,
                    "new_person_id": appearance.person_id,
                    "new_resolution": appearance.resolution})
    return appearance
