"""Analysis jobs: find the faces in a photo or the face tracks in a video, as appearances.

A run is claimed in the database (status queued -> analysing, with its start time) before work
starts, and its result is written together with the status ready or failed. Huey delivers a job
at most once, so a worker that dies mid-run leaves the item "analysing"; the sweeper finds runs
older than STALE_RUN and queues them again, and a new run first removes what an earlier one left.
Sound (voices) is the audio issue's: until then audio and the sound of videos are not analysed,
and `voices_analysed` stays false so the publication gate can refuse them.

Matching (biometric processing) happens only while an admin has switched it on and somebody is
enrolled: then each face (each track, for videos) is encoded, compared with the references of the
people whose biometric consent is valid, and the nearest person within the policy becomes a
suggestion a human confirms. The encodings are never stored, whether they match or not. With
matching off nothing is encoded at all.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import numpy as np
import sqlalchemy as sa
from flask import current_app
from PIL import Image

from ..audit import SYSTEM, record
from ..db import db, utcnow
from ..jobs import crontab, enqueue, periodic_task, task
from ..storage import get_storage
from .faces import Box, FaceEngine, crop, make_engine, oriented
from .matching import MatchPolicy, Reference, Suggestion, suggest_many
from .models import Appearance, Media

STALE_RUN = timedelta(minutes=30)
LOST_QUEUE = timedelta(minutes=10)
CROP_PREFIX = "crops"
PROGRESS_EVERY = 2.0  # seconds between progress commits of a video


@cache
def _engine(model: str) -> FaceEngine:
    """One face engine per model and process: loading dlib's models takes a while."""
    return make_engine(model=model)


@cache
def _video_engines() -> tuple[FaceEngine, FaceEngine | None]:
    """The per-frame and the scanning engine the video policy was measured with (media/video.py)."""
    from .video import make_video_engines

    return make_video_engines()


def engine() -> FaceEngine:
    """The face engine the configuration asks for (HOG by default, CNN as a setting)."""
    return _engine(current_app.config.get("FACE_MODEL", "hog"))


def start_analysis(media_id: int) -> None:
    """Queue the analysis of a newly uploaded item."""
    enqueue(analyse_media, media_id)


def _claim(media_id: int, now: datetime) -> bool:
    """Take a queued item for this run; False when it is gone, done or taken by another run."""
    claimed = db.session.execute(
        sa.update(Media).where(Media.id == media_id, Media.status == "queued")
        .values(status="analysing", progress=0, analysis_started_at=now, failure_reason=None)
    ).rowcount
    db.session.commit()
    return bool(claimed)


def _store_crop(image: Image.Image, box: Box) -> str:
    """A small JPEG of one face for the tagging page."""
    buffer = io.BytesIO()
    crop(image, box).save(buffer, format="JPEG", quality=85)
    return get_storage().put(buffer.getvalue(), prefix=CROP_PREFIX)


@dataclass(frozen=True, slots=True)
class FoundFace:
    """A face found by analysis, before it is written: box, stored crop, for videos when, and whom
    matching suggests."""

    box: Box
    crop_key: str
    segments: list[list[float]] | None = None
    suggestion: Suggestion | None = None
    track: list[list[float]] | None = None  # videos: [[t_s, x, y, w, h], ...] per sampled detection


@dataclass(frozen=True, slots=True)
class Matcher:
    """What faces are compared with during one run: the enrolled references and the policy."""

    references: tuple[Reference, ...]
    policy: MatchPolicy

    def suggest(self, encodings: list[np.ndarray]) -> list[Suggestion | None]:
        """The suggestion for each encoding, in order (the encodings are not kept)."""
        return suggest_many(encodings, self.references, policy=self.policy) if encodings else []


def matcher(at: datetime) -> Matcher | None:
    """The matcher for a run starting now, or None when matching is off or nobody is enrolled."""
    from ..biometrics.service import face_matching_enabled, matching_references

    if not face_matching_enabled():
        return None
    references = matching_references(at)
    if not references:
        return None
    return Matcher(tuple(references), current_app.config["MATCH_POLICY"])


def _forget_earlier_run(media_id: int) -> None:
    """Remove what an interrupted run left: its appearances and their crops (short transaction)."""
    left = db.session.execute(
        sa.select(Appearance).where(Appearance.media_id == media_id)).scalars().all()
    for appearance in left:
        if appearance.crop_key:
            get_storage().delete(appearance.crop_key)
        db.session.delete(appearance)
    db.session.commit()


def analyse_photo(storage_key: str, match: Matcher | None = None) -> list[FoundFace]:
    """The faces of a photo, with crops, and suggestions when there is a matcher."""
    image = oriented(Image.open(io.BytesIO(get_storage().get(storage_key))))
    faces = engine().detect(image)
    suggestions: list[Suggestion | None] = [None] * len(faces)
    if match is not None and faces:
        suggestions = match.suggest(engine().encode(image, [face.box for face in faces]))
    return [FoundFace(face.box, _store_crop(image, face.box), suggestion=suggestion)
            for face, suggestion in zip(faces, suggestions, strict=True)]


def _progress_reporter(media_id: int) -> Callable[[int], None]:
    """A callback that writes progress now and then, each time in its own short transaction."""
    last = time.monotonic()

    def report(percent: int) -> None:
        """Store the percentage if a little while has passed."""
        nonlocal last
        if time.monotonic() - last >= PROGRESS_EVERY:
            db.session.execute(sa.update(Media).where(Media.id == media_id)
                               .values(progress=max(0, min(99, percent))))
            db.session.commit()
            last = time.monotonic()

    return report


def analyse_video(media_id: int, storage_key: str, match: Matcher | None = None) -> list[FoundFace]:
    """One face per track through the video, with its segments, a thumbnail and a suggestion."""
    from .video import thumbnail, track_faces

    with tempfile.NamedTemporaryFile(suffix=".video") as local:
        with get_storage().open(storage_key) as stored:
            shutil.copyfileobj(stored, local)
        local.flush()
        per_frame, scanner = _video_engines()
        tracks = track_faces(local.name, engine=per_frame, scan_engine=scanner,
                             sample_fps=current_app.config.get("VIDEO_SAMPLE_FPS", 5.0),
                             encodings=match is not None, progress=_progress_reporter(media_id),
                             workers=current_app.config.get("VIDEO_WORKERS", 1))
        suggestions: dict[int, Suggestion | None] = {}
        if match is not None:
            encoded = [i for i, track in enumerate(tracks) if track.encoding is not None]
            suggestions = dict(zip(encoded, match.suggest([tracks[i].encoding for i in encoded]),
                                   strict=True))
        found = []
        for i, track in enumerate(tracks):
            buffer = io.BytesIO()
            thumbnail(local.name, track.best).save(buffer, format="JPEG", quality=85)
            found.append(FoundFace(track.best.box, get_storage().put(buffer.getvalue(),
                                                                     prefix=CROP_PREFIX),
                                   [[round(s, 2), round(e, 2)] for s, e in track.segments],
                                   suggestions.get(i),
                                   [[round(p.t, 3), p.box.x, p.box.y, p.box.w, p.box.h]
                                    for p in track.points]))
        return found


def _still_enrolled(found: list[FoundFace], at: datetime) -> list[FoundFace]:
    """Drop suggestions of people whose biometric consent ended while the run was busy."""
    suggested = {f.suggestion.person_id for f in found if f.suggestion is not None}
    if not suggested:
        return found
    from ..biometrics.service import face_matching_enabled, matching_references

    enrolled = ({r.person_id for r in matching_references(at)} if face_matching_enabled() else set())
    return [f if f.suggestion is None or f.suggestion.person_id in enrolled
            else FoundFace(f.box, f.crop_key, f.segments, None, f.track) for f in found]


def _appearance(media_id: int, face: FoundFace, at: datetime) -> Appearance:
    """The row for one found face; an auto-accepted suggestion is tagged at once."""
    suggestion = face.suggestion
    row = Appearance(media_id=media_id, kind="face", box_x=face.box.x, box_y=face.box.y,
                     box_w=face.box.w, box_h=face.box.h, segments=face.segments,
                     track=face.track, resolution="unresolved", crop_key=face.crop_key,
                     source="detected")
    if suggestion is not None:
        row.suggested_person_id = suggestion.person_id
        row.distance = round(suggestion.distance, 4)
        if suggestion.auto_accept:
            row.person_id = suggestion.person_id
            row.resolution = "identified"
            row.auto_accepted = True
            row.resolved_at = at
    return row


@task()
def analyse_media(media_id: int) -> None:
    """Analyse one item and mark it ready, or failed with the reason.

    No transaction is open while faces are looked for: on SQLite a transaction holds the write
    lock, and an analysis takes seconds to minutes.
    """
    if not _claim(media_id, utcnow()):
        return
    media = db.session.get(Media, media_id)
    kind, storage_key = media.kind, media.storage_key
    try:
        match = matcher(utcnow()) if kind in ("photo", "video") else None
        db.session.commit()
        _forget_earlier_run(media_id)
        if kind == "photo":
            found = analyse_photo(storage_key, match)
        elif kind == "video":
            found = analyse_video(media_id, storage_key, match)
        else:
            found = []  # voices: the audio issue
        now = utcnow()
        rows = [_appearance(media_id, face, now) for face in _still_enrolled(found, now)]
        db.session.add_all(rows)
        db.session.execute(sa.update(Media).where(Media.id == media_id)
                           .values(status="ready", progress=100))
        db.session.flush()
        for row in rows:
            if row.auto_accepted:
                record("appearance:auto_accepted", actor=SYSTEM, subject_type="media",
                       subject_id=media_id, details={"appearance_id": row.id,
                                                     "person_id": row.person_id,
                                                     "distance": row.distance})
        record("media:analysed", actor=SYSTEM, subject_type="media", subject_id=media_id,
               details={"faces": len(rows), "matching": match is not None,
                        "suggestions": sum(r.suggested_person_id is not None for r in rows)})
        db.session.commit()
    except Exception as exc:  # any failure is recorded on the item, never left "analysing"
        db.session.rollback()
        current_app.logger.exception("analysis of media %s failed", media_id)
        reason = f"{type(exc).__name__}: {exc}"[:300]
        db.session.execute(sa.update(Media).where(Media.id == media_id)
                           .values(status="failed", failure_reason=reason))
        record("media:analysis_failed", actor=SYSTEM, subject_type="media", subject_id=media_id,
               details={"reason": reason})
        db.session.commit()


def sweep_analyses(now: datetime | None = None) -> int:
    """Queue again what a dead worker or a lost job left behind; returns how many."""
    moment = now or utcnow()
    stale = db.session.execute(sa.select(Media).where(
        Media.status == "analysing", Media.analysis_started_at < moment - STALE_RUN)).scalars().all()
    for media in stale:
        media.status = "queued"
        record("media:analysis_restarted", actor=SYSTEM, subject_type="media", subject_id=media.id)
    db.session.commit()
    waiting = db.session.execute(sa.select(Media.id).where(
        Media.status == "queued", Media.created_at < moment - LOST_QUEUE)).scalars().all()
    ids = sorted({*waiting, *(m.id for m in stale)})
    for media_id in ids:
        enqueue(analyse_media, media_id)
    return len(ids)


@periodic_task(crontab(minute="*/5"))
def sweep_analyses_every_five_minutes() -> None:
    """Keep analysis going after crashes."""
    sweep_analyses()
