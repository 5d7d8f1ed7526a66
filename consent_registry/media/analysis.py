"""Analysis jobs: the faces in a photo, the face tracks and voices of a video, the voices of a recording.

A run is claimed in the database (status queued -> analysing, with its start time and a lease,
see leases.py) before work starts, renews the lease while it works, and writes its result together
with the status ready or failed only while the lease is still its own. Huey delivers a job at most
once, so a worker that dies mid-run leaves the item "analysing"; its lease lapses within minutes,
the sweeper (every minute) queues it again, and a new run first removes what an earlier one left.
Voices (media/voices.py) are found in recordings and in the sound of videos, one appearance per
speaker with its segments and a short snippet to play; `voices_analysed` becomes true only when
that ran (a video without sound has nothing to hear), and the publication gate refuses sound
that was not analysed.

Failing closed. An error, an empty result or a cut-off file never reads as "nobody there": a
sound track or video frames that do not decode whole (media/completeness.py) fail the analysis
with a reason the media page shows and the gate blocks on (`analysis_failed`); every exception
does the same. When the speech detector finds nobody in sound that is audible for at least
UNHEARD_MIN_S (music, shouting, a detector that failed quietly), the audible stretches become one
voice appearance to resolve, with its snippet: a human listens and tags who speaks or marks it
"not recognisable". Silence, and a file without a sound track, have nobody to hear.

Matching (biometric processing) happens only while an admin has switched it on and somebody is
enrolled: then each face (each track, for videos) is encoded, compared with the references of the
people whose biometric consent is valid, and the nearest person within the policy becomes a
suggestion a human confirms. The encodings are never stored, whether they match or not. With
matching off nothing is encoded at all. Voices follow the same rules under their own switch: a
speaker's embedding is needed to tell speakers apart, but it is compared with references only
while voice matching is on, and it is never stored.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import numpy as np
import sqlalchemy as sa
from flask import current_app
from PIL import Image

from ..audit import SYSTEM, AuditEvent, record
from ..db import db, utcnow
from ..jobs import crontab, enqueue, periodic_task, task
from ..leases import claim, heartbeat, held_by, hold, lapsed, release_lapsed
from ..storage import get_storage
from .completeness import DamagedMedia, check_photo_filled
from .display import prepare_display
from .faces import Box, FaceEngine, crop, make_engine, oriented
from .matching import MatchPolicy, Reference, Suggestion, suggest_many
from .models import Appearance, Media
from .sound import Loudness, duration_of, extract, has_sound, pcm_chunks, wav_bytes
from .voices import SNIPPET_S, VoiceEngine, find_voices, make_voice_engine

LOST_QUEUE = timedelta(minutes=10)
MAX_RESTARTS = 3  # runs cut off by a dead worker before the item fails for a person to look at
# The lease owner of the analysis run in this context (none for `flask media listen`'s runs).
_run_owner: ContextVar[str | None] = ContextVar("analysis_run_owner", default=None)
CROP_PREFIX = "crops"
PROGRESS_EVERY = 2.0  # seconds between progress commits of a video
# Audible sound in which the detector found no speech, from this many seconds on, needs a human.
UNHEARD_MIN_S = 1.0


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


_voice_engines = threading.local()


def voice_engine() -> VoiceEngine:
    """The voice engine analysis uses: one per thread, since the speech detector keeps state."""
    engine = getattr(_voice_engines, "engine", None)
    if engine is None:
        engine = _voice_engines.engine = make_voice_engine(threads=current_app.config["VOICE_THREADS"])
    return engine


def start_analysis(media_id: int) -> None:
    """Queue the analysis of a newly uploaded item."""
    enqueue(analyse_media, media_id)


def _claim(media_id: int, now: datetime) -> str | None:
    """Take a queued item for this run, with a lease; its owner, or None when it is gone, done or
    taken by another run."""
    owner = claim(Media, media_id, where=Media.status == "queued", now=now,
                  values={"status": "analysing", "progress": 0, "analysis_started_at": now,
                          "failure_reason": None})
    db.session.commit()
    return owner


def _discard(found: list[FoundFace], voices: list[FoundVoice]) -> None:
    """Delete the crops and snippets of a run that lost its lease: another run redoes the item."""
    for key in [face.crop_key for face in found] + [voice.snippet_key for voice in voices]:
        get_storage().delete(key)


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
class FoundVoice:
    """A voice found by analysis, before it is written: when it speaks, its snippet, whom matching
    suggests."""

    segments: list[list[float]]
    snippet_key: str
    suggestion: Suggestion | None = None
    speech: bool = True  # False: audible sound in which no speech was found, for a human to hear


@dataclass(frozen=True, slots=True)
class Matcher:
    """What faces are compared with during one run: the enrolled references and the policy."""

    references: tuple[Reference, ...]
    policy: MatchPolicy

    def suggest(self, encodings: list[np.ndarray]) -> list[Suggestion | None]:
        """The suggestion for each encoding, in order (the encodings are not kept)."""
        return suggest_many(encodings, self.references, policy=self.policy) if encodings else []


def matcher(at: datetime, modality: str = "face") -> Matcher | None:
    """The matcher of faces (or voices) for a run starting now; None when off or nobody is enrolled."""
    from ..biometrics.service import matching_enabled, matching_references

    if not matching_enabled(modality):
        return None
    references = matching_references(at, modality)
    if not references:
        return None
    policy = current_app.config["MATCH_POLICY" if modality == "face" else "VOICE_MATCH_POLICY"]
    return Matcher(tuple(references), policy)


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
    """The faces of a photo, with crops, and suggestions when there is a matcher.

    A photo whose data cannot fill its pixels (stored before ingest refused those) raises
    DamagedMedia before it is decoded.
    """
    data = get_storage().get(storage_key)
    image = Image.open(io.BytesIO(data))
    check_photo_filled(data, fmt={"MPO": "jpeg"}.get(image.format or "", (image.format or "").lower()))
    image = oriented(image)
    faces = engine().detect(image)
    suggestions: list[Suggestion | None] = [None] * len(faces)
    if match is not None and faces:
        suggestions = match.suggest(engine().encode(image, [face.box for face in faces]))
    return [FoundFace(face.box, _store_crop(image, face.box), suggestion=suggestion)
            for face, suggestion in zip(faces, suggestions, strict=True)]


class LeaseLost(RuntimeError):
    """The run's lease went to another run (swept after a stall): it stops and keeps nothing."""


def _progress_reporter(media_id: int, *, low: int = 0, high: int = 100) -> Callable[[int], None]:
    """A callback that writes progress now and then, each time in its own short transaction.

    The percentage it is given is mapped onto low..high (a video's faces, then its sound). Within
    an analysis run the write needs the run's lease: once another run holds the item, this one
    raises LeaseLost instead of working on (minutes of a worker) and overwriting its progress.
    """
    last = time.monotonic()
    owner = _run_owner.get()
    ours = [held_by(Media, owner)] if owner else []

    def report(percent: int) -> None:
        """Store the percentage if a little while has passed."""
        nonlocal last
        if time.monotonic() - last >= PROGRESS_EVERY:
            overall = low + (high - low) * max(0, min(100, percent)) // 100
            written = db.session.execute(sa.update(Media).where(Media.id == media_id, *ours)
                                         .values(progress=max(0, min(99, overall)))).rowcount
            db.session.commit()
            if ours and not written:
                raise LeaseLost(f"media {media_id}: another run holds the item now")
            last = time.monotonic()

    return report


@contextmanager
def _local_copy(storage_key: str) -> Iterator[str]:
    """The stored file copied to a temporary local file (decoders want a path), removed after."""
    with tempfile.NamedTemporaryFile(suffix=".media") as local:
        with get_storage().open(storage_key) as stored:
            shutil.copyfileobj(stored, local)
        local.flush()
        yield local.name


def analyse_video(media_id: int, path: str, match: Matcher | None = None, *,
                  progress: Callable[[int], None] | None = None) -> list[FoundFace]:
    """One face per track through the video, with its segments, a thumbnail and a suggestion."""
    from .video import thumbnail, track_faces, video_seconds

    per_frame, scanner = _video_engines()
    tracks = track_faces(path, engine=per_frame, scan_engine=scanner, duration=video_seconds(path),
                         sample_fps=current_app.config.get("VIDEO_SAMPLE_FPS", 5.0),
                         encodings=match is not None,
                         progress=progress or _progress_reporter(media_id),
                         workers=current_app.config.get("VIDEO_WORKERS", 1))
    suggestions: dict[int, Suggestion | None] = {}
    if match is not None:
        encoded = [i for i, track in enumerate(tracks) if track.encoding is not None]
        suggestions = dict(zip(encoded, match.suggest([tracks[i].encoding for i in encoded]),
                               strict=True))
    found = []
    for i, track in enumerate(tracks):
        buffer = io.BytesIO()
        thumbnail(path, track.best).save(buffer, format="JPEG", quality=85)
        found.append(FoundFace(track.best.box, get_storage().put(buffer.getvalue(), prefix=CROP_PREFIX),
                               [[round(s, 2), round(e, 2)] for s, e in track.segments],
                               suggestions.get(i),
                               [[round(p.t, 3), p.box.x, p.box.y, p.box.w, p.box.h]
                                for p in track.points]))
    return found


def analyse_sound(path: str, match: Matcher | None = None, *,
                  progress: Callable[[int], None] | None = None) -> list[FoundVoice]:
    """One voice per speaker in the file's sound, with segments, a snippet and a suggestion.

    The speakers' embeddings are compared with voice references only when there is a matcher,
    and are dropped when this returns. Sound that does not decode whole raises DamagedMedia;
    audible sound without speech found is returned as one voice to resolve (see the module).
    """
    if not has_sound(path):
        return []
    duration = duration_of(path)

    def heard(seconds: float) -> None:
        """Report the share of the sound read so far."""
        if progress is not None and duration:
            progress(int(100 * seconds / duration))

    loudness = Loudness()
    voices = find_voices(loudness.passing(pcm_chunks(path)), engine=voice_engine(), progress=heard)
    if not voices:
        return _unheard(path, loudness)
    suggestions = match.suggest([v.encoding for v in voices]) if match is not None and voices else []
    found = []
    for i, voice in enumerate(voices):
        snippet = wav_bytes(extract(path, start=voice.snippet[0], end=voice.snippet[1]))
        found.append(FoundVoice([[s, e] for s, e in voice.segments],
                                get_storage().put(snippet, prefix=CROP_PREFIX),
                                suggestions[i] if suggestions else None))
    return found


def _unheard(path: str, loudness: Loudness) -> list[FoundVoice]:
    """Audible sound in which no speech was found: one voice for a human to hear; none in silence.

    A detector that hears nobody may be wrong (or broken), and a recording that is loud for a
    while has somebody making the sound: that is never cleared without a human.
    """
    if loudness.audible_s < UNHEARD_MIN_S:
        return []
    spans = [[round(start, 2), round(end, 2)] for start, end in loudness.spans]
    longest = max(spans, key=lambda span: span[1] - span[0])
    middle = (longest[0] + longest[1]) / 2
    half = min(SNIPPET_S, longest[1] - longest[0]) / 2
    snippet = wav_bytes(extract(path, start=middle - half, end=middle + half))
    return [FoundVoice(spans, get_storage().put(snippet, prefix=CROP_PREFIX), speech=False)]


def _still_enrolled(found: list[FoundFace], voices: list[FoundVoice], at: datetime
                    ) -> tuple[list[FoundFace], list[FoundVoice]]:
    """Drop suggestions of people whose biometric consent ended while the run was busy."""
    from ..biometrics.service import matching_references

    def enrolled(modality: str, suggested: set[int]) -> set[int]:
        """Who of the suggested may still be matched by this modality."""
        return {r.person_id for r in matching_references(at, modality)} if suggested else set()

    faces_ok = enrolled("face", {f.suggestion.person_id for f in found if f.suggestion})
    voices_ok = enrolled("voice", {v.suggestion.person_id for v in voices if v.suggestion})
    return ([f if f.suggestion is None or f.suggestion.person_id in faces_ok
             else FoundFace(f.box, f.crop_key, f.segments, None, f.track) for f in found],
            [v if v.suggestion is None or v.suggestion.person_id in voices_ok
             else FoundVoice(v.segments, v.snippet_key, None, v.speech) for v in voices])


def _suggested(row: Appearance, suggestion: Suggestion | None, at: datetime) -> Appearance:
    """The row with its suggestion; an auto-accepted one is tagged at once."""
    if suggestion is not None:
        row.suggested_person_id = suggestion.person_id
        row.distance = round(suggestion.distance, 4)
        if suggestion.auto_accept:
            row.person_id = suggestion.person_id
            row.resolution = "identified"
            row.auto_accepted = True
            row.resolved_at = at
    return row


def _appearance(media_id: int, face: FoundFace, at: datetime) -> Appearance:
    """The row for one found face."""
    return _suggested(Appearance(media_id=media_id, kind="face", box_x=face.box.x, box_y=face.box.y,
                                 box_w=face.box.w, box_h=face.box.h, segments=face.segments,
                                 track=face.track, resolution="unresolved", crop_key=face.crop_key,
                                 source="detected"), face.suggestion, at)


def _voice_appearance(media_id: int, voice: FoundVoice, at: datetime) -> Appearance:
    """The row for one found voice: no box, its segments, its snippet where faces keep a crop."""
    return _suggested(Appearance(media_id=media_id, kind="voice", segments=voice.segments,
                                 resolution="unresolved", crop_key=voice.snippet_key,
                                 source="detected"), voice.suggestion, at)


def _find(media_id: int, kind: str, storage_key: str, faces: Matcher | None,
          voices: Matcher | None) -> tuple[list[FoundFace], list[FoundVoice]]:
    """Faces and voices of one item; no transaction is open meanwhile."""
    if kind == "photo":
        return analyse_photo(storage_key, faces), []
    with _local_copy(storage_key) as path:
        if kind == "video":
            found = analyse_video(media_id, path, faces, progress=_progress_reporter(media_id, high=85))
            return found, analyse_sound(path, voices,
                                        progress=_progress_reporter(media_id, low=85))
        return [], analyse_sound(path, voices, progress=_progress_reporter(media_id))


def failure_reason(error: Exception) -> str:
    """What is stored as the reason: a damaged file's code and detail, else the error's type too."""
    text = str(error) if isinstance(error, DamagedMedia) else f"{type(error).__name__}: {error}"
    return text[:300]


@task(queue="analysis")
def analyse_media(media_id: int) -> None:
    """Analyse one item and mark it ready, or failed with the reason.

    No transaction is open while faces and voices are looked for: on SQLite a transaction holds
    the write lock, and an analysis takes seconds to minutes.
    """
    owner = _claim(media_id, utcnow())
    if owner is None:
        return
    token = _run_owner.set(owner)
    try:
        with heartbeat(Media, media_id, owner, still=Media.status == "analysing"):
            _analyse_claimed(media_id, owner)
    finally:
        _run_owner.reset(token)


def _analyse_claimed(media_id: int, owner: str) -> None:
    """The run of analyse_media once claimed; every write of its outcome needs its lease."""
    ours = sa.and_(Media.id == media_id, Media.status == "analysing", held_by(Media, owner))
    media = db.session.get(Media, media_id)
    kind, storage_key = media.kind, media.storage_key
    found: list[FoundFace] = []
    voices: list[FoundVoice] = []
    try:
        match = matcher(utcnow()) if kind in ("photo", "video") else None
        voice_match = matcher(utcnow(), "voice") if kind in ("audio", "video") else None
        db.session.commit()
        if not hold(Media, media_id, owner, still=Media.status == "analysing"):
            db.session.rollback()  # taken over already: what is stored is the new run's
            return
        _forget_earlier_run(media_id)  # in the transaction that checked the lease
        found, voices = _find(media_id, kind, storage_key, match, voice_match)
        now = utcnow()
        found, voices = _still_enrolled(found, voices, now)
        rows = ([_appearance(media_id, face, now) for face in found]
                + [_voice_appearance(media_id, voice, now) for voice in voices])
        if not db.session.execute(sa.update(Media).where(ours).values(
                status="ready", progress=100, voices_analysed=kind in ("audio", "video"),
                lease_owner=None, lease_expires_at=None)).rowcount:
            db.session.rollback()  # the lease lapsed (or the item went): another run has it
            _discard(found, voices)
            return
        db.session.add_all(rows)
        db.session.flush()
        for row in rows:
            if row.auto_accepted:
                record("appearance:auto_accepted", actor=SYSTEM, subject_type="media",
                       subject_id=media_id, details={"appearance_id": row.id,
                                                     "person_id": row.person_id,
                                                     "distance": row.distance})
        record("media:analysed", actor=SYSTEM, subject_type="media", subject_id=media_id,
               details={"faces": len(found), "voices": len(voices),
                        "sound_without_speech": sum(not v.speech for v in voices),
                        "matching": match is not None, "voice_matching": voice_match is not None,
                        "suggestions": sum(r.suggested_person_id is not None for r in rows)})
        db.session.commit()
    except Exception as exc:  # any failure is recorded on the item, never left "analysing"
        db.session.rollback()
        current_app.logger.exception("analysis of media %s failed", media_id)
        reason = failure_reason(exc)
        if db.session.execute(sa.update(Media).where(ours).values(
                status="failed", failure_reason=reason, lease_owner=None,
                lease_expires_at=None)).rowcount:
            record("media:analysis_failed", actor=SYSTEM, subject_type="media",
                   subject_id=media_id, details={"reason": reason})
        db.session.commit()
    if kind == "photo":
        prepare_display(media_id)  # the pages' copy, made once here rather than on a first look


@task(queue="analysis")
def listen_to_sound(media_id: int) -> None:
    """Find the voices of an item whose faces were analysed before voices were (an older install).

    Faces and every tagging decision stay; only voice appearances are added and voices_analysed
    set. A failure leaves the sound unheard (the gate keeps refusing it) and is audited.
    """
    media = db.session.get(Media, media_id)
    if media is None or media.kind not in ("audio", "video") or media.status != "ready" \
            or media.voices_analysed:
        db.session.commit()
        return
    storage_key = media.storage_key
    try:
        voice_match = matcher(utcnow(), "voice")
        db.session.commit()
        with _local_copy(storage_key) as path:
            voices = analyse_sound(path, voice_match)
        now = utcnow()
        _faces, voices = _still_enrolled([], voices, now)
        done = db.session.execute(
            sa.update(Media).where(Media.id == media_id, Media.status == "ready",
                                   Media.voices_analysed.is_(False))
            .values(voices_analysed=True)).rowcount
        if not done:  # deleted or analysed again meanwhile: keep nothing of this run
            db.session.rollback()
            for voice in voices:
                get_storage().delete(voice.snippet_key)
            return
        db.session.add_all([_voice_appearance(media_id, voice, now) for voice in voices])
        record("media:voices_analysed", actor=SYSTEM, subject_type="media", subject_id=media_id,
               details={"voices": len(voices), "voice_matching": voice_match is not None})
        db.session.commit()
    except Exception as exc:  # the sound stays unheard; the gate goes on refusing the item
        db.session.rollback()
        current_app.logger.exception("listening to the sound of media %s failed", media_id)
        record("media:analysis_failed", actor=SYSTEM, subject_type="media", subject_id=media_id,
               details={"reason": failure_reason(exc), "part": "sound"})
        db.session.commit()


def unheard_items() -> list[int]:
    """Ready recordings and videos whose sound was never analysed (uploaded before voices were)."""
    return list(db.session.execute(sa.select(Media.id).where(
        Media.status == "ready", Media.kind.in_(("audio", "video")),
        Media.voices_analysed.is_(False)).order_by(Media.id)).scalars())


def _restarts(media_id: int) -> int:
    """How often the sweeper restarted this item's analysis after its worker died."""
    return db.session.execute(sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "media:analysis_restarted", AuditEvent.subject_type == "media",
        AuditEvent.subject_id == str(media_id))).scalar_one()


def sweep_analyses(now: datetime | None = None, *, lost_jobs: bool = True) -> int:
    """Queue again what a dead worker (its lease lapsed) or, with lost_jobs, a lost job left
    behind; returns how many."""
    moment = now or utcnow()
    candidates = db.session.execute(sa.select(Media.id).where(
        Media.status == "analysing", lapsed(Media, moment))).scalars().all()
    stale = []
    for media_id in candidates:
        if _restarts(media_id) >= MAX_RESTARTS:
            # Its worker died every time (e.g. killed for memory): stop, blocked, for a person.
            reason = "worker_lost"  # its sentence on the media page (media/views.FAILURE_LABELS)
            if release_lapsed(Media, media_id, where=Media.status == "analysing",
                              values={"status": "failed", "failure_reason": reason}, now=moment):
                record("media:analysis_failed", actor=SYSTEM, subject_type="media",
                       subject_id=media_id, details={"reason": reason})
        elif release_lapsed(Media, media_id, where=Media.status == "analysing",
                            values={"status": "queued"}, now=moment):
            record("media:analysis_restarted", actor=SYSTEM, subject_type="media",
                   subject_id=media_id)
            stale.append(media_id)
    db.session.commit()
    waiting = db.session.execute(sa.select(Media.id).where(
        Media.status == "queued", Media.created_at < moment - LOST_QUEUE)).scalars().all() \
        if lost_jobs else []
    ids = sorted({*waiting, *stale})
    for media_id in ids:
        enqueue(analyse_media, media_id)
    return len(ids)


@periodic_task(crontab(minute="*"))
def sweep_analyses_every_minute() -> None:
    """Keep analysis going after crashes: lapsed leases every minute, lost jobs every five."""
    sweep_analyses(lost_jobs=utcnow().minute % 5 == 0)
