"""Analysis: uploaded photos, videos and sound recordings go from queued to ready (or failed)."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
import time_machine
from flask import Flask

from consent_registry.audit import AuditEvent
from consent_registry.db import db, utcnow
from consent_registry.media.analysis import analyse_media, sweep_analyses
from consent_registry.media.models import Appearance, Media
from consent_registry.storage import get_storage

from api_helpers import api_caller
from conftest import SHARED_DATA

GROUP = SHARED_DATA / "groups" / "g01.jpg"  # two faces


def _upload(app: Flask, tokens: dict[str, str], path: Path) -> dict:
    """Upload a file through the API as the communications officer."""
    api = api_caller(app, tokens, "communications")
    response = api("POST", "/media", data={"file": (io.BytesIO(path.read_bytes()), path.name)},
                   content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _media(media_id: int) -> Media:
    """A fresh copy of the item."""
    db.session.expire_all()
    return db.session.get(Media, media_id)


def test_a_photo_becomes_ready_with_one_appearance_per_face(
    app: Flask, tokens: dict[str, str]
) -> None:
    """The real engine on a real group photo: two faces, boxes inside the photo, crops stored."""
    media_id = _upload(app, tokens, GROUP)["id"]
    media = _media(media_id)
    assert (media.status, media.progress) == ("ready", 100)
    faces = [a for a in media.appearances if a.kind == "face"]
    assert len(faces) == 2
    for face in faces:
        box = face.box
        assert box and box["x"] >= 0 and box["x"] + box["w"] <= media.width
        assert box["y"] >= 0 and box["y"] + box["h"] <= media.height
        assert face.resolution == "unresolved" and face.person_id is None
        assert get_storage().get(face.crop_key)[:3] == b"\xff\xd8\xff"  # a JPEG crop
    actions = list(db.session.execute(
        sa.select(AuditEvent.action).where(AuditEvent.subject_type == "media",
                                           AuditEvent.subject_id == str(media_id))).scalars())
    assert actions == ["media:upload", "media:analysed"]
    api = api_caller(app, tokens, "dpo")
    body = api("GET", f"/media/{media_id}").get_json()
    assert body["status"] == "ready" and len(body["appearances"]) == 2


def test_a_broken_file_fails_with_its_reason_and_never_stays_analysing(
    app: Flask, tokens: dict[str, str], monkeypatch
) -> None:
    """If the stored file cannot be read, the item is failed with a reason, audited."""
    monkeypatch.setattr("consent_registry.api.media.start_analysis", lambda media_id: None)
    media_id = _upload(app, tokens, GROUP)["id"]
    get_storage().delete(_media(media_id).storage_key)
    analyse_media(media_id)
    media = _media(media_id)
    assert media.status == "failed" and "StorageKeyError" in (media.failure_reason or "")
    assert db.session.query(AuditEvent).filter_by(action="media:analysis_failed").count() == 1


def test_a_run_is_done_once_even_if_queued_twice(app: Flask, tokens: dict[str, str]) -> None:
    """A second job for a ready item does nothing: no duplicate appearances."""
    media_id = _upload(app, tokens, GROUP)["id"]
    analyse_media(media_id)
    assert db.session.query(Appearance).filter_by(media_id=media_id).count() == 2


def test_a_run_left_by_a_dead_worker_is_redone(app: Flask, tokens: dict[str, str],
                                                monkeypatch) -> None:
    """An item stuck in analysing (the worker died) is queued again by the sweeper and finished;
    what the dead run left is replaced, not doubled."""
    monkeypatch.setattr("consent_registry.api.media.start_analysis", lambda media_id: None)
    media_id = _upload(app, tokens, GROUP)["id"]
    media = _media(media_id)
    media.status, media.analysis_started_at = "analysing", utcnow()
    db.session.add(Appearance(media_id=media_id, kind="face", box_x=1, box_y=1, box_w=5, box_h=5))
    db.session.commit()
    assert sweep_analyses() == 0  # still young: the worker may be busy
    with time_machine.travel(utcnow() + timedelta(minutes=31), tick=False):
        assert sweep_analyses() == 1
    media = _media(media_id)
    assert media.status == "ready" and len(media.appearances) == 2
    assert db.session.query(AuditEvent).filter_by(action="media:analysis_restarted").count() == 1


def test_a_recording_is_stored_and_ready_without_voices_yet(app: Flask, tokens: dict[str, str]) -> None:
    """Sound: stored and ready with no appearances until the voice issue lands."""
    clip = next((SHARED_DATA / "audio").glob("*.flac"))
    media_id = _upload(app, tokens, clip)["id"]
    media = _media(media_id)
    assert (media.kind, media.status, media.appearances) == ("audio", "ready", [])
