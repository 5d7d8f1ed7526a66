"""The cleared rendition of a media item: what is published, never the upload itself.

`publishable_rendition(media)` blurs the appearances marked `blur` (photo boxes; video tracks, or
a face's box over its segments when it has no track), strips every tag, re-encodes and stores the
result under the storage prefix "renditions".

Reuse. The storage generates every key itself (`<prefix>/<random hex>`): a caller cannot choose
one, so the key cannot simply be derived from the content. Instead the prefix carries a
fingerprint of what the rendition depends on (the item's SHA-256, its kind, the blur set and the
renderer's version): `renditions/<fingerprint>/<random>`. A rendition is reused when a key under
that prefix is known and still stored: first from this process's memory, then from the
publications already made (their `rendition_key`, also an album's photos' ones). A new process
(or another worker) that has neither renders again: ~0.5 s for a 12 MP photo, ~0.4 s per second
of the public 640x360 clip (2 cores); the earlier file then stays in storage, unreferenced
(nothing deletes renditions yet).

No database transaction is held while rendering (SQLite's write lock would stop every writer):
the session is committed before the file is read and rendered.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import current_app

from ..db import db
from ..media.faces import Box
from ..media.models import Appearance, Media
from ..storage import CHUNK, Storage, get_storage
from .models import Publication, PublicationMedia
from .rendition import audio_rendition, photo_rendition, video_rendition

PREFIX = "renditions"
VERSION = 1  # bump when the renderer changes what it writes: older renditions are then not reused
CONTENT_TYPES = {"photo": "image/jpeg", "video": "video/mp4", "audio": "audio/mp4"}
EXTENSIONS = {"photo": "jpg", "video": "mp4", "audio": "m4a"}
WHOLE = 1e9  # seconds: "to the end" for a face with a box but neither track nor segments

_known: dict[str, RenditionFile] = {}
_known_lock = threading.Lock()


class RenditionError(Exception):
    """The item cannot be rendered safely (e.g. a face to blur has nowhere to be found)."""


@dataclass(frozen=True, slots=True)
class RenditionFile:
    """A stored rendition: its storage key, the SHA-256 of its bytes, its type and size."""

    key: str
    sha256: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class _Job:
    """What rendering needs, read from the database before its transaction ends."""

    media_id: int
    kind: str
    sha256: str
    storage_key: str
    blur: list[Any]


def blur_set(kind: str, appearances: Sequence[Appearance]) -> list[Any]:
    """What to blur: [[x, y, w, h]] boxes for a photo, [[[t, x, y, w, h], ...]] tracks for a video.

    Only faces marked `blur`. A video face without a track but with a box is blurred at that box
    over each of its segments (over the whole video when it has none). A face to blur with no box
    and no track cannot be blurred: RenditionError (never publish it sharp).
    """
    chosen = sorted((a for a in appearances if a.kind == "face" and a.resolution == "blur"),
                    key=lambda a: a.id or 0)
    out: list[Any] = []
    for appearance in chosen:
        box = appearance.box
        if kind == "photo":
            if box is None:
                raise RenditionError(f"appearance {appearance.id} has no box to blur")
            out.append([box["x"], box["y"], box["w"], box["h"]])
        elif kind == "video":
            if appearance.track:
                out.append([[float(v) for v in point] for point in appearance.track])
            elif box is not None:
                where = [box["x"], box["y"], box["w"], box["h"]]
                for start, end in appearance.segments or [[0.0, WHOLE]]:
                    out.append([[float(start), *where], [float(end), *where]])
            else:
                raise RenditionError(f"appearance {appearance.id} has no box or track to blur")
    return out


def fingerprint(media_sha256: str, kind: str, blur: list[Any]) -> str:
    """A hex digest of everything the rendition depends on."""
    payload = json.dumps({"v": VERSION, "media": media_sha256, "kind": kind, "blur": blur},
                         separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _job_for(media: Media) -> _Job:
    """The facts rendering needs."""
    if media.kind not in CONTENT_TYPES:
        raise RenditionError(f"unknown media kind {media.kind!r}")
    return _Job(media.id, media.kind, media.sha256, media.storage_key,
                blur_set(media.kind, media.appearances))


def _reusable(storage: Storage, job: _Job, prefix: str) -> RenditionFile | None:
    """A stored rendition of the same item and blur set, from memory or from a publication."""
    with _known_lock:
        known = _known.get(prefix)
    if known is not None and storage.exists(known.key):
        return known
    rows = db.session.execute(
        sa.select(Publication.rendition_key, Publication.rendition_sha256)
        .where(Publication.media_id == job.media_id, Publication.rendition_key.like(f"{prefix}/%"),
               Publication.rendition_sha256.is_not(None))
        .order_by(Publication.id.desc()).limit(5)).all()
    rows += db.session.execute(  # the photos of albums
        sa.select(PublicationMedia.rendition_key, PublicationMedia.rendition_sha256)
        .where(PublicationMedia.media_id == job.media_id,
               PublicationMedia.rendition_key.like(f"{prefix}/%"),
               PublicationMedia.rendition_sha256.is_not(None))
        .order_by(PublicationMedia.id.desc()).limit(5)).all()
    db.session.commit()  # end the read (SQLite: its write lock) before touching storage
    for key, sha in rows:
        if storage.exists(key):
            found = RenditionFile(key, sha, CONTENT_TYPES[job.kind], storage.size(key))
            _remember(prefix, found)
            return found
    return None


def _remember(prefix: str, rendition: RenditionFile) -> None:
    """Keep a rendition's key in this process's memory."""
    with _known_lock:
        _known[prefix] = rendition


def _render_to(job: _Job, storage: Storage, source: str, target: str,
               progress: Callable[[int], None] | None) -> None:
    """Render the stored original (copied to source) into target."""
    with storage.open(job.storage_key) as handle, open(source, "wb") as out:
        shutil.copyfileobj(handle, out, CHUNK)
    if job.kind == "photo":
        with open(source, "rb") as handle:
            data = handle.read()
        boxes = [Box(*(int(v) for v in b)) for b in job.blur]
        with open(target, "wb") as out:
            out.write(photo_rendition(data, boxes))
    elif job.kind == "video":
        video_rendition(source, target, job.blur, progress=progress)
    else:
        audio_rendition(source, target)


def _sha256_of(path: str) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def publishable_rendition(media: Media, *,
                          progress: Callable[[int], None] | None = None) -> RenditionFile:
    """The cleared rendition of the item, stored, reused while the item and its blur set are unchanged.

    Commits the session first: nothing is rendered inside a transaction.
    """
    job = _job_for(media)
    db.session.commit()
    storage = get_storage()
    prefix = f"{PREFIX}/{fingerprint(job.sha256, job.kind, job.blur)}"
    found = _reusable(storage, job, prefix)
    if found is not None:
        return found
    folder = tempfile.mkdtemp(prefix="rendition-", dir=current_app.config.get("INGEST_TMP_DIR"))
    try:
        source = os.path.join(folder, "source")
        target = os.path.join(folder, f"rendition.{EXTENSIONS[job.kind]}")
        _render_to(job, storage, source, target, progress)
        sha = _sha256_of(target)
        size = os.path.getsize(target)
        with open(target, "rb") as handle:
            key = storage.put_stream(handle, prefix=prefix, size_hint=size)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rendition = RenditionFile(key, sha, CONTENT_TYPES[job.kind], size)
    _remember(prefix, rendition)
    return rendition
