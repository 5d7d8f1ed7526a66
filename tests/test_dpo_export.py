"""Subject-access exports: a ZIP with the person's file, a summary and their photos, downloadable once."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from flask import Flask
from PIL import Image

from consent_registry.audit import SYSTEM, AuditEvent, verify
from consent_registry.db import db
from consent_registry.dpo import person_file as person_file_module
from consent_registry.dpo.models import SubjectExport
from consent_registry.media.faces import Box
from consent_registry.media.ingest import Limits, ingest_stream
from consent_registry.media.models import Appearance, Media
from consent_registry.people.models import Person
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person
from consent_registry.storage import get_storage

from api_helpers import api_caller, conforms
from conftest import SHARED_DATA, csrf_token

G01 = SHARED_DATA / "groups" / "g01.jpg"
G01_FACES = (Box(239, 44, 168, 169), Box(790, 71, 171, 171))  # as in tests/test_renditions.py


# The assertions below read English; the site defaults to Dutch.
PAGES_IN_ENGLISH = True


def _person(external_id: str, given: str) -> Person:
    """A pupil."""
    person = create_person(PersonCreate.model_validate({
        "external_id": external_id, "given_name": given, "family_name": "Jansen",
        "birth_date": "2012-03-04", "role": "pupil",
        "guardians": [{"name": f"Parent of {given}", "email": f"{external_id.lower()}@example.nl"}],
    }), actor=SYSTEM)
    db.session.commit()
    return person


def _face(media_id: int, box: Box | None, person_id: int, kind: str = "face", **fields: Any) -> None:
    """An identified appearance."""
    boxed = {"box_x": box.x, "box_y": box.y, "box_w": box.w, "box_h": box.h} if box else {}
    db.session.add(Appearance(media_id=media_id, kind=kind, person_id=person_id,
                              resolution="identified", **boxed, **fields))
    db.session.commit()


def _item(kind: str, data: bytes) -> Media:
    """A stored video or sound recording row (its file is never read by the export)."""
    media = Media(kind=kind, status="ready", sha256=hashlib.sha256(data).hexdigest(),
                  storage_key=get_storage().put(data, prefix="media"),
                  content_type="video/mp4" if kind == "video" else "audio/mp4", size_bytes=len(data),
                  title=f"A {kind}")
    db.session.add(media)
    db.session.commit()
    return media


def _story(app: Flask) -> dict[str, Any]:
    """Ada and Bo in g01 (each tagged), Ada's face track in a video, Ada's voice in a recording."""
    ada, bo = _person("A1", "Ada"), _person("B2", "Bo")
    photo = ingest_stream(io.BytesIO(G01.read_bytes()), limits=Limits.from_config(app.config),
                          storage=get_storage(), actor=SYSTEM, uploaded_by=None, title="Choir").media
    photo.status = "ready"
    db.session.commit()
    _face(photo.id, G01_FACES[1], ada.id)
    _face(photo.id, G01_FACES[0], bo.id)
    thumb = io.BytesIO()
    Image.new("RGB", (96, 96), (10, 200, 10)).save(thumb, format="JPEG")
    video = _item("video", b"not really a video")
    _face(video.id, Box(10, 10, 40, 40), ada.id, crop_key=get_storage().put(thumb.getvalue(), prefix="crops"))
    _face(video.id, Box(100, 10, 40, 40), bo.id, crop_key=get_storage().put(b"bo's face", prefix="crops"))
    audio = _item("audio", b"not really a recording")
    snippet = b"RIFF ada's voice"
    _face(audio.id, None, ada.id, kind="voice", segments=[[0.0, 2.0]],
          crop_key=get_storage().put(snippet, prefix="crops"))
    _face(audio.id, None, bo.id, kind="voice", segments=[[3.0, 5.0]],
          crop_key=get_storage().put(b"RIFF bo's voice", prefix="crops"))
    voice = db.session.execute(sa.select(Appearance.id).where(
        Appearance.media_id == audio.id, Appearance.person_id == ada.id)).scalar_one()
    return {"ada": ada.id, "bo": bo.id, "photo": photo.id, "video": video.id, "audio": audio.id,
            "thumb": thumb.getvalue(), "snippet": snippet, "voice": voice}


def _similarity(shown: bytes, box: Box) -> float:
    """Correlation of g01's fine detail inside a box (full-size pixels) with what a JPEG keeps."""
    image = Image.open(io.BytesIO(shown)).convert("L")
    original = Image.open(G01).convert("L")
    f = image.width / original.width
    scaled = Box(round(box.x * f), round(box.y * f), round(box.w * f), round(box.h * f))
    a = np.asarray(image, dtype=float)
    b = np.asarray(original.resize(image.size, Image.Resampling.LANCZOS), dtype=float)
    window = (slice(scaled.y, scaled.bottom), slice(scaled.x, scaled.right))
    da, db_ = np.diff(a[window], axis=1).ravel(), np.diff(b[window], axis=1).ravel()
    return float(np.corrcoef(da, db_)[0, 1])


def _actions(person_id: int) -> list[str]:
    """The export events about a person, oldest first."""
    return list(db.session.execute(
        sa.select(AuditEvent.action).where(AuditEvent.action.like("person:export%"),
                                           AuditEvent.subject_id == str(person_id))
        .order_by(AuditEvent.id)).scalars())


def _stored_exports(app: Flask) -> int:
    """How many export files the local storage holds."""
    folder = Path(app.config["UPLOAD_DIR"]) / "exports"
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def test_the_zip_holds_the_file_the_summary_and_the_photos_and_downloads_once(
        app: Flask, tokens: dict[str, str], logged_in) -> None:
    """API request -> job -> ZIP with file.json, summary.html, blurred photo, own video thumbnail."""
    story = _story(app)
    api = api_caller(app, tokens, "dpo")
    created = conforms(api("POST", f"/people/{story['ada']}/export"))
    assert created.status_code == 202
    body = created.get_json()
    export_id = body["export_id"]
    assert body["status"] == "ready"  # JOBS=immediate: built before the answer
    assert body["download_url"].endswith(f"/dpo/exports/{export_id}/download")
    status = conforms(api("GET", f"/exports/{export_id}")).get_json()
    assert status["status"] == "ready" and status["size"] > 0 and status["person_id"] == story["ada"]
    assert _stored_exports(app) == 1

    client = logged_in("dpo")
    page = client.get(f"/dpo/exports/{export_id}").get_data(as_text=True)
    assert "ready to download" in page and f"/dpo/exports/{export_id}/download" in page
    response = client.get(f"/dpo/exports/{export_id}/download")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"].startswith("attachment")
    data = response.get_data()
    response.close()
    assert len(data) == status["size"]
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = sorted(archive.namelist())
    voice_member = f"media/{story['audio']}-voice-{story['voice']}.wav"
    assert names == sorted(["file.json", f"media/{story['photo']}.jpg", f"media/{story['video']}.jpg",
                            voice_member, "summary.html"])

    document = json.loads(archive.read("file.json"))
    expected = json.loads(json.dumps(person_file_module.person_file(db.session.get(Person, story["ada"]))))
    built_with = {e["id"] for e in document["audit_events"]}
    expected["audit_events"] = [e for e in expected["audit_events"] if e["id"] in built_with]
    assert document == expected
    assert [e["action"] for e in document["audit_events"]][-1] == "person:export_requested"

    summary = archive.read("summary.html").decode()
    assert "Ada" in summary and "Jansen" in summary and "<h1>" in summary
    assert "Bo</" not in summary and "Parent of Bo" not in summary

    photo = archive.read(f"media/{story['photo']}.jpg")
    assert b"Exif" not in photo
    assert _similarity(photo, G01_FACES[1]) > 0.9  # Ada, sharp
    assert _similarity(photo, G01_FACES[0]) < 0.6  # Bo, blurred
    assert archive.read(f"media/{story['video']}.jpg") == story["thumb"]
    assert archive.read(voice_member) == story["snippet"]  # her own voice; Bo's is not in the ZIP

    assert _stored_exports(app) == 0  # deleted after the one download
    again = client.get(f"/dpo/exports/{export_id}/download")
    assert again.status_code == 410
    assert "already been downloaded" in again.get_data(as_text=True)
    gone = conforms(api("GET", f"/exports/{export_id}")).get_json()
    assert gone["status"] == "downloaded" and gone["downloaded_at"]
    assert logged_in("admin").get(f"/dpo/exports/{export_id}/download").status_code == 410
    assert _actions(story["ada"]) == ["person:export_requested", "person:export_built",
                                      "person:export_downloaded"]
    downloaded = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "person:export_downloaded")).scalar_one()
    assert downloaded.actor_type == "user" and downloaded.details["export_id"] == export_id
    assert verify().ok


def test_the_web_form_requests_an_export_and_shows_its_status(app: Flask, logged_in) -> None:
    """The DPO posts the CSRF form and lands on the status page; the admin may download it."""
    story = _story(app)
    client = logged_in("dpo")
    token = csrf_token(client, f"/dpo/people/{story['ada']}")
    refused = client.post(f"/dpo/people/{story['ada']}/export")
    assert refused.status_code == 400  # no CSRF token
    response = client.post(f"/dpo/people/{story['ada']}/export", data={"csrf_token": token})
    assert response.status_code == 303
    export = db.session.execute(sa.select(SubjectExport)).scalar_one()
    assert response.headers["Location"].endswith(f"/dpo/exports/{export.id}")
    assert export.status == "ready" and export.requested_by is not None
    download = logged_in("admin").get(f"/dpo/exports/{export.id}/download")
    assert download.status_code == 200
    download.close()
    assert "downloaded (file deleted)" in client.get(f"/dpo/exports/{export.id}").get_data(as_text=True)


def test_only_the_dpo_and_admins_reach_exports(app: Flask, tokens: dict[str, str], logged_in) -> None:
    """Staff and communications are refused everywhere; unknown ids are 404."""
    story = _story(app)
    api = api_caller(app, tokens, "dpo")
    export_id = api("POST", f"/people/{story['ada']}/export").get_json()["export_id"]
    for role in ("staff", "communications"):
        assert conforms(api("POST", f"/people/{story['ada']}/export", role=role)).status_code == 403
        assert conforms(api("GET", f"/exports/{export_id}", role=role)).status_code == 403
        client = logged_in(role)
        assert client.get(f"/dpo/exports/{export_id}").status_code == 403
        assert client.get(f"/dpo/exports/{export_id}/download").status_code == 403
        assert client.post(f"/dpo/people/{story['ada']}/export").status_code == 403
    assert conforms(api("POST", "/people/999999/export")).status_code == 404
    assert conforms(api("GET", "/exports/999999")).status_code == 404
    # Outside the document's range (at most 2**31 - 1): only the answer is checked.
    assert conforms(api("GET", "/exports/99999999999"), check_request=False).status_code == 404
    client = logged_in("dpo")
    assert client.get("/dpo/exports/999999").status_code == 404
    assert client.get("/dpo/exports/999999/download").status_code == 404
    token = csrf_token(client, f"/dpo/people/{story['ada']}")
    assert client.post("/dpo/people/999999/export", data={"csrf_token": token}).status_code == 404
    assert db.session.execute(sa.select(sa.func.count()).select_from(SubjectExport)).scalar_one() == 1
    assert _stored_exports(app) == 1  # nobody downloaded it


def test_a_failing_build_is_failed_with_its_reason(app: Flask, tokens: dict[str, str], logged_in,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An error while building leaves the export failed (never building), the reason kept and shown."""
    story = _story(app)

    def broken(person: Person) -> dict[str, Any]:
        raise RuntimeError("the file could not be read")

    monkeypatch.setattr(person_file_module, "person_file", broken)
    api = api_caller(app, tokens, "admin")
    body = conforms(api("POST", f"/people/{story['ada']}/export")).get_json()
    assert body["status"] == "failed"
    status = conforms(api("GET", f"/exports/{body['export_id']}")).get_json()
    assert status["error"] == "RuntimeError: the file could not be read" and status["size"] is None
    client = logged_in("dpo")
    page = client.get(f"/dpo/exports/{body['export_id']}").get_data(as_text=True)
    assert "the file could not be read" in page
    assert client.get(f"/dpo/exports/{body['export_id']}/download").status_code == 409
    assert _stored_exports(app) == 0
    assert _actions(story["ada"]) == ["person:export_requested", "person:export_failed"]
    assert verify().ok


def test_a_missing_photo_file_does_not_stop_the_export(app: Flask, tokens: dict[str, str]) -> None:
    """A photo whose file is gone is left out (counted as missing); the rest is built."""
    story = _story(app)
    get_storage().delete(db.session.get(Media, story["photo"]).storage_key)
    body = api_caller(app, tokens, "dpo")("POST", f"/people/{story['ada']}/export").get_json()
    assert body["status"] == "ready"
    built = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "person:export_built")).scalar_one()
    assert built.details["missing"] == 1 and built.details["photos"] == 0
