"""Face tracks through a video: seconds of processing per second of 720p video, and against decoding.

Uses the public clip video/v01.mp4 (read in place); when it is not 720p, a copy scaled to 1280x720
is encoded into a temporary folder first (not timed).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av

from bench.common import best_of, report, video_size
from consent_registry.media.video import make_video_engines, track_faces

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "public" / "video" / "v01.mp4"
SIZE = (1280, 720)


def _scaled_copy(source: Path, folder: Path) -> Path:
    """The video's picture re-encoded at 1280x720 (H.264, same frame rate, no sound)."""
    target = folder / "v01_720p.mp4"
    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or Fraction(30)
        out = dst.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "fast"})
        out.width, out.height, out.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        for index, frame in enumerate(src.decode(stream)):
            scaled = frame.reformat(width=SIZE[0], height=SIZE[1], format="yuv420p")
            scaled.pts, scaled.time_base = index, Fraction(1) / rate
            for packet in out.encode(scaled):
                dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)
    return target


def _decode(path: Path) -> None:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            pass


def _once(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run() -> None:
    """Real-time factor of track_faces on a 720p clip, with one and two worker processes."""
    with tempfile.TemporaryDirectory() as tmp:
        width, height, seconds = video_size(CLIP)
        clip = CLIP if (width, height) == SIZE else _scaled_copy(CLIP, Path(tmp))
        width, height, seconds = video_size(clip)
        engine, scan_engine = make_video_engines()
        decoding = best_of(lambda: _decode(clip), repeat=3)
        for workers, encodings in ((2, False), (1, False), (2, True)):
            elapsed, tracks = _once(lambda w=workers, e=encodings: track_faces(
                clip, engine=engine, scan_engine=scan_engine, workers=w, encodings=e))
            name = f"video faces: {width}x{height}, {workers} worker{'s' * (workers > 1)}"
            name += ", +encodings" if encodings else ""
            report(f"{name} ({len(tracks)} tracks)", elapsed, seconds, "seconds of video (real-time factor)")
            report(name, elapsed, decoding, "decoding alone")
