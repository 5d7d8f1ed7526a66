"""Face tracks through videos: synthetic clips made here with PyAV, and the public clip v01.mp4."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from consent_registry.media.faces import crop, make_engine, oriented
from consent_registry.media.video import FaceTrack, make_video_engines, thumbnail, track_faces

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "public"
CLIP = DATA / "video" / "v01.mp4"
FPS = 10
SIZE = (320, 240)
STEP = 0.2  # the default sampling step (5 samples a second)


@pytest.fixture(scope="module")
def engines():
    """The engines track_faces was tuned with."""
    return make_video_engines()


@pytest.fixture(scope="module")
def face() -> Image.Image:
    """A frontal face with some margin, 96x96, cut from an enrollment photo."""
    if not DATA.exists():
        pytest.fail(f"the public data set is missing: {DATA} (CI has it beside the project)")
    photo = oriented(Image.open(DATA / "enroll" / "lin_manuel_miranda.png"))
    box = make_engine().detect(photo)[0].box
    return crop(photo, box, margin=0.5, size=96)


def _write(path: Path, frames: Iterable[np.ndarray], *, rotation: int = 0) -> Path:
    """An H.264 MP4 of the RGB frames at FPS, optionally with display rotation metadata."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "18", "preset": "ultrafast"})
        stream.pix_fmt = "yuv420p"
        first = True
        for index, array in enumerate(frames):
            if first:
                stream.height, stream.width = array.shape[:2]
                if rotation:
                    stream.set_display_rotation(rotation)
                first = False
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _background(seed: int, level: int = 110) -> np.ndarray:
    """A fixed noisy backdrop."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(level, 35, (SIZE[1], SIZE[0], 3)), 0, 255).astype(np.uint8)


def _frames(seconds: float, backdrop: Callable[[int], np.ndarray], face: Image.Image | None,
            place: Callable[[int], tuple[int, int] | None]) -> Iterable[np.ndarray]:
    """seconds of frames: the backdrop with sensor noise, the face pasted where place says."""
    rng = np.random.default_rng(7)
    for index in range(round(seconds * FPS)):
        noisy = backdrop(index).astype(np.int16) + rng.integers(-8, 9, (SIZE[1], SIZE[0], 3))
        picture = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
        where = place(index)
        if face is not None and where is not None:
            picture.paste(face, where)
        yield np.asarray(picture)


def _moving(index: int) -> tuple[int, int] | None:
    """Left to right across the frame for the first 2 s, then gone."""
    return (10 + index * 10, 70) if index < 2 * FPS else None


def _check_progress(values: list[int]) -> None:
    assert values[0] == 0 and values[-1] == 100
    assert values == sorted(values) and len(set(values)) == len(values)
    assert all(0 <= v <= 100 for v in values)


def test_a_face_crossing_the_frame_is_one_track(tmp_path, engines, face):
    """3 s at 10 fps: a face moves across a noisy backdrop for 2 s, then the backdrop is empty."""
    backdrop = _background(1)
    path = _write(tmp_path / "moving.mp4", _frames(3, lambda _: backdrop, face, _moving))
    engine, _ = engines
    progress: list[int] = []
    tracks = track_faces(path, engine=engine, progress=progress.append)
    _check_progress(progress)
    assert len(tracks) == 1, tracks
    track = tracks[0]
    ((start, end),) = track.segments
    assert start == pytest.approx(0.0, abs=STEP) and end == pytest.approx(2.0, abs=STEP)
    assert track.start == start and track.end == end
    assert len(track.points) >= 8 and track.encoding is None
    assert [p.t for p in track.points] == sorted(p.t for p in track.points)
    xs = [p.box.x for p in track.points]
    assert xs == sorted(xs) and xs[-1] - xs[0] > 120  # it moves right, in video pixels
    for point in track.points:  # the box holds the pasted face (96 px, the face about half of it)
        x, _ = _moving(round(point.t * FPS))  # type: ignore[misc]
        assert abs(point.box.x + point.box.w / 2 - (x + 48)) < 20
        assert 30 <= point.box.w <= 96 and point.box.right <= SIZE[0] and point.box.bottom <= SIZE[1]
    assert track.best in track.points
    picture = thumbnail(path, track.best)
    assert picture.size == (160, 160)
    assert engine.detect(picture), "the thumbnail shows the face"
    # The same from a binary stream; with the scan engine too nothing changes here.
    with path.open("rb") as stream:
        again = track_faces(stream, engine=engine, scan_engine=engines[1])
        assert [t.segments for t in again] == [track.segments]
        assert thumbnail(stream, track.best, size=64).size == (64, 64)


def test_no_faces_no_tracks(tmp_path, engines):
    backdrop = _background(2)
    path = _write(tmp_path / "empty.mp4", _frames(2, lambda _: backdrop, None, lambda _: None))
    progress: list[int] = []
    assert track_faces(path, engine=engines[0], scan_engine=engines[1], progress=progress.append) == []
    _check_progress(progress)


def test_a_cut_ends_tracks(tmp_path, engines, face):
    """The same face at the same place, but the picture around it cuts to another scene at 1.5 s."""
    dark, light = _background(3, level=60), _background(4, level=190)
    path = _write(tmp_path / "cut.mp4", _frames(3, lambda i: dark if i < 15 else light, face,
                                                 lambda _: (110, 70)))
    tracks = track_faces(path, engine=engines[0])
    assert [len(t.segments) for t in tracks] == [1, 1]
    (first,), (second,) = (t.segments for t in tracks)
    assert first == pytest.approx((0.0, 1.5), abs=0.01)
    assert second == pytest.approx((1.5, 3.0), abs=0.01)


def test_a_face_seen_once_counts_only_when_big(tmp_path, engines, face):
    """A face flashing up in one sampled frame is noise, unless it fills a good part of the frame."""
    backdrop = _background(5)
    small, big = face.resize((72, 72)), face.resize((130, 130))

    def flash(index: int) -> tuple[int, int] | None:
        return (20, 40) if index in (10, 11) else None  # samples are every other frame

    assert track_faces(_write(tmp_path / "small.mp4", _frames(2, lambda _: backdrop, small, flash)),
                       engine=engines[0]) == []
    (track,) = track_faces(_write(tmp_path / "large.mp4", _frames(2, lambda _: backdrop, big, flash)),
                           engine=engines[0])
    assert [p.t for p in track.points] == [1.0]
    ((start, end),) = track.segments
    assert 0.9 <= start <= 1.0 and end == 1.1


def test_a_face_missed_for_a_moment_keeps_its_track(tmp_path, engines, face):
    """Hidden for two samples (0.4 s) the face continues its track; for longer it is a new one,
    unless its encoding shows it is the same face: then one track with two segments."""
    backdrop = _background(6)

    def hidden(start: int, frames: int) -> Callable[[int], tuple[int, int] | None]:
        return lambda i: None if start <= i < start + frames else (110 + i, 70)

    short = _write(tmp_path / "short.mp4", _frames(3, lambda _: backdrop, face, hidden(10, 4)))
    long = _write(tmp_path / "long.mp4", _frames(3, lambda _: backdrop, face, hidden(10, 8)))
    (track,) = track_faces(short, engine=engines[0])
    assert track.segments == ((0.0, 2.9),)  # the last sample is at 2.8 s
    assert len(track.points) == 13
    assert [t.segments for t in track_faces(long, engine=engines[0])] == [((0.0, 0.9),), ((1.7, 2.9),)]
    (joined,) = track_faces(long, engine=engines[0], encodings=True)
    assert joined.segments == ((0.0, 0.9), (1.7, 2.9)) and joined.seen == pytest.approx(2.1)
    assert joined.encoding.shape == (128,) and len(joined.points) == 11


def test_rotated_video_is_tracked_as_shown(tmp_path, engines, face):
    """A phone video stored sideways with rotation metadata: boxes are in the upright picture."""
    backdrop = _background(8)
    upright = list(_frames(2, lambda _: backdrop, face, lambda i: (100 + 5 * i, 60)))
    stored = (np.ascontiguousarray(np.rot90(a, k=-1)) for a in upright)  # turned clockwise
    path = _write(tmp_path / "rotated.mp4", stored, rotation=90)
    (track,) = track_faces(path, engine=engines[0])
    for point in track.points:
        assert point.box.right <= SIZE[0] and point.box.bottom <= SIZE[1]
        assert abs(point.box.y + point.box.h / 2 - 108) < 20
    assert engines[0].detect(thumbnail(path, track.best))


def test_worker_processes_give_the_same_tracks(tmp_path, engines, face):
    backdrop = _background(9)
    path = _write(tmp_path / "moving.mp4", _frames(3, lambda _: backdrop, face, _moving))
    inline = track_faces(path, engine=engines[0], scan_engine=engines[1])
    progress: list[int] = []
    parallel = track_faces(path, engine=engines[0], scan_engine=engines[1], workers=2,
                           progress=progress.append)
    assert [t.points for t in parallel] == [t.points for t in inline]
    _check_progress(progress)


def test_bad_arguments(tmp_path, engines):
    with pytest.raises(ValueError, match="sample_fps"):
        track_faces(tmp_path / "none.mp4", engine=engines[0], sample_fps=0)


# --- the public clip -----------------------------------------------------------------------------

def _segments() -> list[dict]:
    manifest = json.loads((DATA / "manifest.json").read_text())
    (entry,) = [e for e in manifest if e["file"] == "video/v01.mp4"]
    return entry["segments"]


def _overlap(track: FaceTrack, start: float, end: float) -> float:
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in track.segments)


def _enrolled(name: str) -> np.ndarray:
    engine = make_engine()
    photo = oriented(Image.open(next((DATA / "enroll").glob(f"{name}.*"))))
    (found,) = engine.detect(photo)
    return engine.encode(photo, [found.box])[0]


@pytest.fixture(scope="module")
def clip_tracks(engines) -> list[FaceTrack]:
    if not CLIP.exists():
        pytest.fail(f"the public data set is missing: {DATA} (CI has it beside the project)")
    return track_faces(CLIP, engine=engines[0], scan_engine=engines[1], encodings=True, workers=2)


@pytest.mark.slow
def test_clip_the_singer_is_one_track(clip_tracks):
    """Lin-Manuel Miranda, frontal from 2.74 to 7.04 s: one track covering most of it, his face."""
    (shot,) = [s for s in _segments() if s["t"] == [2.74, 7.04]]
    start, end = shot["t"]
    (track,) = [t for t in clip_tracks if _overlap(t, start, end) > 0.1]
    assert _overlap(track, start, end) >= 0.7 * (end - start)
    assert np.linalg.norm(track.encoding - _enrolled("lin_manuel_miranda")) < 0.6
    assert make_engine().detect(thumbnail(CLIP, track.best))


@pytest.mark.slow
def test_clip_the_audience_gives_a_track_per_face(clip_tracks):
    """Barack and Michelle Obama (and two other women) from 7.04 s to the end: a track each."""
    start, end = 7.04, 9.18
    tracks = [t for t in clip_tracks if _overlap(t, start, end) > 0.1]
    assert sum(_overlap(t, start, end) >= 1.0 for t in tracks) >= 2
    assert len(tracks) <= 4


@pytest.mark.slow
def test_clip_tracks_stay_in_their_shot_and_are_not_split(clip_tracks):
    """Each track lies within one shot; the tracks of one shot are all seen at the same time, so
    none is the continuation of another (one person split in two)."""
    shots = [s["t"] for s in _segments()]
    assert shots[-1][1] == pytest.approx(clip_tracks[-1].end, abs=0.1)
    for track in clip_tracks:
        assert any(a - 0.05 <= track.start and track.end <= b + 0.05 for a, b in shots), track.segments
    for a, b in shots:
        inside = [t for t in clip_tracks if t.start >= a - 0.05 and t.end <= b + 0.05]
        for i, one in enumerate(inside):
            for other in inside[i + 1:]:
                assert one.start < other.end and other.start < one.end, (one.segments, other.segments)
