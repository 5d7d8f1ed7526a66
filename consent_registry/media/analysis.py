"""Analysis jobs: find the faces in a photo or the face tracks in a video, as appearances.

A run is claimed in the database (status queued -> analysing, with its start time) before work
starts, and its result is written together with the status ready or failed. Huey delivers a job
at most once, so a worker that dies mid-run leaves the item "analysing"; the sweeper finds runs
older than STALE_RUN and queues them again, and a new run first removes what an earlier one left.
Sound (voices) is the audio issue's: until then audio and the sound of videos are not analysed,
and `voices_analysed` stays false so the publication gate can refuse them.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from datetime import datetime, timedelta
from functools import cache

import sqlalchemy as sa
from flask import current_app
from PIL import Image

from ..audit import SYSTEM, record
from ..db import db, utcnow
from ..jobs import crontab, enqueue, periodic_task, task
from ..storage import get_storage
from .faces import Box, FaceEngine, crop, make_engine, oriented
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


def _face_appearance(media: Media, box: Box, crop_key: str | None,
                     segments: list[list[float]] | None = None) -> Appearance:
    """An unresolved face appearance."""
    return Appearance(media_id=media.id, kind="face", box_x=box.x, box_y=box.y, box_w=box.w,
                      box_h=box.h, segments=segments, resolution="unresolved", crop_key=crop_key)


def _forget_earlier_run(media: Media) -> None:
    """Remove what an interrupted run left: its appearances and their crops."""
    for appearance in list(media.appearances):
        if appearance.crop_key:
            get_storage().delete(appearance.crop_key)
        media.appearances.remove(appearance)
    db.session.flush()


def analyse_photo(media: Media) -> list[Appearance]:
    """The faces of a photo, with crops."""
    image = oriented(Image.open(io.BytesIO(get_storage().get(media.storage_key))))
    return [_face_appearance(media, face.box, _store_crop(image, face.box))
            for face in engine().detect(image)]


def analyse_video(media: Media) -> list[Appearance]:
    """One appearance per face track through the video, with its segments and a thumbnail."""
    from .video import thumbnail, track_faces

    last_commit = time.monotonic()

    def progress(percent: int) -> None:
        """Show progress now and then, without a commit per frame."""
        nonlocal last_commit
        if time.monotonic() - last_commit >= PROGRESS_EVERY:
            media.progress = max(0, min(99, percent))
            db.session.commit()
            last_commit = time.monotonic()

    with tempfile.NamedTemporaryFile(suffix=".video") as local:
        with get_storage().open(media.storage_key) as stored:
            shutil.copyfileobj(stored, local)
        local.flush()
        per_frame, scanner = _video_engines()
        tracks = track_faces(local.name, engine=per_frame, scan_engine=scanner, progress=progress,
                             workers=current_app.config.get("VIDEO_WORKERS", 1))
        appearances = []
        for track in tracks:
            buffer = io.BytesIO()
            thumbnail(local.name, track.best).save(buffer, format="JPEG", quality=85)
            key = get_storage().put(buffer.getvalue(), prefix=CROP_PREFIX)
            appearances.append(_face_appearance(
                media, track.best.box, key, [[round(s, 2), round(e, 2)] for s, e in track.segments]))
        return appearances


@task()
def analyse_media(media_id: int) -> None:
    """Analyse one item and mark it ready, or failed with the reason."""
    if not _claim(media_id, utcnow()):
        return
    media = db.session.get(Media, media_id)
    try:
        _forget_earlier_run(media)
        if media.kind == "photo":
            appearances = analyse_photo(media)
        elif media.kind == "video":
            appearances = analyse_video(media)
        else:
            appearances = []  # voices: the audio issue
        db.session.add_all(appearances)
        media.status, media.progress = "ready", 100
        record("media:analysed", actor=SYSTEM, subject_type="media", subject_id=media.id,
               details={"faces": len(appearances)})
        db.session.commit()
    except Exception as exc:  # any failure is recorded on the item, never left "analysing"
        db.session.rollback()
        current_app.logger.exception("analysis of media %s failed", media_id)
        media = db.session.get(Media, media_id)
        if media is not None:
            media.status = "failed"
            media.failure_reason = f"{type(exc).__name__}: {exc}"[:300]
            record("media:analysis_failed", actor=SYSTEM, subject_type="media", subject_id=media_id,
                   details={"reason": media.failure_reason})
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
