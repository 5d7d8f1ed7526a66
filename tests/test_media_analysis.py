"""Analysis: uploaded photos, videos and sound recordings go from queued to ready (or failed)."""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask

from consent_registry.audit import AuditEvent
from consent_registry.db import db, utcnow
from consent_registry.media.analysis import analyse_media, sweep_analyses, voice_engine
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
    media.lease_owner, media.lease_expires_at = "dead-worker", utcnow() + timedelta(minutes=2)
    db.session.add(Appearance(media_id=media_id, kind="face", box_x=1, box_y=1, box_w=5, box_h=5))
    db.session.commit()
    assert sweep_analyses() == 0  # its lease holds: the worker may be busy
    with time_machine.travel(utcnow() + timedelta(minutes=3), tick=False):
        assert sweep_analyses() == 1
    media = _media(media_id)
    assert media.status == "ready" and len(media.appearances) == 2
    assert db.session.query(AuditEvent).filter_by(action="media:analysis_restarted").count() == 1


@pytest.mark.one_backend
def test_a_recording_of_one_speaker_is_ready_with_one_voice(app: Flask, tokens: dict[str, str]) -> None:
    """Sound: one LibriSpeech speaker is one voice appearance with segments and a snippet."""
    clip = next((SHARED_DATA / "audio").glob("*.flac"))
    media_id = _upload(app, tokens, clip)["id"]
    media = _media(media_id)
    assert (media.kind, media.status, media.voices_analysed) == ("audio", "ready", True)
    [voice] = media.appearances
    assert voice.kind == "voice" and voice.box is None and voice.crop_key
    assert voice.segments and all(0 <= s < e <= media.duration_s + 0.1 for s, e in voice.segments)


@pytest.mark.one_backend
def test_voice_analysis_runs_on_the_configured_torch_threads(app: Flask) -> None:
    """VOICE_THREADS reaches torch in each analysing thread: one by default, two when configured."""
    import torch

    def threads_in_a_new_analysing_thread() -> int:
        """What a job thread does first, get its voice engine; then torch's thread count."""
        seen: list[int] = []

        def analysing() -> None:
            """The job thread: its own engine, made under the app's configuration."""
            with app.app_context():
                voice_engine()
                seen.append(torch.get_num_threads())

        thread = threading.Thread(target=analysing)
        thread.start()
        thread.join()
        return seen[0]

    original = torch.get_num_threads()
    try:
        by_default = threads_in_a_new_analysing_thread()
        app.config["VOICE_THREADS"] = 2
        configured = threads_in_a_new_analysing_thread()
    finally:
        torch.set_num_threads(original)
    assert (by_default, configured) == (1, 2)


def _tiny_video(path: Path) -> Path:
    """Two seconds of a face moving over noise, as MP4: quick to analyse on a real queue."""
    import av
    import numpy as np
    from PIL import Image

    face = Image.open(next((SHARED_DATA / "enroll").iterdir())).convert("RGB")
    face.thumbnail((120, 120))
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(20):
            frame = Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
            frame.paste(face, (20 + i * 4, 40))
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _through_a_real_queue(web: Flask, worker: Flask, tokens_of: dict[str, str],
                          files: list[Path]) -> list[dict]:
    """Upload through `web`, let `worker`'s consumer analyse, wait until all are done."""
    from consent_registry import jobs

    with web.app_context():
        ids = [_upload(web, tokens_of, f)["id"] for f in files]
        assert all(_media(i).status == "queued" for i in ids)  # the web request only queued it
        db.session.commit()
    handle = jobs.start_embedded_worker(worker, workers=2)
    try:
        with web.app_context():
            deadline = 120.0
            import time

            start = time.monotonic()
            statuses: list[str] = []
            while time.monotonic() - start < deadline:
                statuses = [_media(i).status for i in ids]
                # On SQLite even a read holds the write lock: let go before waiting, and read
                # nothing more (an expired attribute would start a new transaction).
                db.session.commit()
                if all(status in ("ready", "failed") for status in statuses):
                    return [{"kind": m.kind, "status": m.status, "faces": len(m.appearances),
                             "segments": [a.segments for a in m.appearances]}
                            for m in (_media(i) for i in ids)]
                time.sleep(0.2)
            raise AssertionError(list(zip(ids, statuses, strict=True)))
    finally:
        handle.stop(timeout=30)


def _files(tmp_path: Path) -> list[Path]:
    """A photo, a video and a sound recording."""
    return [GROUP, _tiny_video(tmp_path / "clip.mp4"), next((SHARED_DATA / "audio").glob("*.flac"))]


def test_photo_video_and_audio_become_ready_through_the_embedded_queue(
    app: Flask, database_url: str, tmp_path: Path
) -> None:
    """JOBS=embedded: the upload only queues; a consumer thread analyses all three kinds.
    (`app` empties the database first; the apps under test are built on the same database.)"""
    from conftest import make_app

    queued = make_app(database_url, tmp_path, JOBS="embedded")
    with queued.app_context():
        token = _token(queued)
    done = _through_a_real_queue(queued, queued, {"communications": token}, _files(tmp_path))
    assert [(m["kind"], m["status"]) for m in done] == [("photo", "ready"), ("video", "ready"),
                                                        ("audio", "ready")]
    # the photo's two faces, the video's face track, the recording's one voice
    assert done[0]["faces"] == 2 and done[1]["faces"] >= 1 and done[2]["faces"] == 1
    assert all(done[1]["segments"]) and all(done[2]["segments"])


def test_photo_video_and_audio_become_ready_through_redis_workers(
    app: Flask, database_url: str, tmp_path: Path
) -> None:
    """JOBS=redis: the web app queues in Redis, a separate worker app does the analysis.
    (`app` empties the database first; the apps under test are built on the same database.)"""
    import uuid

    import redis

    from conftest import make_app

    name = f"crtest_media_{uuid.uuid4().hex}"
    settings = {"JOBS": "redis", "REDIS_URL": "redis://127.0.0.1:6379/13", "JOBS_NAME": name}
    web = make_app(database_url, tmp_path, **settings)
    worker = make_app(database_url, tmp_path / "worker", UPLOAD_DIR=str(tmp_path / "uploads"),
                      **settings)
    try:
        with web.app_context():
            token = _token(web)
        done = _through_a_real_queue(web, worker, {"communications": token}, _files(tmp_path))
        assert [m["status"] for m in done] == ["ready", "ready", "ready"]
        assert done[0]["faces"] == 2 and done[1]["faces"] >= 1 and done[2]["faces"] == 1
    finally:
        client = redis.Redis.from_url("redis://127.0.0.1:6379/13")
        keys = list(client.scan_iter(match=f"huey.*{name}*"))
        if keys:
            client.delete(*keys)


def _token(app: Flask) -> str:
    """An API token for a communications account of this app."""
    from consent_registry.audit import SYSTEM
    from consent_registry.auth.service import create_user
    from consent_registry.auth.tokens import issue_token

    user, _ = create_user(email="comms@school.nl", role="communications",
                          password="a long passphrase here", actor=SYSTEM)
    token = issue_token(user, label="t", actor=SYSTEM)
    db.session.commit()
    return token
