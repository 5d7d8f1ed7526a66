"""Face tracks through a video: who is seen when, with one thumbnail each. Pure code: no Flask, no database.

`track_faces` decodes the video once with PyAV and samples a few frames a second; each sampled
frame is looked at by the face engines of `faces.py`, its faces are linked to those of the samples
before it, and the result is one `FaceTrack` per face per shot: when it is seen (`segments`, in
seconds from the first frame), its detections (`points`, boxes in the pixels of the video as it is
shown), the largest one for a thumbnail (`best`, cut out later by `thumbnail`) and, when asked, its
mean 128-d encoding for matching against enrolled people.

Policy, measured on the public clip video/v01.mp4 (640x360, 29.97 fps, 9.18 s, four shots) and on
a copy scaled to 1280x720, on this 2-core machine (bench/bench_video_faces.py):

* Decoding. Every frame is decoded: H.264 keyframes come every ~2 s, so seeking to 5 samples a
  second would save nothing, and decoding 720p costs 0.3 s for the 9.2 s clip (~3% of the work).
  Only sampled frames are converted to pictures, by swscale straight to the working size. Every
  frame's luma plane is read on a 32x24 grid (no conversion) to find shot cuts. Rotation metadata
  (phones) is applied, so boxes, like photos' after EXIF orientation, are in the upright picture.
* Working size. Sampled frames are scaled so that their shorter side is WORK_SIDE (720) px: a 720p
  frame as it is, a 360p one doubled. Engine sizes (min_face) are therefore in pixels of a 720p
  frame, and what is found does not depend on the resolution the video was encoded at.
* Two engines. dlib's HOG detector (`engine`, every sample) costs ~0.09 s per 720p frame but sees
  only faces turned towards the camera: in v01's audience shot it finds one of four faces. Its CNN
  (`scan_engine`) also finds the three in three-quarter view (Barack and Michelle Obama, a woman
  beside them) but costs ~0.8 s a frame, so it runs on the first sample of each shot and every
  SCAN_EVERY (1) s after that: enough for "everyone who is in it for more than a second", at a
  cost that does not grow with the sampling rate. `make_video_engines` builds this pair: HOG for
  faces from 80 px (11% of the frame height; ~40 px in a 360p video), CNN from 160 px (22%). Each
  halving of the CNN's size would quadruple its cost (at 144 px: 8% more time, the same tracks; at
  180 px v01's fourth audience face is lost). HOG alone takes a third of the time and finds 3 of
  v01's 7 tracks. Neither engine re-detects its faces (`refine`): being found again in the next
  samples is the same check over time, and costs nothing extra.
* Small faces and side views. In v01's wide shot (0-0.67 s) the singer's ~25 px face (360p) is
  found, the pianist's ~20 px one is not: smaller faces need a sharper original. The close-up of
  the pianist from the side (0.67-2.74 s) is found by the CNN at the shot's first frame only (a
  one-sample track, kept for its size); after that too little of his face shows.
* Sampling. SAMPLE_FPS (5) samples a second, restarted at every cut so that a shot's first frame is
  always looked at; segment ends are then within 0.1 s. 4 a second gave the same tracks on v01 for
  10% less time (the CNN scans dominate), with fewer chances for HOG to find a face turning. The
  media issue asked for 2 a second by default; measured on v01 (2 worker processes, 2026-11-25):
  2/s took 10.4 s and split the singer (2.74-7.04 s) into two overlapping tracks, because he moves
  more than NEAR face sizes in half a second; 5/s took 10.6 s and gave one track. So 5 stays the
  default and VIDEO_SAMPLE_FPS can lower it.
* Tracking. A detection continues the track whose last box is nearest (centre distance under 0.6
  face sizes, 0.2 more for every sample the face was missed, at most 1.2; size within 1.5x),
  greedily, nearest first. A track survives MISSES (2) samples without its face, or, once the CNN
  has found it, one scan without it (faces in profile are seen only by the CNN, once a second). A
  cut ends every track: the luma grid changes by CUT_MAD on average and CUT_RATIO times the median
  change of the last second (v01's three cuts change it by 23-27, no other frame by more than 12.5).
  A face seen at only one sample is dropped unless its box is BIG_FACE (a quarter) of the frame's
  shorter side: a chance pattern, or someone passing by.
  With `encodings=True` each track is encoded when it starts and once a second after that (up to
  MAX_ENCODINGS times, ~0.06 s each, on the working frame). Tracks of one shot that do not overlap
  in time and whose mean encodings are within RELINK_DISTANCE become one track with several
  segments (someone who looked away or was hidden for a while). The threshold is strict: in v01 the
  singer's tracks in two shots are 0.37 apart, but two different women of the audience, in
  three-quarter view, 0.39, and a third 0.46 from one of them. Tracks are never joined across
  cuts: who is who from shot to shot is for the matching against enrolled people.
* Damage. A frame that does not decode, or that the decoder marks corrupt (H.264 conceals a
  damaged slice with a guessed picture, in which a face may be missing), and frames that stop
  before the file's packets or header say the video ends, raise `DamagedMedia`
  (media/completeness.py): a stretch nobody looked at is never "nobody there".
* Speed. The CNN holds the GIL (two threads take as long as one; HOG's runs do overlap), so
  `workers=2` detects in two processes, forked from a fork server that has imported this module
  (~1 s to start, once per process; never forked from this process: dlib's thread pool, once used,
  deadlocks a forked child). Decoding, tracking and encoding stay here. On the 720p clip: 1.5 s per
  second of video with one process, 0.9 s with two. Memory stays bounded: at most IN_FLIGHT
  sampled frames per worker are queued, never the whole video.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import statistics
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import IO, Any

import av
import numpy as np
from PIL import Image

from .completeness import (
    DamagedMedia,
    Timeline,
    check_whole,
    only_stream,
    packets_of,
    stream_claims,
)
from .faces import Box, DetectedFace, FaceEngine, crop, make_engine

WORK_SIDE = 720  # sampled frames are scaled to this shorter side before detection
SAMPLE_FPS = 5.0  # samples per second
SCAN_EVERY = 1.0  # seconds between CNN scans within a shot (and one at every shot's start)
HOG_MIN_FACE = 80  # smallest face for the per-sample engine, in working pixels
SCAN_MIN_FACE = 160  # smallest face for the scan engine, in working pixels
MISSES = 2  # samples in a row a face may go unseen and keep its track
SCAN_MISSES = 1  # scans in a row a face found by the scan engine may go unseen and keep its track
BIG_FACE = 0.25  # a face seen once is kept when its box is this much of the frame's shorter side
CUT_MAD = 18.0  # mean absolute luma change (0-255) between two frames that can be a cut...
CUT_RATIO = 3.0  # ...when it is also this many times the median change of the last second
GRID = (24, 32)  # rows, columns of the luma grid compared for cuts
NEAR = 0.6  # centre distance (in face sizes) within which the next sample's face continues a track
NEAR_GROWTH = 0.2  # more distance allowed per further sample the face was not seen
NEAR_MAX = 1.2
SIZE_RATIO = 1.5  # a continuing face's box is at most this much bigger or smaller
ENCODE_EVERY = 1.0  # seconds between encodings of one track
MAX_ENCODINGS = 8
RELINK_DISTANCE = 0.35  # mean encodings this close are one person (see the module docstring)
IN_FLIGHT = 4  # samples queued per worker process

Source = str | os.PathLike[str] | IO[bytes]
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class TrackPoint:
    """One detection of a tracked face: seconds from the start of the video, box in video pixels."""

    t: float
    box: Box


@dataclass(frozen=True, slots=True)
class FaceTrack:
    """One face followed through one shot (or, with encodings, through returns within the shot)."""

    points: tuple[TrackPoint, ...]  # sampled detections, time-ordered
    segments: tuple[tuple[float, float], ...]  # merged [start_s, end_s] intervals where it is seen
    best: TrackPoint  # the largest detection not cut by the frame's edge, for a thumbnail
    encoding: np.ndarray | None = field(default=None, compare=False)  # mean 128-d, with encodings=True

    @property
    def start(self) -> float:
        """When the face is first seen."""
        return self.segments[0][0]

    @property
    def end(self) -> float:
        """When the face is last seen."""
        return self.segments[-1][1]

    @property
    def seen(self) -> float:
        """Seconds the face is seen, in total."""
        return sum(end - start for start, end in self.segments)


def make_video_engines(*, min_face: int = HOG_MIN_FACE, scan_min_face: int = SCAN_MIN_FACE,
                       scan: bool = True) -> tuple[FaceEngine, FaceEngine | None]:
    """The per-sample engine (HOG) and the scan engine (CNN) this module's policy was measured with.

    Sizes are in working pixels (frames scaled to a 720 px shorter side). No re-detection
    (refine): a face must be found again in the next samples to count, the same check over time.
    One thread each: use `workers` in track_faces for the second core.
    """
    engine = make_engine(model="hog", min_face=min_face, refine=False, threads=1)
    scanner = make_engine(model="cnn", min_face=scan_min_face, refine=False, threads=1) if scan else None
    return engine, scanner


# --- decoding --------------------------------------------------------------------------------------

@contextmanager
def _opened(source: Source) -> Iterator[Any]:
    """The container of a path or binary stream (read from its start), closed afterwards."""
    if hasattr(source, "read"):
        if source.seekable():  # type: ignore[union-attr]
            source.seek(0)  # type: ignore[union-attr]
        container = av.open(source, mode="r")
    else:
        container = av.open(os.fspath(source), mode="r")  # type: ignore[arg-type]
    with container:
        yield container


def _video_stream(container: Any) -> Any:
    """The video stream to look at: the only one that is not cover art (DamagedMedia for more)."""
    pictures = [s for s in container.streams.video
                if not s.disposition & av.stream.Disposition.attached_pic]
    if not pictures:
        raise ValueError("the file has no video stream")
    stream = only_stream(pictures, code="video_tracks")
    stream.thread_type = "AUTO"
    return stream


def _origin(stream: Any) -> float:
    """The stream's first timestamp, in seconds: times in tracks count from there."""
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _frame_rate(stream: Any) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 25.0


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _rotation(frame: Any) -> int:
    """The display rotation, counter-clockwise, as one of 0, 90, 180, 270."""
    return round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4 * 90


_TRANSPOSE = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
              270: Image.Transpose.ROTATE_270}


def _display_size(frame: Any) -> tuple[int, int]:
    return (frame.height, frame.width) if _rotation(frame) in (90, 270) else (frame.width, frame.height)


def _picture(frame: Any, width: int | None = None, height: int | None = None) -> Image.Image:
    """The frame as shown (rotation applied), RGB, scaled by swscale to width x height as stored."""
    if width is None or height is None:
        image = frame.to_image()
    else:
        image = frame.reformat(width=width, height=height, format="rgb24",
                               interpolation="BILINEAR").to_image()
    rotation = _rotation(frame)
    return image.transpose(_TRANSPOSE[rotation]) if rotation else image


_LUMA_FIRST = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p",
               "yuvj440p", "yuv411p", "yuv410p", "nv12", "nv21", "nv16", "gray", "yuva420p"}


def _luma_grid(frame: Any) -> np.ndarray:
    """Brightness on a coarse grid, for cut detection: read from the luma plane, no conversion."""
    rows, cols = GRID
    if frame.format.name in _LUMA_FIRST:
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:frame.height, :frame.width]
        ys = np.linspace(0, frame.height - 1, rows).astype(np.intp)
        xs = np.linspace(0, frame.width - 1, cols).astype(np.intp)
        return luma[np.ix_(ys, xs)].astype(np.float32)
    return frame.reformat(width=cols, height=rows, format="gray").to_ndarray().astype(np.float32)


@dataclass(slots=True)
class _Sample:
    """A sampled frame at working size, with what the tracker needs to know about it."""

    t: float
    shot: int
    shot_start: float
    scan: bool
    image: Image.Image  # working size, as shown
    size: tuple[int, int]  # the frame as shown, in video pixels


@dataclass(slots=True)
class _Clock:
    """Where the decoding is: for progress, and the end of the last shot."""

    duration: float | None
    end: float = 0.0


def _samples(container: Any, *, sample_fps: float, scan_every: float, clock: _Clock) -> Iterator[_Sample]:
    """Decode every frame, find cuts, and yield the sampled frames converted to working size."""
    stream = _video_stream(container)
    origin = _origin(stream)
    frame_time = 1 / _frame_rate(stream)
    step = 1 / sample_fps
    previous: np.ndarray | None = None
    changes: deque[float] = deque(maxlen=max(3, round(1 / frame_time)))
    shot, shot_start = -1, 0.0
    next_sample = next_scan = 0.0
    t = -frame_time
    claimed_s, claimed_frames = stream_claims(container, stream)
    timeline = Timeline()
    for frame in _decoded(container, stream, timeline):
        t = max(float(frame.time) - origin, 0.0) if frame.time is not None else t + frame_time
        clock.end = t + frame_time
        timeline.frame(t, t + frame_time)
        grid = _luma_grid(frame)
        cut = previous is None
        if previous is not None:
            change = float(np.abs(grid - previous).mean())
            cut = change >= CUT_MAD and (not changes or change >= CUT_RATIO * statistics.median(changes))
            changes.append(change)
        previous = grid
        if cut:
            shot, shot_start = shot + 1, t
            next_sample = next_scan = t
        if t < next_sample - frame_time / 2:
            continue
        scan = t >= next_scan - frame_time / 2
        width, height = _display_size(frame)
        k = WORK_SIDE / min(width, height)
        work = (max(2, round(width * k)), max(2, round(height * k)))
        stored = work if (width, height) == (frame.width, frame.height) else (work[1], work[0])
        yield _Sample(t, shot, shot_start, scan, _picture(frame, *stored), (width, height))
        while next_sample <= t + frame_time / 2:
            next_sample += step
        if scan:
            next_scan = t + scan_every
    check_whole(kind="frames", timeline=timeline, claimed_s=claimed_s, claimed_frames=claimed_frames)


def _decoded(container: Any, stream: Any, timeline: Timeline) -> Iterator[Any]:
    """The stream's frames, counted; a packet that does not decode or a corrupt frame raises."""
    try:
        for packet in container.demux(stream):
            timeline.packet(packet)
            for frame in packet.decode():
                if frame.is_corrupt:
                    raise DamagedMedia("frames_damaged", f"a damaged frame at {_at(frame, timeline)}")
                yield frame
    except av.error.FFmpegError as error:
        raise DamagedMedia("frames_damaged", f"decoding stopped at {_at(None, timeline)}: "
                                             f"{error.strerror or type(error).__name__}") from error


def _at(frame: Any, timeline: Timeline) -> str:
    """Where a damaged frame is, for people: its time, else after the frames decoded so far."""
    if frame is not None and frame.time is not None:
        return f"{float(frame.time):.2f} s"
    return f"frame {timeline.frames + 1}"


def video_seconds(source: Source) -> float | None:
    """How long the first video stream lasts as its packets say (headers can lie); None if unsaid."""
    with _opened(source) as container:
        return packets_of(container, _video_stream(container)).packets_s or None


# --- detection -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Found:
    """A face in a sample, box in working pixels; which engines found it."""

    box: Box
    score: float | None
    fast: bool
    scan: bool


def _same_face(a: Box, b: Box) -> bool:
    inter = a.intersection(b)
    return inter > 0 and (a.iou(b) >= 0.3 or inter / min(a.area, b.area) >= 0.6)


@dataclass(frozen=True, slots=True)
class _Detector:
    """Both engines on one sample; picklable (for worker processes) when the engines are."""

    engine: FaceEngine
    scan_engine: FaceEngine | None

    def __call__(self, image: Image.Image, scan: bool) -> list[_Found]:
        """Every face the per-sample engine finds, and those only the scan engine finds."""
        found = [_Found(f.box, f.score, True, False) for f in self.engine.detect(image)]
        if scan and self.scan_engine is not None:
            extra: list[DetectedFace] = []
            for face in self.scan_engine.detect(image):
                same = next((i for i, f in enumerate(found) if _same_face(f.box, face.box)), None)
                if same is None:
                    extra.append(face)
                else:  # keep the per-sample engine's box: the track's boxes stay comparable
                    found[same] = _Found(found[same].box, found[same].score, True, True)
            found.extend(_Found(f.box, f.score, False, True) for f in extra)
        return found


_WORKER: _Detector | None = None

Detect = Callable[[Iterator[_Sample]], Iterator[tuple[_Sample, list[_Found]]]]


def _start_worker(detector: _Detector) -> None:
    global _WORKER
    _WORKER = detector


def _ready() -> None:
    """Nothing: submitted once per worker, to start them all."""


def _detect_in_worker(image: Image.Image, scan: bool) -> list[_Found]:
    assert _WORKER is not None
    return _WORKER(image, scan)


def _context() -> Any:
    """Worker processes forked from a fork server that has imported this module (spawned elsewhere).

    Never forked from this process: dlib's thread pool, once used, deadlocks a forked child. The
    server starts once per process (~1 s) and forks each worker with the models' code loaded; it
    does not import `__main__`, so scripts need no `if __name__ == "__main__"` guard.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


@contextmanager
def _detection(detector: _Detector, workers: int) -> Iterator[Detect]:
    """A function that pairs each sample with its faces, in order, detected in `workers` processes.

    The processes start here, before the video is opened, so that decoding need not wait for them.
    """
    if workers <= 1:
        yield lambda samples: ((sample, detector(sample.image, sample.scan)) for sample in samples)
        return
    with ProcessPoolExecutor(workers, mp_context=_context(), initializer=_start_worker,
                             initargs=(detector,)) as pool:
        for future in [pool.submit(_ready) for _ in range(workers)]:
            future.result()

        def detect(samples: Iterator[_Sample]) -> Iterator[tuple[_Sample, list[_Found]]]:
            pending: deque[tuple[_Sample, Future[list[_Found]]]] = deque()
            try:
                for sample in samples:
                    pending.append((sample, pool.submit(_detect_in_worker, sample.image, sample.scan)))
                    if len(pending) >= IN_FLIGHT * workers:
                        done, future = pending.popleft()
                        yield done, future.result()
                while pending:
                    done, future = pending.popleft()
                    yield done, future.result()
            finally:
                for _, future in pending:
                    future.cancel()

        yield detect


# --- tracking --------------------------------------------------------------------------------------

def _scaled(box: Box, fx: float, fy: float, width: int, height: int) -> Box:
    x0, y0 = max(round(box.x * fx), 0), max(round(box.y * fy), 0)
    x1, y1 = min(round(box.right * fx), width), min(round(box.bottom * fy), height)
    return Box(x0, y0, max(x1 - x0, 1), max(y1 - y0, 1))


def _centre(box: Box) -> tuple[float, float]:
    return box.x + box.w / 2, box.y + box.h / 2


@dataclass(slots=True)
class _Track:
    shot: int
    shot_start: float
    points: list[TrackPoint]
    frame_size: tuple[int, int]
    fast: bool = False  # found by the per-sample engine at least once
    scanned: bool = False  # found by the scan engine at least once
    misses: int = 0  # samples since the face was last seen
    scan_misses: int = 0  # scan samples since the face was last seen
    encodings: list[np.ndarray] = field(default_factory=list)
    encoded_at: float = -math.inf

    @property
    def last(self) -> TrackPoint:
        return self.points[-1]


class _Tracker:
    """Links each sample's faces to the tracks of the samples before it."""

    def __init__(self, *, step: float) -> None:
        self.step = step
        self.active: list[_Track] = []
        self.closed: list[tuple[_Track, float]] = []  # with the end of its shot, when known

    def add(self, sample: _Sample, found: Sequence[_Found]) -> list[tuple[_Track, Box]]:
        """Link a sample's faces; returns each track seen in it with its box in working pixels."""
        if self.active and self.active[0].shot != sample.shot:
            for track in self.active:
                self.closed.append((track, sample.shot_start))
            self.active = []
        width, height = sample.size
        fx, fy = width / sample.image.width, height / sample.image.height
        boxes = [_scaled(f.box, fx, fy, width, height) for f in found]
        pairs = []
        for ti, track in enumerate(self.active):
            for fi, box in enumerate(boxes):
                cost = self._distance(track, box, sample.t)
                if cost is not None:
                    pairs.append((cost, ti, fi))
        taken_tracks: set[int] = set()
        taken_faces: set[int] = set()
        seen: list[tuple[_Track, Box]] = []
        for _, ti, fi in sorted(pairs):
            if ti in taken_tracks or fi in taken_faces:
                continue
            taken_tracks.add(ti)
            taken_faces.add(fi)
            track = self.active[ti]
            self._extend(track, sample.t, boxes[fi], found[fi])
            seen.append((track, found[fi].box))
        for fi, box in enumerate(boxes):
            if fi not in taken_faces:
                track = _Track(sample.shot, sample.shot_start, [], sample.size)
                self._extend(track, sample.t, box, found[fi])
                self.active.append(track)
                seen.append((track, found[fi].box))
        matched = {id(track) for track, _ in seen}
        still = []
        for track in self.active:
            if id(track) not in matched:
                track.misses += 1
                track.scan_misses += sample.scan
            if ((track.fast and track.misses <= MISSES)
                    or (track.scanned and track.scan_misses <= SCAN_MISSES)):
                still.append(track)
            else:
                self.closed.append((track, math.inf))
        self.active = still
        return seen

    def finish(self, end: float) -> list[tuple[_Track, float]]:
        """Every track with the end of its shot (inf when it ended before); the video ends at end."""
        self.closed.extend((track, end) for track in self.active)
        self.active = []
        return self.closed

    def _distance(self, track: _Track, box: Box, t: float) -> float | None:
        """How far (in face sizes) box is from where the track's face was; None when too far."""
        last = track.last.box
        if not 1 / SIZE_RATIO <= box.h / last.h <= SIZE_RATIO:
            return None
        missed = max(round((t - track.last.t) / self.step) - 1, 0)
        limit = min(NEAR + NEAR_GROWTH * missed, NEAR_MAX)
        (ax, ay), (bx, by) = _centre(last), _centre(box)
        distance = math.hypot(ax - bx, ay - by) / math.sqrt(last.w * last.h)
        return distance if distance <= limit else None

    @staticmethod
    def _extend(track: _Track, t: float, box: Box, found: _Found) -> None:
        track.points.append(TrackPoint(round(t, 3), box))
        track.fast |= found.fast
        track.scanned |= found.scan
        track.misses = track.scan_misses = 0


def _segments(track: _Track, shot_end: float, step: float, gap: float) -> list[tuple[float, float]]:
    """The track's detections widened by half a step, merged where less than gap apart."""
    out: list[list[float]] = []
    for point in track.points:
        start = max(point.t - step / 2, track.shot_start)
        end = min(point.t + step / 2, shot_end)
        if out and start - out[-1][1] <= gap:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(round(a, 3), round(b, 3)) for a, b in out]


def _best(track: _Track) -> TrackPoint:
    """The largest detection, preferring those not touching the frame's edge."""
    width, height = track.frame_size

    def key(point: TrackPoint) -> tuple[bool, int]:
        b = point.box
        inside = b.x > 0 and b.y > 0 and b.right < width and b.bottom < height
        return inside, b.area

    return max(track.points, key=key)


def _kept(track: _Track) -> bool:
    """Seen at two samples or more, or big enough to count at one."""
    if len(track.points) > 1:
        return True
    box = track.points[0].box
    return max(box.w, box.h) >= BIG_FACE * min(track.frame_size)


def _relink(tracks: list[FaceTrack], shots: list[int]) -> tuple[list[FaceTrack], list[int]]:
    """Join tracks of one shot that never overlap in time and whose encodings are close."""
    merged = True
    while merged:
        merged = False
        candidates = []
        for i, a in enumerate(tracks):
            for j in range(i + 1, len(tracks)):
                b = tracks[j]
                if shots[i] != shots[j] or a.encoding is None or b.encoding is None:
                    continue
                if a.end <= b.start or b.end <= a.start:
                    distance = float(np.linalg.norm(a.encoding - b.encoding))
                    if distance < RELINK_DISTANCE:
                        candidates.append((distance, i, j))
        if candidates:
            _, i, j = min(candidates)
            a, b = tracks[i], tracks[j]
            points = tuple(sorted((*a.points, *b.points), key=lambda p: p.t))
            segments = tuple(sorted((*a.segments, *b.segments)))
            best = max((a.best, b.best), key=lambda p: p.box.area)
            na, nb = len(a.points), len(b.points)
            assert a.encoding is not None and b.encoding is not None
            encoding = (a.encoding * na + b.encoding * nb) / (na + nb)
            tracks[i] = FaceTrack(points, segments, best, encoding)
            del tracks[j], shots[j]
            merged = True
    return tracks, shots


# --- the API ---------------------------------------------------------------------------------------

def track_faces(source: Source, *, engine: FaceEngine, scan_engine: FaceEngine | None = None,
                sample_fps: float = SAMPLE_FPS, scan_every: float = SCAN_EVERY, encodings: bool = False,
                progress: Progress | None = None, workers: int = 1,
                duration: float | None = None) -> list[FaceTrack]:
    """The faces in a video, one track per face per shot, ordered by when they are first seen.

    source is a path or a binary stream (read from its start). `engine` looks at every sampled
    frame, `scan_engine` (optional) at the first of each shot and every `scan_every` seconds;
    see the module's docstring for the policy and `make_video_engines` for the measured pair.
    `progress` is called with 0..100 as the video is processed (100 exactly once, at the end).
    With `workers` > 1 detection runs in that many processes, so the engines must pickle.
    `duration` (seconds, e.g. from `video_seconds`) paces the progress instead of the header's
    claim, which can be absurd. A video that does not decode whole raises DamagedMedia.
    """
    if sample_fps <= 0 or scan_every <= 0 or workers < 1:
        raise ValueError("sample_fps and scan_every must be positive and workers at least 1")
    step = 1 / sample_fps
    tracker = _Tracker(step=step)
    reported = -1

    def report(value: int) -> None:
        nonlocal reported
        if progress is not None and value > reported:
            reported = value
            progress(value)

    report(0)
    with _detection(_Detector(engine, scan_engine), workers) as detect, _opened(source) as container:
        clock = _Clock(duration or _duration(container, _video_stream(container)))
        samples = _samples(container, sample_fps=sample_fps, scan_every=scan_every, clock=clock)
        for sample, found in detect(samples):
            seen = tracker.add(sample, found)
            if encodings:
                _encode(engine, sample, seen)
            if clock.duration:
                report(min(int(100 * sample.t / clock.duration), 99))
    out: list[FaceTrack] = []
    shots: list[int] = []
    gap = (SCAN_MISSES + 1) * scan_every + step  # anything linked is one segment
    for track, shot_end in tracker.finish(clock.end):
        if not _kept(track):
            continue
        encoding = np.mean(track.encodings, axis=0) if track.encodings else None
        segments = _segments(track, shot_end, step, gap)
        out.append(FaceTrack(tuple(track.points), tuple(segments), _best(track), encoding))
        shots.append(track.shot)
    if encodings:
        out, shots = _relink(out, shots)
    out.sort(key=lambda tr: (tr.start, tr.points[0].box.x))
    report(100)
    return out


def _encode(engine: FaceEngine, sample: _Sample, seen: list[tuple[_Track, Box]]) -> None:
    """Encode the tracks due for it (new, or not encoded for ENCODE_EVERY seconds)."""
    due = [(track, box) for track, box in seen
           if len(track.encodings) < MAX_ENCODINGS and sample.t - track.encoded_at >= ENCODE_EVERY]
    if not due:
        return
    for (track, _), vector in zip(due, engine.encode(sample.image, [box for _, box in due]), strict=True):
        track.encodings.append(vector)
        track.encoded_at = sample.t


def thumbnail(source: Source, point: TrackPoint, *, size: int = 160) -> Image.Image:
    """A square crop of the face at point, from the frame shown at point.t, size x size px."""
    with _opened(source) as container:
        stream = _video_stream(container)
        origin = _origin(stream)
        half = 0.5 / _frame_rate(stream)
        target = origin + point.t
        with suppress(av.error.FFmpegError):  # not seekable: decode from the start
            container.seek(max(int(target / stream.time_base), 0), stream=stream, backward=True)
        chosen = None
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            if chosen is not None and frame.time > target + half:
                break
            chosen = frame
            if frame.time >= target - half:
                break
        if chosen is None:
            raise ValueError(f"no frame at {point.t} s")
        image = _picture(chosen)
    return crop(image, point.box, size=size)
