"""Subject-access exports (GDPR art. 15): one ZIP per request, built by a job, downloadable once.

The ZIP holds:

- `file.json`: the person's file exactly as `person_file.person_file(person)` gives it;
- `summary.html`: the same file, readable, in the person's language (Dutch or English);
- `media/<media_id>.jpg` for each photo the person appears in. It is made with
  `publishing.rendition.preview_photo`: the whole picture is softened, every other face box is
  blurred beyond recognition and only the person's own box(es) are restored sharp, so a face the
  detector missed is never handed over sharp either (fail closed). At most 2048 px, no metadata;
- `media/<media_id>.jpg` for each video: the thumbnail of the person's own face track
  (`Appearance.crop_key`), never a frame with others in it;
- `media/<media_id>-voice-<appearance_id>.wav` for each voice of theirs (in a recording or a video):
  the snippet of their own voice the tagger listens to, never the whole recording with others.

The job claims the row (queued -> building, with a lease it renews while it works: leases.py) and
commits before the slow work; the ZIP is written
member by member into a temporary file on disk and streamed into storage (prefix "exports").
Any failure leaves the row `failed` with its reason, never `building`. The download works once:
it marks the row downloaded in one conditional UPDATE, streams the file and deletes it afterwards.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any, BinaryIO

import sqlalchemy as sa
from flask import render_template
from flask_babel import force_locale

from ..audit import SYSTEM, Actor, record
from ..db import db, utcnow
from ..jobs import crontab, enqueue, periodic_task, task
from ..leases import claim, heartbeat, held_by, lapsed, release_lapsed
from ..media.faces import Box
from ..media.models import Appearance, Media
from ..people.models import Person
from ..publishing.rendition import preview_photo
from ..storage import CHUNK, Storage, StorageKeyError, get_storage
from . import person_file as person_file_module
from .models import SubjectExport

log = logging.getLogger(__name__)
PREFIX = "exports"
PHOTO_MAX_SIDE = 2048
MAX_ID = 2**31 - 1
ERROR_LENGTH = 500
LOST_JOB = timedelta(minutes=10)  # a queued export older than this lost its job: queue it again


class ExportNotReady(Exception):
    """The export cannot be downloaded now: `status` says why (downloaded: gone for good)."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


@dataclass
class _Plan:
    """What goes into one ZIP, read from the database before the slow work starts."""

    person_id: int
    language: str
    file: dict[str, Any]
    photos: list[tuple[int, str, list[Box], list[Box]]] = field(default_factory=list)
    videos: list[tuple[int, str]] = field(default_factory=list)
    voices: list[tuple[str, str]] = field(default_factory=list)  # (member name, storage key)
    media: list[dict[str, Any]] = field(default_factory=list)


def get_export(export_id: int) -> SubjectExport | None:
    """The export with this id, or None (also for ids no row can have)."""
    return db.session.get(SubjectExport, export_id) if 0 < export_id <= MAX_ID else None


def request_export(person: Person, *, user_id: int | None, actor: Actor) -> SubjectExport:
    """A new queued export of the person, audited in the caller's transaction (enqueue after commit)."""
    export = SubjectExport(person_id=person.id, requested_by=user_id, status="queued")
    db.session.add(export)
    db.session.flush()
    record("person:export_requested", actor=actor, subject_type="person", subject_id=person.id,
           details={"export_id": export.id, "person_id": person.id})
    return export


def _box(appearance: Appearance) -> Box | None:
    """An appearance's face box, if it has one."""
    box = appearance.box
    return Box(box["x"], box["y"], box["w"], box["h"]) if box else None


def family_language(person: Person) -> str:
    """The language the family reads: a pupil's guardians' when they share one, else the person's."""
    if person.role == "pupil":
        spoken = {link.guardian.language for link in person.guardian_links}
        if len(spoken) == 1 and (language := spoken.pop()) in ("nl", "en"):
            return language
    return person.language if person.language in ("nl", "en") else "nl"


def _plan(person: Person) -> _Plan:
    """The person's file and the media to put in the ZIP."""
    plan = _Plan(person_id=person.id, language=family_language(person),
                 file=person_file_module.person_file(person))
    media_ids = db.session.execute(
        sa.select(Appearance.media_id).where(Appearance.person_id == person.id).distinct()
    ).scalars().all()
    for media in db.session.execute(
            sa.select(Media).where(Media.id.in_(media_ids)).order_by(Media.id)).scalars():
        own = [a for a in media.appearances if a.person_id == person.id]
        entry: dict[str, Any] = {"media_id": media.id, "kind": media.kind, "title": media.title,
                                 "taken_on": media.taken_on, "appearance_ids": [a.id for a in own],
                                 "file": None}
        if media.kind == "photo":
            keep, blur = [], []
            for appearance in media.appearances:
                box = _box(appearance) if appearance.kind == "face" else None
                if box is not None:
                    (keep if appearance.person_id == person.id else blur).append(box)
            plan.photos.append((media.id, media.storage_key, keep, blur))
            entry["file"] = f"media/{media.id}.jpg"
        elif media.kind == "video":
            crop = next((a.crop_key for a in own if a.kind == "face" and a.crop_key), None)
            if crop:
                plan.videos.append((media.id, crop))
                entry["file"] = f"media/{media.id}.jpg"
        voices = [(f"media/{media.id}-voice-{a.id}.wav", a.crop_key) for a in own
                  if a.kind == "voice" and a.crop_key]
        plan.voices += voices
        entry["voice_files"] = [name for name, _key in voices]
        plan.media.append(entry)
    return plan


def _write_json(archive: zipfile.ZipFile, name: str, document: Any) -> None:
    """One JSON member, encoded as it is written."""
    with archive.open(name, "w") as member, io.TextIOWrapper(member, encoding="utf-8") as text:
        json.dump(document, text, ensure_ascii=False, indent=2, sort_keys=True, default=str)


def _summary(plan: _Plan) -> str:
    """The readable summary of the file, in the person's language."""
    with force_locale(plan.language):
        return render_template("dpo/export_summary.html", file=plan.file, media=plan.media,
                               person_id=plan.person_id, language=plan.language, made_at=utcnow())


def write_zip(plan: _Plan, target: IO[bytes], storage: Storage) -> dict[str, int]:
    """Write the ZIP member by member into target; returns how many files of each kind went in."""
    counts = {"photos": 0, "videos": 0, "voices": 0, "missing": 0}
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _write_json(archive, "file.json", plan.file)
        archive.writestr("summary.html", _summary(plan))
        for media_id, key, keep, blur in plan.photos:
            try:
                data = storage.get(key)
            except StorageKeyError:
                counts["missing"] += 1
                continue
            jpeg = preview_photo(data, keep, blur, max_side=PHOTO_MAX_SIDE)
            del data
            archive.writestr(f"media/{media_id}.jpg", jpeg, compress_type=zipfile.ZIP_STORED)
            counts["photos"] += 1
        members = [("videos", f"media/{media_id}.jpg", key) for media_id, key in plan.videos]
        members += [("voices", name, key) for name, key in plan.voices]
        for kind, name, key in members:
            counts[kind if _copy_member(archive, storage, key, name) else "missing"] += 1
    return counts


def _copy_member(archive: zipfile.ZipFile, storage: Storage, key: str, name: str) -> bool:
    """Stream one stored file into the ZIP under name; False when storage no longer has it."""
    try:
        with storage.open(key) as source, archive.open(name, "w") as member:
            while chunk := source.read(CHUNK):
                member.write(chunk)
    except StorageKeyError:
        return False
    return True


def _claim(export_id: int) -> str | None:
    """Take a queued export for building, with a lease; its owner, or None when another run has
    it or it is done."""
    owner = claim(SubjectExport, export_id, where=SubjectExport.status == "queued",
                  values={"status": "building"})
    db.session.commit()
    return owner


def _fail(export_id: int, reason: str, owner: str) -> None:
    """Mark the export failed with its reason, audited (unless this run lost its lease)."""
    db.session.rollback()
    if not db.session.execute(sa.update(SubjectExport).where(
            SubjectExport.id == export_id, SubjectExport.status == "building",
            held_by(SubjectExport, owner)).values(
            status="failed", error=reason[:ERROR_LENGTH], lease_owner=None,
            lease_expires_at=None)).rowcount:
        db.session.commit()
        return
    export = db.session.get(SubjectExport, export_id)
    assert export is not None
    record("person:export_failed", actor=SYSTEM, subject_type="person", subject_id=export.person_id,
           details={"export_id": export_id, "person_id": export.person_id, "error": export.error})
    db.session.commit()


@task(name="build_subject_export")
def build_subject_export(export_id: int) -> None:
    """Build the ZIP of a queued export and store it; on any error the export is failed with its reason."""
    owner = _claim(export_id)
    if owner is None:
        return
    with heartbeat(SubjectExport, export_id, owner, still=SubjectExport.status == "building"):
        _build_claimed(export_id, owner)


def _build_claimed(export_id: int, owner: str) -> None:
    """The run of build_subject_export once claimed; its result is kept only with its lease."""
    storage = get_storage()
    stored: str | None = None
    try:
        export = db.session.get(SubjectExport, export_id)
        person = db.session.get(Person, export.person_id) if export else None
        if export is None or person is None:
            raise LookupError("the person no longer exists")
        plan = _plan(person)
        db.session.commit()  # no transaction (SQLite's write lock) while the ZIP is built
        with tempfile.TemporaryFile(prefix="export-") as spool:
            counts = write_zip(plan, spool, storage)
            size = spool.tell()
            spool.seek(0)
            stored = storage.put_stream(spool, prefix=PREFIX, size_hint=size)
        if not db.session.execute(sa.update(SubjectExport).where(
                SubjectExport.id == export_id, SubjectExport.status == "building",
                held_by(SubjectExport, owner)).values(
                status="ready", storage_key=stored, size=size, error=None, lease_owner=None,
                lease_expires_at=None)).rowcount:
            db.session.rollback()  # the lease lapsed: another run builds it, this ZIP goes
            storage.delete(stored)
            return
        export = db.session.get(SubjectExport, export_id)
        assert export is not None
        record("person:export_built", actor=SYSTEM, subject_type="person", subject_id=export.person_id,
               details={"export_id": export_id, "person_id": export.person_id, "size": size, **counts})
        db.session.commit()
    except Exception as exc:  # every failure must end as `failed`, never stuck
        log.exception("subject export %s failed", export_id)
        if stored is not None:
            storage.delete(stored)
        _fail(export_id, f"{type(exc).__name__}: {exc}", owner)


def sweep_exports(now: datetime | None = None) -> int:
    """Queue again exports a dead worker (lease lapsed) or a lost job left; returns how many."""
    moment = now or utcnow()
    building = db.session.execute(sa.select(SubjectExport.id).where(
        SubjectExport.status == "building", lapsed(SubjectExport, moment))).scalars().all()
    restarted = [export_id for export_id in building
                 if release_lapsed(SubjectExport, export_id, now=moment,
                                   where=SubjectExport.status == "building",
                                   values={"status": "queued"})]
    for export_id in restarted:
        person_id = db.session.get(SubjectExport, export_id).person_id
        record("person:export_restarted", actor=SYSTEM, subject_type="person", subject_id=person_id,
               details={"export_id": export_id, "person_id": person_id})
    waiting = db.session.execute(sa.select(SubjectExport.id).where(
        SubjectExport.status == "queued", SubjectExport.requested_at < moment - LOST_JOB)
    ).scalars().all()
    db.session.commit()
    ids = sorted({*restarted, *waiting})
    for export_id in ids:
        enqueue(build_subject_export, export_id)
    return len(ids)


@periodic_task(crontab(minute="*"))
def sweep_exports_every_minute() -> None:
    """Keep exports going after a worker died or a job was lost."""
    sweep_exports()


class _OnceFile:
    """A stored file as a response body; the file is deleted when the response is closed."""

    def __init__(self, storage: Storage, key: str, handle: BinaryIO) -> None:
        self.storage, self.key, self.handle = storage, key, handle

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.handle.read(CHUNK):
            yield chunk

    def close(self) -> None:
        """Close the stream and delete the stored file (even after an interrupted download)."""
        try:
            self.handle.close()
        finally:
            self.storage.delete(self.key)


def take_download(export: SubjectExport, *, actor: Actor) -> tuple[_OnceFile, int]:
    """Mark a ready export downloaded (once only, audited, committed) and open its file.

    Raises ExportNotReady with the status when it is not ready (downloaded: gone for good).
    """
    key, size, export_id, person_id = export.storage_key, export.size, export.id, export.person_id
    taken = db.session.execute(
        sa.update(SubjectExport)
        .where(SubjectExport.id == export_id, SubjectExport.status == "ready")
        .values(status="downloaded", downloaded_at=utcnow(), storage_key=None)
    ).rowcount
    if taken != 1 or key is None:
        db.session.rollback()
        current = db.session.get(SubjectExport, export_id)
        raise ExportNotReady(current.status if current else "downloaded")
    record("person:export_downloaded", actor=actor, subject_type="person", subject_id=person_id,
           details={"export_id": export_id, "person_id": person_id, "size": size})
    db.session.commit()
    storage = get_storage()
    try:
        handle = storage.open(key)
    except StorageKeyError:
        raise ExportNotReady("downloaded") from None
    return _OnceFile(storage, key, handle), int(size or 0)


def export_json(export: SubjectExport, download_url: str) -> dict[str, Any]:
    """The export's status as the API shows it."""
    return {"export_id": export.id, "person_id": export.person_id, "status": export.status,
            "requested_by": export.requested_by, "requested_at": export.requested_at.isoformat(),
            "size": export.size, "error": export.error,
            "downloaded_at": export.downloaded_at.isoformat() if export.downloaded_at else None,
            "download_url": download_url}
