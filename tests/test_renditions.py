"""Publishable renditions: metadata gone, chosen faces unrecognisable, videos blurred along tracks.

Also the two places renditions are seen before publishing: the staff's `GET /media/<id>/rendition`
and the parent's preview on a consent answer page (everyone but their own child blurred).
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from flask import Flask
from PIL import Image, ImageCms

from consent_registry.audit import SYSTEM
from consent_registry.consent.links import answer_token
from consent_registry.consent.requests import create_request
from consent_registry.db import db
from consent_registry.media.faces import Box, make_engine, oriented
from consent_registry.media.ingest import Limits, ingest_stream
from consent_registry.media.models import Appearance, Media
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person
from consent_registry.publishing.rendition import (
    audio_rendition,
    boxes_at,
    photo_rendition,
    preview_photo,
    video_rendition,
)
from consent_registry.publishing.renditions import RenditionError, blur_set, publishable_rendition
from consent_registry.storage import get_storage

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "public"
G01 = DATA / "groups" / "g01.jpg"
# The two faces of g01 as the real engine boxes them (checked in test_blurred_face_is_unrecognisable).
G01_FACES = (Box(239, 44, 168, 169), Box(790, 71, 171, 171))
SECRETS = (b"CameraMakerX", b"SerialNo12345", b"http://ns.adobe.com/xap/1.0/", b"Photoshop 3.0",
           b"8BIM", b"IptcCaptionSecret", b"XmpCreatorSecret", b"A comment secret", b"ICC_PROFILE")
FPS = 25


# --- photos ----------------------------------------------------------------------------------------

def _iptc_segment(caption: bytes) -> bytes:
    """An APP13 (Photoshop 3.0) segment holding one IPTC caption record."""
    record = b"\x1c\x02\x78" + struct.pack(">H", len(caption)) + caption
    block = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(record)) + record
    if len(record) % 2:
        block += b"\x00"
    payload = b"Photoshop 3.0\x00" + block
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def tagged_jpeg(size: tuple[int, int] = (60, 40), orientation: int = 6) -> bytes:
    """A JPEG with EXIF (camera, serial, orientation, GPS), XMP, IPTC, a comment and an ICC profile.

    Stored landscape with a red top-left corner; orientation 6 turns it a quarter clockwise.
    """
    pixels = np.full((size[1], size[0], 3), 90, dtype=np.uint8)
    pixels[:10, :10] = (255, 0, 0)
    img = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x010F] = "CameraMakerX"  # Make
    exif[0xA431] = "SerialNo12345"  # BodySerialNumber
    exif[0x0112] = orientation
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.5)})
    xmp = (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
           b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
           b'xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="XmpCreatorSecret"/></rdf:RDF>'
           b'</x:xmpmeta><?xpacket end="w"?>')
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = io.BytesIO()
    img.save(out, format="JPEG", exif=exif, xmp=xmp, comment=b"A comment secret", icc_profile=icc)
    data = out.getvalue()
    return data[:2] + _iptc_segment(b"IptcCaptionSecret") + data[2:]


def test_the_input_really_has_every_kind_of_metadata() -> None:
    """The test photo carries what the rendition must remove (else the next test proves nothing)."""
    data = tagged_jpeg()
    with Image.open(io.BytesIO(data)) as img:
        assert img.getexif().get_ifd(0x8825)[1] == "N"
        assert "xmp" in img.info and "icc_profile" in img.info and "comment" in img.info
        assert img.applist[0][0] == "APP13" or any(name == "APP13" for name, _ in img.applist)
    for secret in SECRETS:
        assert secret in data, secret


def test_photo_rendition_removes_exif_gps_xmp_iptc_comment_and_icc() -> None:
    """Nothing but pixels survives: checked with Pillow and in the raw bytes."""
    out = photo_rendition(tagged_jpeg(), [])
    with Image.open(io.BytesIO(out)) as img:
        assert img.format == "JPEG"
        assert len(img.getexif()) == 0
        assert not img.getexif().get_ifd(0x8825)
        for key in ("exif", "xmp", "icc_profile", "comment", "photoshop", "adobe"):
            assert key not in img.info, key
        assert {name for name, _ in img.applist} <= {"APP0"}
    for secret in (*SECRETS, b"Exif\x00\x00", b"GPS", b"xpacket"):
        assert secret not in out, secret


def test_photo_rendition_applies_orientation() -> None:
    """Orientation 6: the stored 60x40 becomes 40x60 and the red corner moves to the top right."""
    with Image.open(io.BytesIO(photo_rendition(tagged_jpeg(), []))) as img:
        assert img.size == (40, 60)
        pixels = np.asarray(img.convert("RGB"), dtype=int)
    assert pixels[3, 36, 0] > 200 and pixels[3, 36, 1] < 60
    assert pixels[3, 3, 0] < 150


def test_photo_rendition_is_limited_in_size_and_boxes_follow() -> None:
    """A large photo is scaled to max_side; a box given in full-size pixels is blurred where it is."""
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 255, (50, 100, 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(blocks).resize((3000, 1500), Image.Resampling.NEAREST))
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    result = photo_rendition(out.getvalue(), [Box(2000, 1000, 400, 400)], max_side=1000)
    with Image.open(io.BytesIO(result)) as img:
        assert img.size == (1000, 500)
        shown = np.asarray(img.convert("L"), dtype=float)
    small = np.asarray(Image.fromarray(pixels).convert("L").resize((1000, 500)), dtype=float)
    assert _similarity(shown, small, Box(670, 336, 124, 124)) < 0.3  # the box, scaled by 1/3
    assert _similarity(shown, small, Box(100, 100, 124, 124)) > 0.9  # elsewhere all is kept


@pytest.mark.slow
def test_blurred_face_is_unrecognisable() -> None:
    """With the real engine: the blurred face is found no more and encodes far from itself."""
    engine = make_engine()
    data = G01.read_bytes()
    original = oriented(Image.open(io.BytesIO(data)))
    found = [f.box for f in engine.detect(original)]
    assert len(found) == 2 and all(max(a.iou(b) for b in found) > 0.9 for a in G01_FACES)
    blurred, kept = found
    before = engine.encode(original, [blurred, kept])
    result = Image.open(io.BytesIO(photo_rendition(data, [blurred]))).convert("RGB")
    after = [f.box for f in engine.detect(result)]
    assert not any(b.iou(blurred) > 0.1 for b in after)
    distance = float(np.linalg.norm(engine.encode(result, [blurred])[0] - before[0]))
    assert distance > 0.6
    assert any(b.iou(kept) > 0.7 for b in after)
    assert float(np.linalg.norm(engine.encode(result, [kept])[0] - before[1])) < 0.2


def test_blur_replaces_the_box_and_its_margin() -> None:
    """Inside the box and the margin nothing of the original's detail is left."""
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    result = np.asarray(Image.open(io.BytesIO(photo_rendition(out.getvalue(), [Box(100, 100, 160, 160)])))
                        .convert("L"), dtype=float)
    original = np.asarray(Image.fromarray(pixels).convert("L"), dtype=float)
    inner = (slice(62, 298), slice(62, 298))  # the box plus most of the 25 % margin
    assert result[inner].std() < 15
    correlation = np.corrcoef(result[inner].ravel(), original[inner].ravel())[0, 1]
    assert abs(correlation) < 0.1


def test_preview_keeps_the_own_face_sharp_and_blurs_the_others() -> None:
    """The parent's preview: their child sharp, every other face blurred."""
    own, other = G01_FACES[1], G01_FACES[0]
    shown = preview_photo(G01.read_bytes(), [own], [other])
    assert Image.open(io.BytesIO(shown)).size == (1024, 601)
    assert _g01_similarity(shown, own) > 0.9
    assert _g01_similarity(shown, other) < 0.6


def test_preview_blurs_a_face_nobody_boxed() -> None:
    """A face the detector missed (no box at all) is not shown sharp to a parent either."""
    own, missed = G01_FACES[1], G01_FACES[0]
    shown = preview_photo(G01.read_bytes(), [own], [])
    assert _g01_similarity(shown, own) > 0.9
    assert _g01_similarity(shown, missed) < 0.6


def _g01_similarity(shown: bytes, box: Box) -> float:
    """How much of g01's fine detail inside a box (full-size pixels) a rendition of it keeps."""
    image = Image.open(io.BytesIO(shown)).convert("L")
    original = Image.open(G01).convert("L")
    f = image.width / original.width
    scaled = Box(round(box.x * f), round(box.y * f), round(box.w * f), round(box.h * f))
    return _similarity(np.asarray(image, dtype=float),
                       np.asarray(original.resize(image.size, Image.Resampling.LANCZOS), dtype=float),
                       scaled)


def _similarity(a: np.ndarray, b: np.ndarray, box: Box) -> float:
    """Correlation of the fine detail (pixel minus its neighbour) of two pictures inside a box."""
    window = (slice(box.y, box.bottom), slice(box.x, box.right))
    da, db_ = np.diff(a[window], axis=1).ravel(), np.diff(b[window], axis=1).ravel()
    return float(np.corrcoef(da, db_)[0, 1])


# --- videos ----------------------------------------------------------------------------------------

SQUARE = 64


def _square_at(index: int) -> tuple[int, int]:
    """Where the 'face' (a bright checkered square) is in displayed frame index: moving right."""
    return 20 + index * 4, 60 + index


def _display_frame(index: int, width: int, height: int) -> np.ndarray:
    """A displayed frame: a smooth grey backdrop with the checkered square."""
    frame = np.full((height, width, 3), 70, dtype=np.uint8)
    frame[:, :, 2] = np.linspace(40, 120, width, dtype=np.uint8)[None, :]
    x, y = _square_at(index)
    yy, xx = np.mgrid[0:SQUARE, 0:SQUARE]
    checks = (((yy // 8) + (xx // 8)) % 2 * 235 + 20).astype(np.uint8)
    frame[y:y + SQUARE, x:x + SQUARE] = checks[:, :, None]
    return frame


def write_video(path: Path, *, frames: int = 40, size: tuple[int, int] = (320, 240),
                rotation: int = 0, audio: bool = True) -> Path:
    """An H.264 MP4 (with AAC sound and revealing tags) whose displayed frames hold the square."""
    width, height = size
    with av.open(str(path), "w") as container:
        container.metadata.update({"title": "TitleSecret", "location": "+52.3700+004.8900/",
                                   "comment": "CommentSecret", "creation_time": "2024-05-01T10:00:00Z"})
        video = container.add_stream("libx264", rate=FPS, options={"crf": "18", "preset": "ultrafast"})
        video.pix_fmt = "yuv420p" if width % 2 == height % 2 == 0 else "yuv444p"  # x264: odd sizes
        stored = (height, width) if rotation in (90, 270) else (width, height)
        video.width, video.height = stored
        if rotation:
            video.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=44100) if audio else None
        if sound is not None:
            sound.layout = "stereo"
        for index in range(frames):
            shown = _display_frame(index, width, height)
            array = np.ascontiguousarray(np.rot90(shown, -(rotation // 90))) if rotation else shown
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            samples = int(44100 * frames / FPS)
            t = np.arange(samples) / 44100
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = np.stack([wave[start:start + 1024]] * 2)
                aframe = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                                    layout="stereo")
                aframe.sample_rate, aframe.pts, aframe.time_base = 44100, start, Fraction(1, 44100)
                container.mux(sound.encode(aframe))
            container.mux(sound.encode(None))
    return path


def square_track(frames: int = 40, every: int = 5) -> list[list[float]]:
    """The square's face track sampled every 0.2 s (5 frames), as analysis stores it."""
    return [[index / FPS, *_square_at(index), SQUARE, SQUARE] for index in range(0, frames, every)]


def _decoded(path: Path) -> list[np.ndarray]:
    """Every frame of a file as shown, RGB."""
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            assert not frame.rotation
            frames.append(frame.to_ndarray(format="rgb24"))
        return frames


@pytest.mark.parametrize("rotation", [0, 90])
def test_video_rendition_blurs_the_track_in_every_frame(tmp_path: Path, rotation: int) -> None:
    """Every frame: the square (moving between samples) is smooth; sound kept; no tags; upright."""
    source = write_video(tmp_path / "in.mp4", rotation=rotation)
    target = tmp_path / "out.mp4"
    seen: list[int] = []
    # The last sample is at 1.4 s; frames up to 1.56 s follow; the hold covers up to 1.6 s.
    video_rendition(str(source), str(target), [square_track()], progress=seen.append)
    assert seen[0] == 0 and seen[-1] == 100 and seen == sorted(seen)
    frames = _decoded(target)
    assert len(frames) == 40
    assert frames[0].shape == (240, 320, 3)  # upright: the rotation applied, not tagged
    for index, frame in enumerate(frames):
        x, y = _square_at(index)
        inside = frame[y + 4:y + SQUARE - 4, x + 4:x + SQUARE - 4].astype(float).mean(axis=2)
        assert inside.std() < 25, (index, inside.std())
        assert _display_frame(index, 320, 240)[y + 4:y + SQUARE - 4, x + 4:x + SQUARE - 4].std() > 100
        assert abs(frame[200:230, 250:300].astype(float).mean() - 70 - 0) < 40  # the rest is kept
    with av.open(str(target)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.streams.audio[0].duration * container.streams.audio[0].time_base > 1.4
        assert container.streams.video[0].codec_context.name == "h264"
        tags = dict(container.metadata)
        for stream in container.streams:
            tags.update({f"{stream.type}:{k}": v for k, v in stream.metadata.items()})
    for key in ("title", "location", "comment", "creation_time", "encoder"):
        assert key not in tags, tags
    raw = target.read_bytes()
    for secret in (b"TitleSecret", b"CommentSecret", b"+52.3700", b"Lavf"):
        assert secret not in raw


def test_video_rendition_without_sound_has_none(tmp_path: Path) -> None:
    """A silent video stays silent (and works)."""
    source = write_video(tmp_path / "in.mp4", frames=10, audio=False, size=(322, 241))
    target = tmp_path / "out.mp4"
    video_rendition(str(source), str(target), [])
    with av.open(str(target)) as container:
        assert [s.type for s in container.streams] == ["video"]
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (322, 240)  # even dimensions for yuv420p


def test_boxes_between_samples_are_interpolated_and_held_at_the_ends() -> None:
    """Linear between samples; the first and last box held for 0.2 s; nothing beyond."""
    track = [[1.0, 0, 0, 10, 10], [1.4, 40, 20, 30, 10]]
    assert boxes_at([track], 1.2) == [Box(20, 10, 20, 10)]
    assert boxes_at([track], 0.85) == [Box(0, 0, 10, 10)]
    assert boxes_at([track], 1.55) == [Box(40, 20, 30, 10)]
    assert boxes_at([track], 0.75) == [] and boxes_at([track], 1.65) == []


def test_audio_rendition_drops_tags(tmp_path: Path) -> None:
    """A recording's rendition is AAC in M4A without its title or location."""
    source = write_video(tmp_path / "in.mp4", frames=10)
    target = tmp_path / "out.m4a"
    audio_rendition(str(source), str(target))
    with av.open(str(target)) as container:
        assert [s.type for s in container.streams] == ["audio"]
        assert "title" not in container.metadata
    assert b"TitleSecret" not in target.read_bytes()


# --- the service and the pages ---------------------------------------------------------------------

def _ingest(app: Flask, data: bytes) -> Media:
    """An item stored like an upload, marked analysed."""
    result = ingest_stream(io.BytesIO(data), limits=Limits.from_config(app.config),
                           storage=get_storage(), actor=SYSTEM, uploaded_by=None, title="Choir")
    media = result.media
    media.status = "ready"
    db.session.commit()
    return media


def _face(media: Media, box: Box, resolution: str = "unresolved", person_id: int | None = None,
          **fields: object) -> Appearance:
    """A face on the item."""
    appearance = Appearance(media_id=media.id, kind="face", box_x=box.x, box_y=box.y, box_w=box.w,
                            box_h=box.h, resolution=resolution, person_id=person_id, **fields)
    db.session.add(appearance)
    db.session.commit()
    return appearance


def _renditions_stored(app: Flask) -> int:
    """How many rendition files the local storage holds."""
    folder = Path(app.config["UPLOAD_DIR"]) / "renditions"
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def test_staff_see_the_rendition_and_it_is_reused(app: Flask, logged_in) -> None:
    """Roles that publish or supervise see it; it is made once per item and blur set."""
    media = _ingest(app, G01.read_bytes())
    blurred = _face(media, G01_FACES[0], "blur")
    _face(media, G01_FACES[1], "not_recognisable")
    url = f"/media/{media.id}/rendition"
    assert logged_in("staff").get(url).status_code == 403
    for role in ("admin", "communications", "dpo"):
        response = logged_in(role).get(url)
        assert response.status_code == 200, role
        assert response.mimetype == "image/jpeg"
        assert response.headers["Content-Disposition"].startswith("inline")
        assert b"Exif" not in response.data
    assert _renditions_stored(app) == 1
    assert _g01_similarity(response.data, G01_FACES[0]) < 0.6
    assert _g01_similarity(response.data, G01_FACES[1]) > 0.9
    detail = logged_in("communications").get(f"/media/{media.id}")
    assert url.encode() in detail.data
    blurred.resolution = "identified"
    db.session.commit()
    again = publishable_rendition(db.session.get(Media, media.id))
    assert again.content_type == "image/jpeg" and _renditions_stored(app) == 2
    assert publishable_rendition(db.session.get(Media, media.id)) == again


def test_a_new_process_reuses_the_rendition_a_publication_recorded(app: Flask) -> None:
    """Without this process's memory, the key kept by a publication is found and reused."""
    from consent_registry.publishing import renditions
    from consent_registry.publishing.models import Publication

    media = _ingest(app, G01.read_bytes())
    _face(media, G01_FACES[0], "blur")
    first = publishable_rendition(media)
    db.session.add(Publication(media_id=media.id, media_sha256=media.sha256, channel="website",
                               connector="export", decision={}, rendition_key=first.key,
                               rendition_sha256=first.sha256))
    db.session.commit()
    renditions._known.clear()
    assert publishable_rendition(db.session.get(Media, media.id)) == first
    assert _renditions_stored(app) == 1


def test_a_face_to_blur_without_a_box_is_never_published_sharp(app: Flask) -> None:
    """Fail closed: no box, no rendition."""
    media = _ingest(app, G01.read_bytes())
    db.session.add(Appearance(media_id=media.id, kind="face", resolution="blur"))
    db.session.commit()
    with pytest.raises(RenditionError):
        publishable_rendition(media)


def test_video_blur_set_uses_tracks_or_the_box_over_segments() -> None:
    """A track is blurred along; a face with only a box is blurred there during its segments."""
    tracked = Appearance(id=1, kind="face", resolution="blur", track=[[0.0, 1, 2, 3, 4]])
    boxed = Appearance(id=2, kind="face", resolution="blur", box_x=5, box_y=6, box_w=7, box_h=8,
                       segments=[[1.0, 2.0], [3.0, 4.0]])
    tagged = Appearance(id=3, kind="face", resolution="identified", track=[[0.0, 9, 9, 9, 9]])
    assert blur_set("video", [tagged, boxed, tracked]) == [
        [[0.0, 1.0, 2.0, 3.0, 4.0]],
        [[1.0, 5, 6, 7, 8], [2.0, 5, 6, 7, 8]],
        [[3.0, 5, 6, 7, 8], [4.0, 5, 6, 7, 8]],
    ]


def test_video_rendition_through_the_service(app: Flask, tmp_path: Path, logged_in) -> None:
    """A video's rendition is an MP4 with the track blurred and the sound kept, stored once."""
    media = _ingest(app, write_video(tmp_path / "in.mp4").read_bytes())
    _face(media, Box(20, 60, SQUARE, SQUARE), "blur", track=square_track(),
          segments=[[0.0, 1.6]])
    response = logged_in("communications").get(f"/media/{media.id}/rendition?download=1")
    assert response.status_code == 200 and response.mimetype == "video/mp4"
    assert response.headers["Content-Disposition"].startswith("attachment")
    out = tmp_path / "out.mp4"
    out.write_bytes(response.data)
    frames = _decoded(out)
    x, y = _square_at(20)
    assert frames[20][y + 4:y + SQUARE - 4, x + 4:x + SQUARE - 4].std() < 25
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 1
    assert logged_in("dpo").get(f"/media/{media.id}/rendition").status_code == 200
    assert _renditions_stored(app) == 1


# --- the parent's preview --------------------------------------------------------------------------

def _request_about(media: Media) -> tuple[str, int, int]:
    """A consent request about the item for one pupil; the guardian's answer token."""
    child = create_person(PersonCreate.model_validate({
        "external_id": "P1", "given_name": "Noor", "family_name": "Visser",
        "birth_date": "2014-02-03", "role": "pupil",
        "guardians": [{"name": "Anna Visser", "email": "anna@ouders.example.nl"}],
    }), actor=SYSTEM)
    request_ = create_request(people=[child], channels=["facebook"], note="Choir", actor=SYSTEM,
                              created_by=None, media_id=media.id)
    db.session.commit()
    return answer_token(request_.recipients[0].id), child.id, request_.id


def test_the_answer_page_previews_the_photo_with_only_the_own_child_sharp(app: Flask) -> None:
    """Own child sharp, everyone else blurred; strict headers; a bad token gets no image."""
    media = _ingest(app, G01.read_bytes())
    token, child_id, _ = _request_about(media)
    _face(media, G01_FACES[0], "identified", person_id=child_id)
    _face(media, G01_FACES[1], "unresolved")
    client = app.test_client()
    page = client.get(f"/c/{token}")
    assert page.status_code == 200
    assert f'src="/c/{token}/preview"'.encode() in page.data
    response = client.get(f"/c/{token}/preview")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert b"Exif" not in response.data
    assert _g01_similarity(response.data, G01_FACES[0]) > 0.9
    assert _g01_similarity(response.data, G01_FACES[1]) < 0.6
    wrong = client.get("/c/not-a-real-token/preview")
    assert wrong.status_code == 404 and wrong.mimetype == "text/html"
    assert b"<img" not in wrong.data


def test_the_answer_page_of_a_video_shows_only_the_own_face(app: Flask, tmp_path: Path) -> None:
    """For a video only the child's own thumbnail is shown; a sound recording has no preview."""
    media = _ingest(app, write_video(tmp_path / "in.mp4").read_bytes())
    token, child_id, _ = _request_about(media)
    client = app.test_client()
    assert b"/preview" not in client.get(f"/c/{token}").data  # not tagged: nothing to show
    assert client.get(f"/c/{token}/preview").status_code == 404
    thumb = io.BytesIO()
    Image.new("RGB", (160, 160), (10, 200, 10)).save(thumb, format="JPEG")
    key = get_storage().put(thumb.getvalue(), prefix="crops")
    _face(media, Box(20, 60, SQUARE, SQUARE), "identified", person_id=child_id, crop_key=key)
    _face(media, Box(200, 60, SQUARE, SQUARE), "unresolved",
          crop_key=get_storage().put(b"other child", prefix="crops"))
    assert f'src="/c/{token}/preview"'.encode() in client.get(f"/c/{token}").data
    response = client.get(f"/c/{token}/preview")
    assert response.status_code == 200 and response.data == thumb.getvalue()
