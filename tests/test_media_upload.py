"""Uploading media: the type comes from the content, refusals store nothing, one file is stored once."""

from __future__ import annotations

import hashlib
import io
import math
import re
import struct
import wave
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pillow_heif
import pytest
import sqlalchemy as sa
from flask import Flask
from PIL import Image, ImageFile

from consent_registry.audit import SYSTEM, AuditEvent, verify
from consent_registry.db import db
from consent_registry.media import ingest
from consent_registry.media.ingest import IngestError, Limits, spool_stream
from consent_registry.media.models import Appearance, Media
from consent_registry.storage import get_storage

from api_helpers import api_caller, conforms
from conftest import SHARED_DATA, csrf_token

pillow_heif.register_heif_opener()

# ---------------------------------------------------------------------------------------------
# Small real files, built in memory


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), noise: bool = False, **options: Any) -> bytes:
    """A picture in a format Pillow (or pillow-heif) writes."""
    if noise:
        rng = np.random.default_rng(1)
        img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    else:
        img = Image.new("RGB", size, (200, 30, 30))
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def video_bytes(fmt: str, codec: str, frames: int = 5, size: tuple[int, int] = (64, 48)) -> bytes:
    """A few frames of video, encoded with PyAV."""
    out = io.BytesIO()
    with av.open(out, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            pixels = np.full((size[1], size[0], 3), i * 40 % 255, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def audio_bytes(fmt: str, codec: str, rate: int = 16000, seconds: float = 0.5) -> bytes:
    """Half a second of a tone, encoded with PyAV."""
    out = io.BytesIO()
    with av.open(out, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        formats = stream.codec_context.codec.audio_formats
        sample_format = formats[0].name if formats else "s16"
        t = np.arange(int(rate * seconds)) / rate
        tone = (np.sin(2 * math.pi * 440 * t) * 0.3).astype(np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
        frame.sample_rate = rate
        for chunk in av.AudioResampler(format=sample_format, layout="mono", rate=rate).resample(frame):
            for packet in stream.encode(chunk):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def wav_bytes() -> bytes:
    """Half a second of 8 kHz PCM, written by the standard library."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 4000)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims enormous dimensions: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


def needs(*codecs: str) -> None:
    """Fail clearly when this FFmpeg build cannot encode what the test needs (PyAV's wheels can)."""
    missing = [c for c in codecs if c not in av.codecs_available]
    if missing:
        pytest.fail(f"PyAV's FFmpeg lacks {', '.join(missing)}: install PyAV from its wheel")


def exif_with(**tags: int) -> bytes:
    """An EXIF block with the given numeric tags (e.g. orientation)."""
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[{"orientation": 0x0112}[tag]] = value
    return exif.tobytes()


# Each accepted type, built small, with the content type and kind it must be recognised as.
# Every file is sent under a name that says something else.
ACCEPTED: dict[str, tuple[Callable[[], bytes], str, str, tuple[str, ...]]] = {
    "jpeg": (lambda: image_bytes("JPEG"), "photo", "image/jpeg", ()),
    "png": (lambda: image_bytes("PNG"), "photo", "image/png", ()),
    "webp": (lambda: image_bytes("WEBP"), "photo", "image/webp", ()),
    "heic": (lambda: image_bytes("HEIF"), "photo", "image/heic", ()),
    "mp4": (lambda: video_bytes("mp4", "libx264"), "video", "video/mp4", ("libx264",)),
    "mov": (lambda: video_bytes("mov", "libx264"), "video", "video/quicktime", ("libx264",)),
    "webm": (lambda: video_bytes("webm", "libvpx"), "video", "video/webm", ("libvpx",)),
    "wav": (wav_bytes, "audio", "audio/wav", ()),
    "mp3": (lambda: audio_bytes("mp3", "libmp3lame"), "audio", "audio/mpeg", ("libmp3lame",)),
    "m4a": (lambda: audio_bytes("ipod", "aac"), "audio", "audio/mp4", ("aac",)),
    "flac": (lambda: audio_bytes("flac", "flac"), "audio", "audio/flac", ("flac",)),
    "ogg": (lambda: audio_bytes("ogg", "libopus", rate=48000), "audio", "audio/ogg", ("libopus",)),
    "public-mp4": (lambda: (SHARED_DATA / "video" / "v01.mp4").read_bytes(), "video", "video/mp4", ()),
    "public-flac": (lambda: (SHARED_DATA / "audio" / "1688-0000.flac").read_bytes(), "audio",
                    "audio/flac", ()),
}
MISLEADING_NAMES = {"photo": "recording.mp3", "video": "picture.jpg", "audio": "clip.mp4"}

# ---------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(autouse=True)
def analyses_started(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the analyses an upload starts instead of running them: these tests are about
    uploading; tests/test_media_analysis.py runs the analysis itself."""
    started: list[int] = []
    for module in ("consent_registry.api.media", "consent_registry.media.views"):
        monkeypatch.setattr(f"{module}.start_analysis", started.append)
    return started


@pytest.fixture
def folders(app: Flask, tmp_path: Path) -> dict[str, Path]:
    """The upload folder and the spool folder, both watched by the tests."""
    spool = tmp_path / "spool"
    spool.mkdir()
    app.config["INGEST_TMP_DIR"] = str(spool)
    return {"uploads": Path(app.config["UPLOAD_DIR"]), "spool": spool}


@pytest.fixture
def api(app: Flask, tokens: dict[str, str], folders: dict[str, Path]):
    """Calls to /api/v1 as a role (communications unless told otherwise)."""
    return api_caller(app, tokens, "communications")


def files_in(folder: Path) -> list[Path]:
    """Every file below a folder."""
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def media_rows() -> list[Media]:
    """Every media row."""
    return list(db.session.execute(sa.select(Media).order_by(Media.id)).scalars())


def events(action: str) -> list[AuditEvent]:
    """Audit events with this action, oldest first."""
    return list(db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).scalars())


def upload(api: Callable[..., Any], data: bytes, name: str = "file.bin", role: str = "communications",
           **fields: str) -> Any:
    """POST one file to /api/v1/media; the answer is checked against the OpenAPI document."""
    response = api("POST", "/media", role=role, data={"file": (io.BytesIO(data), name), **fields},
                   content_type="multipart/form-data")
    return conforms(response, check_request=False)


def assert_nothing_stored(folders: dict[str, Path]) -> None:
    """No stored object, no spooled leftover, no row, no upload event."""
    assert files_in(folders["uploads"]) == []
    assert files_in(folders["spool"]) == []
    assert media_rows() == []
    assert events("media:upload") == []


# ---------------------------------------------------------------------------------------------
# Accepted types


@pytest.mark.parametrize("label", list(ACCEPTED))
def test_each_accepted_type_is_recognised_by_its_content(api, folders, label: str) -> None:
    """Whatever the name says, the content decides kind and type; size or length are read."""
    build, kind, content_type, codecs = ACCEPTED[label]
    needs(*codecs)
    data = build()
    response = upload(api, data, name=MISLEADING_NAMES[kind])
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["kind"], body["status"], body["progress"]) == (kind, "queued", 0)
    assert body["content_type"] == content_type
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["size_bytes"] == len(data)
    assert body["appearances"] == []
    if kind == "audio":
        assert body["width"] is None and body["duration_s"] > 0
    else:
        assert body["width"] > 0 and body["height"] > 0
    if kind == "video":
        assert body["duration_s"] > 0
    (row,) = media_rows()
    stored = files_in(folders["uploads"])
    assert len(stored) == 1 and stored[0].read_bytes() == data
    # The uploaded name is kept for display only: it is no part of the storage key.
    assert row.original_name == MISLEADING_NAMES[kind]
    assert MISLEADING_NAMES[kind].split(".")[0] not in row.storage_key
    assert files_in(folders["spool"]) == []


def test_public_video_and_recording_have_their_real_size_and_length(api, folders) -> None:
    """The shared sample video and speech clip, read in place."""
    video = upload(api, (SHARED_DATA / "video" / "v01.mp4").read_bytes(), "v01.mp4").get_json()
    assert (video["width"], video["height"]) == (640, 360)
    assert video["duration_s"] == pytest.approx(10.0, abs=0.1)
    clip = upload(api, (SHARED_DATA / "audio" / "1998-0001.flac").read_bytes(), "x.flac").get_json()
    assert clip["kind"] == "audio" and 0 < clip["duration_s"] < 60


def test_a_png_named_mp4_is_a_photo(api, folders) -> None:
    """A misleading extension changes nothing."""
    body = upload(api, image_bytes("PNG"), "holiday.mp4").get_json()
    assert (body["kind"], body["content_type"]) == ("photo", "image/png")


def test_an_mp4_with_only_sound_is_a_recording(api, folders) -> None:
    """MP4 and M4A are one container: the streams inside decide."""
    needs("aac")
    body = upload(api, audio_bytes("mp4", "aac"), "song.mp4").get_json()
    assert (body["kind"], body["content_type"]) == ("audio", "audio/mp4")


def test_exif_orientation_6_swaps_width_and_height(api, folders) -> None:
    """A phone photo stored landscape but shown portrait has the portrait size."""
    data = image_bytes("JPEG", size=(64, 48), exif=exif_with(orientation=6))
    body = upload(api, data, "portrait.jpg").get_json()
    assert (body["width"], body["height"]) == (48, 64)


def test_title_and_date_are_kept(api, folders) -> None:
    """The optional fields end up on the item."""
    body = upload(api, image_bytes("PNG"), "x.png", title="Sportdag 2B", taken_on="2026-06-12").get_json()
    assert (body["title"], body["taken_on"]) == ("Sportdag 2B", "2026-06-12")


# ---------------------------------------------------------------------------------------------
# Refusals: nothing stored


def _truncated_jpeg() -> bytes:
    data = image_bytes("JPEG", size=(640, 480), noise=True)
    return data[: len(data) // 2]


def _truncated_mp4() -> bytes:
    data = (SHARED_DATA / "video" / "v01.mp4").read_bytes()
    return data[:300]


REFUSED: dict[str, tuple[Callable[[], bytes], str, int, str, dict[str, int]]] = {
    "text named .jpg": (lambda: b"Dit is geen foto.\n" * 40, "photo.jpg", 415, "unsupported_type", {}),
    "html named .png": (lambda: b"<html><script>alert(1)</script></html>", "x.png", 415,
                        "unsupported_type", {}),
    "truncated jpeg": (_truncated_jpeg, "photo.jpg", 422, "corrupt", {}),
    "truncated mp4": (_truncated_mp4, "clip.mp4", 422, "corrupt", {}),
    "jpeg start, garbage after": (lambda: b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20, "x.jpg", 422,
                                  "corrupt", {}),
    "decompression bomb header": (lambda: png_header_only(100_000, 100_000), "bomb.png", 422,
                                  "too_many_pixels", {}),
    "more pixels than configured": (lambda: image_bytes("PNG", size=(200, 200)), "big.png", 422,
                                    "too_many_pixels", {"MAX_IMAGE_PIXELS": 10_000}),
    "photo over its limit": (lambda: image_bytes("PNG", size=(100, 100), noise=True), "big.png", 413,
                             "too_large", {"MAX_PHOTO_BYTES": 5_000}),
    "recording over its limit": (wav_bytes, "x.wav", 413, "too_large", {"MAX_AUDIO_BYTES": 1_000}),
    "empty file": (lambda: b"", "empty.jpg", 422, "empty", {}),
    "matroska (not webm)": (lambda: b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska" + b"\0" * 300,
                            "x.webm", 415, "unsupported_type", {}),
    "avif": (lambda: b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf" + b"\0" * 300, "x.heic", 415,
             "unsupported_type", {}),
}


@pytest.mark.parametrize("label", list(REFUSED))
def test_refused_uploads_store_nothing(app: Flask, api, folders, label: str) -> None:
    """Each refusal has its status and code, and leaves no object, temporary file, row or event."""
    build, name, status, code, settings = REFUSED[label]
    app.config.update(settings)
    response = upload(api, build(), name)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code and error["fields"]["file"] == error["message"]
    assert_nothing_stored(folders)


def test_a_cut_off_photo_is_refused_even_after_a_library_allowed_truncated_images(
    api, folders, monkeypatch: pytest.MonkeyPatch
) -> None:
    """face_recognition turns Pillow's LOAD_TRUNCATED_IMAGES on when imported; uploads ignore it."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    response = upload(api, _truncated_jpeg(), "photo.jpg")
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "corrupt"
    assert_nothing_stored(folders)


def test_an_animated_png_is_refused(api, folders) -> None:
    """Every frame would have to be checked for people: animations are uploaded as video."""
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, format="PNG", save_all=True, append_images=frames[1:])
    response = upload(api, out.getvalue(), "anim.png")
    assert response.status_code == 415
    assert_nothing_stored(folders)


def test_the_spool_stops_reading_as_soon_as_the_limit_is_passed(tmp_path: Path) -> None:
    """A too-large photo is refused after about its limit, not after the whole stream."""
    class EndlessJpeg(io.RawIOBase):
        def __init__(self) -> None:
            self.read_bytes = 0

        def read(self, size: int = -1) -> bytes:
            chunk = (b"\xff\xd8\xff\xe0" if self.read_bytes == 0 else b"") + b"\0" * 65536
            self.read_bytes += len(chunk)
            return chunk

    stream = EndlessJpeg()
    limits = Limits(photo=1_000_000, video=10**12, audio=10**12, pixels=10**8)
    with pytest.raises(IngestError) as refused:
        spool_stream(stream, limits=limits, tmp_dir=tmp_path, chunk_size=65536)  # type: ignore[arg-type]
    assert refused.value.status == 413
    assert stream.read_bytes < 1_000_000 + 2 * 65536
    assert list(tmp_path.iterdir()) == []


def test_the_global_request_limit_does_not_cap_uploads(app: Flask, api, logged_in, folders) -> None:
    """MAX_CONTENT_LENGTH guards other forms; uploads are limited per kind instead."""
    app.config["MAX_CONTENT_LENGTH"] = 1_000
    data = image_bytes("PNG", size=(100, 100), noise=True)
    assert len(data) > 1_000
    assert upload(api, data, "x.png").status_code == 201
    client = logged_in("communications")
    response = client.post("/media/files?name=y.png", data=image_bytes("PNG", size=(99, 99), noise=True),
                           content_type="application/octet-stream",
                           headers={"X-CSRFToken": csrf_token(client, "/media/upload")})
    assert response.status_code == 201


# ---------------------------------------------------------------------------------------------
# Bad requests never give a 500


def _fresh_files(kwargs: dict) -> dict:
    """The request's files as new streams: a parameter set is used once per database backend,
    and the test client closes the streams it sends."""
    def fresh(value: object) -> object:
        """A (bytes, name) pair as a (stream, name) pair; lists element by element."""
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], bytes):
            return (io.BytesIO(value[0]), value[1])
        if isinstance(value, list):
            return [fresh(item) for item in value]
        return value

    if isinstance(kwargs.get("data"), dict):
        return {**kwargs, "data": {key: fresh(value) for key, value in kwargs["data"].items()}}
    return kwargs


@pytest.mark.parametrize(("label", "kwargs", "status", "field"), [
    ("JSON instead of a form", {"json": {"file": "abc"}}, 415, None),
    ("no file field", {"data": {"title": "x"}, "content_type": "multipart/form-data"}, 422, "file"),
    ("file sent as text", {"data": {"file": "not a file"}, "content_type": "multipart/form-data"}, 422,
     "file"),
    ("bad taken_on", {"data": {"file": (b"\x89PNG", "x.png"), "taken_on": "12-06-2026"},
                      "content_type": "multipart/form-data"}, 422, "taken_on"),
    ("unknown field", {"data": {"file": (b"\x89PNG", "x.png"), "colour": "red"},
                       "content_type": "multipart/form-data"}, 422, "colour"),
    ("two files", {"data": {"file": [(b"a", "a.png"), (b"b", "b.png")]},
                   "content_type": "multipart/form-data"}, 422, "file"),
    ("title with control characters", {"data": {"file": (b"\x89PNG", "x.png"),
                                                "title": "a\x00b"},
                                       "content_type": "multipart/form-data"}, 422, "title"),
    ("broken multipart", {"data": b"--xyz\r\nnonsense", "content_type": "multipart/form-data; boundary=xyz"},
     400, None),
])
def test_bad_requests_are_refused_in_the_error_shape(api, folders, label: str, kwargs: dict, status: int,
                                                     field: str | None) -> None:
    """Missing or unknown fields, wrong body types: a clear 4xx, nothing stored."""
    response = conforms(api("POST", "/media", **_fresh_files(kwargs)), check_request=False)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    if field:
        assert field in error["fields"], error
    assert_nothing_stored(folders)


# ---------------------------------------------------------------------------------------------
# Duplicates, audit, failures of the database step


def test_the_same_file_twice_is_the_same_item(api, folders) -> None:
    """The second upload answers 200 with the first item; nothing is stored twice."""
    data = image_bytes("JPEG")
    first = upload(api, data, "a.jpg", title="first")
    second = upload(api, data, "b.jpg", title="second", role="admin")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.get_json()["id"] == second.get_json()["id"]
    assert second.get_json()["title"] == "first"
    assert len(media_rows()) == 1 and len(files_in(folders["uploads"])) == 1
    assert len(events("media:upload")) == 1
    assert files_in(folders["spool"]) == []


def test_upload_is_audited_in_the_chain(api, folders, users) -> None:
    """One media:upload event names the item, the uploader and the content, not the file name."""
    data = image_bytes("PNG")
    body = upload(api, data, "Jan de Vries.png").get_json()
    (event,) = events("media:upload")
    assert (event.actor_type, event.actor_id) == ("user", users["communications"].id)
    assert (event.subject_type, event.subject_id) == ("media", str(body["id"]))
    assert event.details == {"kind": "photo", "content_type": "image/png", "size_bytes": len(data),
                             "sha256": hashlib.sha256(data).hexdigest()}
    assert "Jan" not in str(event.details)
    assert media_rows()[0].uploaded_by == users["communications"].id
    assert verify().ok


def test_a_failing_database_step_removes_the_stored_file(app: Flask, folders, users, monkeypatch) -> None:
    """Stored first, then the row with its event; when that fails, the object goes again."""
    def broken_record(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("database gone")

    monkeypatch.setattr(ingest, "record", broken_record)
    with pytest.raises(RuntimeError):
        ingest.ingest_stream(io.BytesIO(image_bytes("PNG")), limits=Limits.from_config(app.config),
                             storage=get_storage(), actor=SYSTEM, uploaded_by=None,
                             tmp_dir=folders["spool"])
    assert_nothing_stored(folders)


def test_a_concurrent_duplicate_keeps_one_item_and_one_file(app: Flask, folders, monkeypatch) -> None:
    """When the same file commits elsewhere in between, this upload becomes that item."""
    data = image_bytes("WEBP")
    real_probe = ingest.probe

    def probe_while_another_upload_commits(*args: Any, **kwargs: Any) -> Any:
        probed = real_probe(*args, **kwargs)
        db.session.add(Media(kind="photo", sha256=hashlib.sha256(data).hexdigest(),
                             storage_key="media/originals/other", content_type="image/webp",
                             size_bytes=len(data)))
        db.session.commit()
        return probed

    monkeypatch.setattr(ingest, "probe", probe_while_another_upload_commits)
    result = ingest.ingest_stream(io.BytesIO(data), limits=Limits.from_config(app.config),
                                  storage=get_storage(), actor=SYSTEM, uploaded_by=None,
                                  tmp_dir=folders["spool"])
    assert not result.created and result.media.storage_key == "media/originals/other"
    assert files_in(folders["uploads"]) == [] and files_in(folders["spool"]) == []
    assert len(media_rows()) == 1


# ---------------------------------------------------------------------------------------------
# Roles


@pytest.mark.parametrize("role", ["staff", "dpo"])
def test_staff_and_dpo_cannot_upload(api, logged_in, folders, role: str) -> None:
    """Only admin and communications upload, by API and on the site."""
    assert upload(api, image_bytes("PNG"), "x.png", role=role).status_code == 403
    client = logged_in(role)
    assert client.get("/media/upload").status_code == 403
    assert client.post("/media/files", data=image_bytes("PNG")).status_code == 403
    assert_nothing_stored(folders)


# ---------------------------------------------------------------------------------------------
# Reading, listing, deleting


def test_get_and_list_media(api, folders) -> None:
    """An item with its appearances, and pages filtered by status and kind."""
    photo = upload(api, image_bytes("PNG"), "x.png").get_json()
    upload(api, wav_bytes(), "y.wav")
    row = db.session.get(Media, photo["id"])
    row.appearances.append(Appearance(kind="face", box_x=1, box_y=2, box_w=30, box_h=40))
    row.appearances.append(Appearance(kind="voice", segments=[[0.5, 2.0]], distance=0.4))
    db.session.commit()

    body = conforms(api("GET", f"/media/{photo['id']}", role="staff")).get_json()
    assert set(body) >= {"id", "kind", "status", "progress", "width", "height", "duration_s", "title",
                         "taken_on", "sha256", "appearances"}
    face, voice = body["appearances"]
    assert face["box"] == {"x": 1, "y": 2, "w": 30, "h": 40} and face["segments"] is None
    assert face["resolution"] == "unresolved" and face["person_id"] is None
    assert voice["box"] is None and voice["segments"] == [[0.5, 2.0]] and voice["distance"] == 0.4

    listed = conforms(api("GET", "/media?status=queued&page=1", role="dpo")).get_json()
    assert listed["total"] == 2 and listed["page"] == 1
    photos = conforms(api("GET", "/media?kind=photo", role="dpo")).get_json()
    assert [m["id"] for m in photos["items"]] == [photo["id"]]
    assert conforms(api("GET", "/media?status=ready")).get_json()["total"] == 0
    assert conforms(api("GET", "/media?status=bogus"), check_request=False).status_code == 400
    assert conforms(api("GET", "/media/999999")).status_code == 404


def test_delete_removes_files_rows_and_is_audited(api, folders) -> None:
    """The original and face crops go, with the rows; the deletion is in the audit log."""
    body = upload(api, image_bytes("JPEG"), "x.jpg").get_json()
    crop_key = get_storage().put(b"crop", prefix="media/crops")
    row = db.session.get(Media, body["id"])
    row.appearances.append(Appearance(kind="face", box_x=0, box_y=0, box_w=5, box_h=5, crop_key=crop_key))
    db.session.commit()
    assert len(files_in(folders["uploads"])) == 2

    assert conforms(api("DELETE", f"/media/{body['id']}", role="staff")).status_code == 403
    assert conforms(api("DELETE", f"/media/{body['id']}", role="admin")).status_code == 204
    assert files_in(folders["uploads"]) == []
    assert media_rows() == [] and db.session.query(Appearance).count() == 0
    (event,) = events("media:delete")
    assert event.subject_id == str(body["id"]) and event.details["appearances"] == 1
    assert conforms(api("GET", f"/media/{body['id']}")).status_code == 404
    assert conforms(api("DELETE", f"/media/{body['id']}", role="admin")).status_code == 404
    assert verify().ok


def test_the_site_deletes_with_csrf(api, logged_in, folders) -> None:
    """The delete button on the detail page leads to a page that asks; only its button deletes."""
    body = upload(api, image_bytes("PNG"), "x.png").get_json()
    client = logged_in("communications")
    token = csrf_token(client, f"/media/{body['id']}")
    detail = client.get(f"/media/{body['id']}").get_data(as_text=True)
    assert f'class="button danger" id="delete-item" href="/media/{body["id"]}/delete"' in detail
    asked = client.get(f"/media/{body['id']}/delete").get_data(as_text=True)
    assert 'class="danger"' in asked and 'name="confirmed" value="yes"' in asked
    assert client.post(f"/media/{body['id']}/delete").status_code == 400
    response = client.post(f"/media/{body['id']}/delete", data={"csrf_token": token})
    assert response.status_code == 303 and len(media_rows()) == 1  # not confirmed: asks again
    response = client.post(f"/media/{body['id']}/delete",
                           data={"csrf_token": token, "confirmed": "yes"})
    assert response.status_code == 302 and media_rows() == []
    assert files_in(folders["uploads"]) == []


# ---------------------------------------------------------------------------------------------
# The original file


def test_original_download_is_audited_safe_and_refused_for_staff(api, logged_in, folders) -> None:
    """Streamed as uploaded, under a name made by us, each fetch audited; staff may not."""
    data = image_bytes("JPEG", size=(64, 48), exif=exif_with(orientation=6))
    evil_name = 'a"; filename=evil.html\r\nX-Injected: 1\u202egpj.exe'
    media_id = upload(api, data, evil_name).get_json()["id"]

    client = logged_in("communications")
    response = client.get(f"/media/{media_id}/original")
    assert response.status_code == 200 and response.get_data() == data
    assert response.mimetype == "image/jpeg"
    assert response.headers["Content-Disposition"] == f'attachment; filename="media-{media_id}.jpg"'
    assert "X-Injected" not in response.headers and "no-store" in response.headers["Cache-Control"]
    (event,) = events("media:original_view")
    assert event.subject_id == str(media_id)

    partial = client.get(f"/media/{media_id}/original", headers={"Range": "bytes=0-9"})
    assert partial.status_code == 206 and partial.get_data() == data[:10]
    assert events("media:original_view")[-1].details == {"range": "bytes=0-9"}

    assert logged_in("dpo").get(f"/media/{media_id}/original").status_code == 200
    assert logged_in("staff").get(f"/media/{media_id}/original").status_code == 403
    assert len(events("media:original_view")) == 3
    # The name is shown to staff without its control and direction characters.
    assert "\u202e" not in media_rows()[0].original_name and "\r" not in media_rows()[0].original_name


# ---------------------------------------------------------------------------------------------
# The pages


def test_the_upload_page_renders_without_inline_scripts(logged_in) -> None:
    """A form that works without scripts, and a script file that improves it."""
    html = logged_in("communications").get("/media/upload").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in html and 'name="files"' in html and "multiple" in html
    assert 'name="csrf_token"' in html and 'data-upload-url="/media/files"' in html
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all("src=" in tag for tag in scripts)
    assert re.search(r"<script\b[^>]*>\s*[^<\s]", html) is None  # nothing inline
    static = logged_in("admin").get("/static/upload.js")
    assert static.status_code == 200 and b"X-CSRFToken" in static.get_data()


def test_the_json_upload_route_needs_the_csrf_header(logged_in, folders) -> None:
    """The session route takes the raw file with X-CSRFToken; without it, 400 and nothing stored."""
    client = logged_in("communications")
    data = image_bytes("PNG")
    refused = client.post("/media/files?name=x.png", data=data, content_type="application/octet-stream")
    assert refused.status_code == 400
    assert_nothing_stored(folders)

    token = csrf_token(client, "/media/upload")
    response = client.post("/media/files?name=x.png&title=Schoolreis", data=data,
                           content_type="application/octet-stream", headers={"X-CSRFToken": token})
    assert response.status_code == 201
    body = response.get_json()
    assert body["kind"] == "photo" and not body["duplicate"] and body["url"] == f"/media/{body['id']}"
    assert media_rows()[0].title == "Schoolreis"
    again = client.post("/media/files?name=copy.png", data=data,
                        content_type="application/octet-stream", headers={"X-CSRFToken": token})
    assert again.status_code == 200 and again.get_json()["duplicate"]

    bad = client.post("/media/files?name=x.txt", data=b"plain text, not a photo",
                      content_type="application/octet-stream", headers={"X-CSRFToken": token})
    assert bad.status_code == 415 and bad.get_json()["error"]["code"] == "unsupported_type"
    bad_date = client.post("/media/files?taken_on=gisteren", data=data,
                           content_type="application/octet-stream", headers={"X-CSRFToken": token})
    assert bad_date.status_code == 422 and "taken_on" in bad_date.get_json()["error"]["fields"]
    as_form = client.post("/media/files", data={"csrf_token": token, "file": (io.BytesIO(data), "x.png")},
                          content_type="multipart/form-data")
    assert as_form.status_code == 415
    assert len(media_rows()) == 1 and files_in(folders["spool"]) == []


def test_the_plain_form_uploads_several_files_with_a_result_each(logged_in, folders) -> None:
    """Without scripts every file is posted at once; each gets its own verdict."""
    client = logged_in("admin")
    token = csrf_token(client, "/media/upload")
    response = client.post("/media/upload", content_type="multipart/form-data", data={
        "csrf_token": token, "title": "Sportdag",
        "files": [(io.BytesIO(image_bytes("PNG")), "one.png"), (io.BytesIO(b"not media"), "two.jpg"),
                  (io.BytesIO(wav_bytes()), "three.wav")],
    })
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "one.png" in html and "two.jpg" in html and "three.wav" in html
    assert [(m.kind, m.title) for m in media_rows()] == [("photo", "Sportdag"), ("audio", "Sportdag")]
    assert len(files_in(folders["uploads"])) == 2 and files_in(folders["spool"]) == []

    nothing = client.post("/media/upload", content_type="multipart/form-data",
                          data={"csrf_token": token})
    assert nothing.status_code == 422
    assert client.post("/media/upload", content_type="multipart/form-data",
                       data={"files": (io.BytesIO(image_bytes("JPEG")), "x.jpg")}).status_code == 400


def test_list_and_detail_pages_show_the_photo_through_a_stripped_copy(api, logged_in, folders) -> None:
    """Every role sees the list and the detail page; the photo shown is upright and has no EXIF."""
    data = image_bytes("JPEG", size=(64, 48), exif=exif_with(orientation=6))
    media_id = upload(api, data, "kamp.jpg", title="Kamp").get_json()["id"]
    client = logged_in("staff")
    listing = client.get("/media/").get_data(as_text=True)
    assert "Kamp" in listing and f"/media/{media_id}" in listing
    page = client.get(f"/media/{media_id}").get_data(as_text=True)
    assert f'src="/media/{media_id}/display"' in page and "/original" not in page
    shown = client.get(f"/media/{media_id}/display")
    assert shown.status_code == 200 and shown.mimetype == "image/jpeg"
    with Image.open(io.BytesIO(shown.get_data())) as img:
        assert img.size == (48, 64) and not img.getexif()
    assert client.get(f"/media/{media_id}/display",
                      headers={"If-None-Match": shown.headers["ETag"]}).status_code == 304
    assert events("media:original_view") == []  # the display copy is not the original
    assert client.get("/media/999999").status_code == 404
    detail_for_dpo = logged_in("dpo").get(f"/media/{media_id}").get_data(as_text=True)
    assert f"/media/{media_id}/original" in detail_for_dpo


def test_a_recording_page_offers_a_player_only_to_whom_may_fetch_the_original(api, logged_in,
                                                                             folders) -> None:
    """Video and sound come from the original; staff see a note instead of a player."""
    media_id = upload(api, wav_bytes(), "x.wav").get_json()["id"]
    assert "<audio" in logged_in("communications").get(f"/media/{media_id}").get_data(as_text=True)
    staff_page = logged_in("staff").get(f"/media/{media_id}").get_data(as_text=True)
    assert "<audio" not in staff_page
    assert logged_in("staff").get(f"/media/{media_id}/display").status_code == 404


# ---------------------------------------------------------------------------------------------
# In a real browser


def assert_accessible(page: Any) -> None:
    """axe-core finds no serious or critical accessibility problems on the page."""
    from axe_playwright_python.sync_playwright import Axe

    violations = Axe().run(page).response["violations"]
    serious = [(v["id"], v["help"]) for v in violations if v["impact"] in ("serious", "critical")]
    assert not serious, serious


def test_the_upload_page_in_a_browser(page: Any, live_server: str, users, folders) -> None:
    """Chosen and dropped files go one by one, each with a progress bar and its own verdict."""
    from conftest import PASSWORD

    problems: list[str] = []
    # Script errors and Content-Security-Policy refusals; the refused upload's 415 is expected.
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if "Security Policy" in m.text else None)
    page.goto(f"{live_server}/login")
    page.locator("#email").fill(users["communications"].email)
    page.locator("#password").fill(PASSWORD)
    page.locator("#password").press("Enter")
    page.wait_for_url(f"{live_server}/people/")
    page.goto(f"{live_server}/media/upload")
    assert_accessible(page)
    page.locator("#f-files").set_input_files([
        {"name": "klas.png", "mimeType": "image/png", "buffer": image_bytes("PNG")},
        {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"just some text"},
    ])
    page.locator("#upload-form button[type=submit]").click()
    results = page.locator("#upload-results li")
    results.nth(1).locator(".error").wait_for()
    results.first.get_by_role("link").wait_for()
    assert "klas.png" in results.first.inner_text()
    assert "Dit type bestand wordt niet geaccepteerd" in results.nth(1).inner_text()

    page.evaluate("""([bytes]) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], "lied.wav", {type: "audio/wav"}));
        document.getElementById("dropzone").dispatchEvent(
            new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", [list(wav_bytes())])
    results.nth(2).get_by_role("link").wait_for()
    results.nth(2).get_by_role("link").click()
    page.wait_for_url(re.compile(r".*/media/\d+$"))
    assert "<audio" in page.content()
    assert_accessible(page)
    assert [m.kind for m in media_rows()] == ["photo", "audio"]
    assert not problems, problems


def test_a_new_upload_starts_its_analysis_and_a_duplicate_does_not(
    api, folders, analyses_started: list[int]
) -> None:
    """Each new item is queued for analysis exactly once."""
    data = image_bytes("PNG")
    first, again = upload(api, data, "a.png"), upload(api, data, "b.png")
    assert (first.status_code, again.status_code) == (201, 200)
    assert analyses_started == [first.get_json()["id"]]
