"""Analysis fails closed: a damaged, cut-off or forged file, or a detector that hears nobody, never
reads as "nobody there" (issue 12, points 1 and 6).

Hostile files are made at test time in tmp_path from the public clip (never committed). Faces and
voices come from the fake engines: the subject is decoding, not detection.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import sqlalchemy as sa
from fake_face_engine import FakeFaceEngine
from flask import Flask
from PIL import Image

from consent_registry.audit import AuditEvent
from consent_registry.db import db
from consent_registry.media import analysis
from consent_registry.media.completeness import DamagedMedia, check_photo_filled
from consent_registry.media.faces import Box
from consent_registry.media.models import Media
from consent_registry.media.sound import pcm_chunks
from consent_registry.media.video import track_faces, video_seconds
from consent_registry.storage import get_storage

from api_helpers import api_caller
from conftest import SHARED_DATA
from fake_voice_engine import FakeVoiceEngine, voice_vector
from voice_clips import clip, flac_bytes

PAGES_IN_ENGLISH = True
V01 = SHARED_DATA / "video" / "v01.mp4"
FACE = Box(40, 40, 120, 120)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeFaceEngine, FakeVoiceEngine]:
    """Fake engines for analysis: a face in every frame, one voice speaking from 1 s to 3 s."""
    faces, voices = FakeFaceEngine([FACE]), FakeVoiceEngine([(1.0, 3.0, voice_vector(1))])
    monkeypatch.setattr(analysis, "_video_engines", lambda: (faces, None))
    monkeypatch.setattr(analysis, "engine", lambda: faces)
    monkeypatch.setattr(analysis, "voice_engine", lambda: voices)
    return faces, voices


def _upload(app: Flask, tokens: dict[str, str], data: bytes, name: str) -> Any:
    """Upload through the API (analysis runs inline in tests); the response."""
    api = api_caller(app, tokens, "communications")
    return api("POST", "/media", data={"file": (io.BytesIO(data), name)},
               content_type="multipart/form-data")


def _analysed(app: Flask, tokens: dict[str, str], data: bytes, name: str) -> Media:
    """Upload and return the analysed item, fresh from the database."""
    response = _upload(app, tokens, data, name)
    assert response.status_code == 201, response.get_json()
    db.session.expire_all()
    return db.session.get(Media, response.get_json()["id"])


def _blockers(app: Flask, tokens: dict[str, str], media_id: int) -> set[str]:
    """The gate's media-wide and per-appearance reasons for the website, as the API says."""
    api = api_caller(app, tokens, "communications")
    decision = api("GET", f"/media/{media_id}/gate?channel=website&attest=true").get_json()
    return {b["reason"] for b in decision["blockers"]}


def _damaged(offset: int, length: int = 4) -> bytes:
    """The public clip with `length` bytes inverted from `offset`."""
    data = bytearray(V01.read_bytes())
    data[offset:offset + length] = bytes(b ^ 0xFF for b in data[offset:offset + length])
    return bytes(data)


def _packet(kind: str, index: int) -> int:
    """Where the public clip's index-th packet of a stream (video or audio) starts in the file."""
    with av.open(str(V01)) as container:
        packets = [p.pos for p in container.demux(**{kind: 0}) if p.size]
    return packets[index]


# --- a damaged sound track (the reproduction, on SQLite and PostgreSQL) ---------------------

def test_a_damaged_sound_track_fails_the_analysis_the_page_and_the_gate_say_why(
        app: Flask, tokens: dict[str, str], tmp_path: Path, logged_in: Any,
        fakes: tuple[FakeFaceEngine, FakeVoiceEngine]) -> None:
    """Four bytes changed at 53-56, in the first AAC packet: the sound cannot be listened to, so the
    item is not "ready with no voices" (as it was) but failed, with a reason on the page, and the
    gate refuses it. The intact clip, analysed the same way, has its voice."""
    intact = _analysed(app, tokens, V01.read_bytes(), "v01.mp4")
    assert (intact.status, intact.voices_analysed) == ("ready", True)
    assert [a.kind for a in intact.appearances].count("voice") == 1

    copy = tmp_path / "v01-damaged.mp4"
    copy.write_bytes(_damaged(53))
    media = _analysed(app, tokens, copy.read_bytes(), copy.name)
    assert (media.status, media.voices_analysed) == ("failed", False)
    assert media.failure_reason.startswith("sound_damaged: ")
    assert media.appearances == []
    failed = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "media:analysis_failed",
        AuditEvent.subject_id == str(media.id))).scalars().one()
    assert failed.details["reason"] == media.failure_reason

    assert "analysis_failed" in _blockers(app, tokens, media.id)
    api = api_caller(app, tokens, "communications")
    refused = api("POST", f"/media/{media.id}/publish", json={"channel": "website", "attest": True})
    assert refused.status_code == 409
    page = logged_in("communications").get(f"/media/{media.id}").get_data(as_text=True)
    assert "The sound is damaged and could not be listened to" in page
    assert "nobody has been looked or listened for" in page and "Nobody was found" not in page


def test_sound_that_stops_decoding_half_way_is_not_silence(
        app: Flask, tokens: dict[str, str], fakes: tuple[FakeFaceEngine, FakeVoiceEngine]) -> None:
    """A damaged packet at 4.6 s: the decoder raises there. The voice speaking at 6-8 s was never
    heard; the analysis fails instead of finding the sound empty after 4.6 s."""
    _faces, voices = fakes
    voices.spans = [(6.0, 8.0, voice_vector(2))]
    media = _analysed(app, tokens, _damaged(_packet("audio", 200)), "half.mp4")
    assert (media.status, media.voices_analysed) == ("failed", False)
    assert media.failure_reason.startswith("sound_damaged: decoding stopped after 4.")


def test_listening_again_to_damaged_sound_leaves_it_unheard(
        app: Flask, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        fakes: tuple[FakeFaceEngine, FakeVoiceEngine]) -> None:
    """`flask media listen` on an older item whose sound is damaged: voices stay not analysed and
    the gate keeps saying so."""
    monkeypatch.setattr("consent_registry.api.media.start_analysis", lambda media_id: None)
    response = _upload(app, tokens, _damaged(53), "old.mp4")
    media = db.session.get(Media, response.get_json()["id"])
    media.status, media.voices_analysed = "ready", False  # as an install before voices left it
    media_id = media.id
    db.session.commit()
    analysis.listen_to_sound(media_id)
    db.session.expire_all()
    assert db.session.get(Media, media_id).voices_analysed is False
    assert "not_analysed" in _blockers(app, tokens, media_id)
    assert db.session.query(AuditEvent).filter_by(action="media:analysis_failed").count() == 1


def _with_two_sound_tracks(path: Path) -> Path:
    """The public clip with its sound track twice (as screen recorders keep microphone and system
    sound apart)."""
    with av.open(str(V01)) as source, av.open(str(path), "w") as out:
        video = out.add_stream_from_template(source.streams.video[0])
        sounds = [out.add_stream_from_template(source.streams.audio[0]) for _ in range(2)]
        for packet in source.demux():
            if packet.dts is None:
                continue
            targets = [video] if packet.stream.type == "video" else sounds
            for target in targets:
                copy = av.Packet(bytes(packet))
                copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
                copy.is_keyframe = packet.is_keyframe
                copy.stream = target
                out.mux(copy)
    return path


def test_a_second_sound_track_is_not_left_unheard(
        app: Flask, tokens: dict[str, str], tmp_path: Path,
        fakes: tuple[FakeFaceEngine, FakeVoiceEngine]) -> None:
    """Only one track is listened to, so a file with two fails rather than leave one unheard."""
    data = _with_two_sound_tracks(tmp_path / "two.mp4").read_bytes()
    media = _analysed(app, tokens, data, "two.mp4")
    assert (media.status, media.voices_analysed) == ("failed", False)
    assert media.failure_reason.startswith("sound_tracks: 2 tracks")


# --- video frames that do not decode --------------------------------------------------------------

def test_a_concealed_damaged_frame_fails_the_analysis(
        app: Flask, tokens: dict[str, str], fakes: tuple[FakeFaceEngine, FakeVoiceEngine]) -> None:
    """Damaged picture data in the 100th frame: H.264 conceals it with a guessed picture (no error
    raised, the frame marked corrupt), in which a face may be missing. The analysis fails."""
    media = _analysed(app, tokens, _damaged(_packet("video", 100) + 10), "conceal.mp4")
    assert (media.status, media.voices_analysed) == ("failed", False)
    assert media.failure_reason.startswith("frames_damaged: a damaged frame at 4.")


def test_frames_that_stop_decoding_half_way_fail_the_analysis(
        app: Flask, tokens: dict[str, str], fakes: tuple[FakeFaceEngine, FakeVoiceEngine]) -> None:
    """The 100th frame's packet cannot be decoded at all: the decoder raises half-way."""
    media = _analysed(app, tokens, _damaged(_packet("video", 100), 8), "stops.mp4")
    assert media.status == "failed"
    assert media.failure_reason.startswith("frames_damaged: decoding stopped at frame 101")


def _faststart(path: Path) -> Path:
    """The public clip remuxed with its index first, as phones and editors write it."""
    with av.open(str(V01)) as source, av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return path


def test_a_cut_off_video_is_refused_and_its_frames_are_not_read_as_the_whole(
        app: Flask, tokens: dict[str, str], tmp_path: Path,
        fakes: tuple[FakeFaceEngine, FakeVoiceEngine]) -> None:
    """A video whose file ends at 60% (its index still lists every frame): decoding stops quietly
    at 6 s. The upload is refused; a stored copy (older than the check) fails its analysis."""
    whole = _faststart(tmp_path / "whole.mp4").read_bytes()
    cut = whole[:len(whole) * 6 // 10]
    refused = _upload(app, tokens, cut, "cut.mp4")
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "corrupt"

    faces, _voices = fakes
    with pytest.raises(DamagedMedia, match="frames_incomplete: the file lists 275 packets, only 155"):
        track_faces(io.BytesIO(cut), engine=faces)

    media = _analysed(app, tokens, whole, "whole.mp4")
    assert media.status == "ready"
    media.storage_key, media.status = get_storage().put(cut, prefix="media/originals"), "queued"
    db.session.commit()
    analysis.analyse_media(media.id)
    db.session.expire_all()
    media = db.session.get(Media, media.id)
    assert media.status == "failed" and media.failure_reason.startswith("frames_incomplete: ")
    assert media.appearances == []


# --- a detector that hears nobody in audible sound -------------------------------------------------

def test_speech_the_detector_misses_becomes_a_voice_for_a_human(
        app: Flask, tokens: dict[str, str], tmp_path: Path, logged_in: Any,
        fakes: tuple[FakeFaceEngine, FakeVoiceEngine]) -> None:
    """Six seconds of a person speaking, and a detector that finds no speech: the audible sound is
    one voice to resolve (with its snippet), never "nobody there". Once a human marks it not
    recognisable, nothing of the sound blocks."""
    _faces, voices = fakes
    voices.spans = []
    speech = clip("1998-0001")
    media = _analysed(app, tokens, flac_bytes(speech, tmp_path), "talk.flac")
    assert (media.status, media.voices_analysed) == ("ready", True)
    [voice] = media.appearances
    assert voice.kind == "voice" and voice.resolution == "unresolved" and voice.crop_key
    assert get_storage().get(voice.crop_key)[:4] == b"RIFF"
    covered = sum(end - start for start, end in voice.segments)
    assert covered > 0.8 * speech.size / 16000
    analysed = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "media:analysed")).scalars().one()
    assert analysed.details["sound_without_speech"] == 1
    assert _blockers(app, tokens, media.id) == {"unresolved"}

    api = api_caller(app, tokens, "communications")
    cleared = api("PATCH", f"/media/{media.id}/appearances/{voice.id}",
                  json={"resolution": "not_recognisable"})
    assert cleared.status_code == 200, cleared.get_json()
    assert _blockers(app, tokens, media.id) == set()


def test_silence_has_nobody_to_hear(app: Flask, tokens: dict[str, str], tmp_path: Path,
                                    fakes: tuple[FakeFaceEngine, FakeVoiceEngine]) -> None:
    """A quiet recording (room tone under -45 dBFS) with no speech found: no voice to resolve."""
    _faces, voices = fakes
    voices.spans = []
    hum = (0.003 * np.random.default_rng(1).normal(size=16000 * 5)).astype(np.float32)
    media = _analysed(app, tokens, flac_bytes(hum, tmp_path), "room.flac")
    assert (media.status, media.voices_analysed, media.appearances) == ("ready", True, [])


# --- budgets by what decodes, not by what headers claim --------------------------------------------

def _jpeg_claiming(width: int, height: int) -> bytes:
    """A tiny JPEG whose frame header claims width x height pixels (its data fills 64 x 64)."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 130, 140)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.find(b"\xff\xc0")
    data[frame + 5:frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height grey pixels, with the data of ten rows."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = (b"\x00" + b"\x80" * width) * 10
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("forged", [_jpeg_claiming, _png_claiming])
def test_a_photo_whose_data_cannot_fill_its_claimed_pixels_is_refused(
        app: Flask, tokens: dict[str, str], forged: Any) -> None:
    """A few hundred bytes claiming 9000 x 9000 (81 MP): decoders pad them into a picture that face
    detection scanned for minutes. Refused with a clear 422, nothing stored."""
    data = forged(9000, 9000)
    assert len(data) < 20_000
    response = _upload(app, tokens, data, "bomb.jpg")
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "corrupt" and error["message"].count("9000") == 2  # the claim, named
    assert db.session.query(Media).count() == 0


def test_a_stored_forged_photo_fails_its_analysis_before_detection(
        app: Flask, tokens: dict[str, str], fakes: tuple[FakeFaceEngine, FakeVoiceEngine]) -> None:
    """A forged photo stored before ingest checked (an older install): the analysis fails with the
    reason and never hands 81 MP to the face detector."""
    faces, _voices = fakes
    media = _analysed(app, tokens, (SHARED_DATA / "groups" / "g05.jpg").read_bytes(), "g05.jpg")
    faces.detected.clear()
    media.storage_key = get_storage().put(_jpeg_claiming(9000, 9000), prefix="media/originals")
    media.status = "queued"
    db.session.commit()
    analysis.analyse_media(media.id)
    db.session.expire_all()
    media = db.session.get(Media, media.id)
    assert media.status == "failed" and media.failure_reason.startswith("photo_incomplete: ")
    assert faces.detected == []


def test_real_photos_fill_their_pixels() -> None:
    """Every public photo, and flat pictures (the least data per pixel), pass the check."""
    for path in [*(SHARED_DATA / "groups").iterdir(), *(SHARED_DATA / "probes").iterdir()]:
        check_photo_filled(path.read_bytes(), fmt="png" if path.suffix == ".png" else "jpeg")
    for fmt, options in (("jpeg", {"quality": 10, "optimize": True}),
                         ("jpeg", {"quality": 95, "progressive": True}), ("png", {})):
        buffer = io.BytesIO()
        Image.new("L", (2000, 1500), 255).save(buffer, fmt.upper(), **options)
        check_photo_filled(buffer.getvalue(), fmt=fmt)


def _duration_fields_forged(data: bytes) -> bytes:
    """The clip with every media header's duration set to 0xFFFFFFFF (ffmpeg reads 0.844 s)."""
    forged = bytearray(data)
    start = 0
    while (found := forged.find(b"mdhd", start)) >= 0:
        forged[found + 20:found + 24] = b"\xff\xff\xff\xff"  # version 0: size, type, flags, 2 times, scale
        start = found + 4
    return bytes(forged)


def test_a_video_with_forged_duration_fields_is_measured_by_its_packets(
        app: Flask, tokens: dict[str, str], fakes: tuple[FakeFaceEngine, FakeVoiceEngine]) -> None:
    """Duration fields of 0xFFFFFFFF: the item's length is the 10 s its packets last (it was stored
    as 0.844 s), progress is paced by it (it sat at 99% from the first second), and the analysis
    ends ready."""
    forged = _duration_fields_forged(V01.read_bytes())
    with av.open(io.BytesIO(forged)) as container:
        assert round(container.duration / av.time_base, 3) == 0.844  # what the header claims
    media = _analysed(app, tokens, forged, "forged.mp4")
    assert media.duration_s == pytest.approx(10.0, abs=0.1)
    assert (media.status, media.progress, media.voices_analysed) == ("ready", 100, True)

    faces, _voices = fakes
    reported: list[int] = []
    source = io.BytesIO(forged)
    track_faces(source, engine=faces, progress=reported.append, duration=video_seconds(source))
    assert reported[-1] == 100 and reported == sorted(reported)
    assert len(reported) > 30  # one step per sample, 5 a second, not a leap to 99 after 0.844 s
    assert [value for value in reported if value >= 99] == [100]


def test_sound_decodes_whole_from_every_accepted_kind_of_file(tmp_path: Path) -> None:
    """The completeness check lets intact sound through, whatever the container: no false alarms."""
    samples = clip("2033-0001")
    for name, codec, rate in (("a.wav", "pcm_s16le", 16000), ("a.mp3", "libmp3lame", 16000),
                              ("a.ogg", "libopus", 48000), ("a.m4a", "aac", 16000),
                              ("a.flac", "flac", 16000), ("a.webm", "libopus", 48000)):
        path = tmp_path / name
        as_int = (np.repeat(samples, rate // 16000) * 32767).astype(np.int16)
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=rate)
            stream.layout = "mono"
            for first in range(0, as_int.size, 960):
                frame = av.AudioFrame.from_ndarray(as_int[None, first:first + 960], format="s16",
                                                   layout="mono")
                frame.sample_rate = rate
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        heard = sum(chunk.size for chunk in pcm_chunks(path)) / 16000
        assert heard == pytest.approx(samples.size / 16000, abs=0.2), name
