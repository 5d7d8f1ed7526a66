"""Face detection and 128-d encodings for photos: pure functions over PIL images, no Flask, no database.

In the style of Immich's machine-learning service: a tiny `FaceEngine` protocol with typed outputs,
one factory. `make_engine()` gives dlib's HOG detector ("hog", the default) or its CNN ("cnn")
behind the resolution policy below, and dlib's ResNet for encodings (as face_recognition does: the
5-landmark aligned 150 px chip, no jitter). `oriented()` applies EXIF orientation; every box is in
the pixels of the oriented photo. `crop()` cuts a small square for display. Engines are safe to
share between threads (each thread borrows its own dlib models) and deterministic.

Resolution policy (measured on this 2-core machine with the public photos, shared/data/public)
-------------------------------------------------------------------------------------------------
- What the detectors see. dlib's HOG detector scans 80x80 windows over an image pyramid (steps of
  1.2x) and reliably finds faces whose box is 60-64 px at the scanned scale (57 px usually, 45-54 px
  rarely); CNN from ~72 px. Its boxes come in the pyramid's 1.2x steps (the smallest is 73 px), so a
  face near the smallest size is boxed up to a tenth of its size off. HOG costs ~0.06 s per scanned
  megapixel on one core (~130 MB per 16 MP scanned); CNN ~6 s and ~950 MB per scanned megapixel.
  dlib releases the GIL: runs go to `threads` threads.
- Fine scale. To find faces down to `min_face` (30 px) the photo is scanned at 64/min_face = 2.13x
  (CNN 72/min_face); in a 12 MP photo that is ~55 MP scanned. At 2.0x (the plain upsample-once
  scan) 28-30 px faces were missed (21 and 28 of 32 in the synthetic test below), at 2.13x none.
- Small photos (fine scan under 2 MP, e.g. 500x375) are scanned whole at 2.13x and again half a
  pyramid step finer (2.34x): a weak face that falls between two detector sizes in one scan sits on
  one in the other (g05's 44 px face is found at 2.0, 2.1 and 2.3x but not at 2.2x).
- Other photos: whichever of one whole scan or coarse-plus-tiles the threads finish soonest. The
  coarse pass scans the whole photo reduced to at most `max_side` (or half or a quarter of that) for
  the large faces; overlapping tiles of the full-resolution photo are scanned at 2.13x for the small
  ones. Each tile scans at most `tile`**2 px (HOG 4096**2, ~130 MB; CNN 640**2, ~400 MB); tiles
  overlap by 1.875x the biggest face the coarse pass may miss, so each such face lies whole, with the
  detector's margin, in some tile; a detection touching a seam is dropped (the neighbour holds it
  whole). CNN's small tiles add intermediate levels. A 4000x3000 photo: 0.5x whole + 2x2 tiles at
  2.13x, 67 MP scanned, ~35 MP on the busier thread.
- Merge: boxes of one face (IoU >= 0.3, or 60% of the smaller inside the larger) keep the best score.
- Refine and verify: each face is re-detected in its neighbourhood (0.6 face sizes around) scaled so
  it is 1.5x the smallest detectable size, at three scales a third of a pyramid step apart; the boxes
  found are averaged, weighted by score. Box edges of 28-36 px faces then land within 2 px of where
  they belong (median 1-2 px; median 3-5 px, up to 10, without). Where HOG is unsure (its three
  re-detection scores sum to under 1.5, 0 where not found) the CNN looks once at the neighbourhood
  (face at ~100 px, ~0.3 s CPU) and the face is kept only if the CNN sees it too. HOG's scores cannot
  tell these apart: in smooth upscaled photos it fires on 40 px specks (12 MP g04 and p003: sums 0.22
  and 0.29) about as strongly as on g05's weakest real face (0.31) or a 360 px face in 12 MP g05
  (0.22); the CNN gives every real face in the public photos ~1.05 and none of the specks anything.
  The public and synthetic photos below needed 8 such looks in all.
- Finally boxes are clipped to the photo (dropped when less than half is inside, or under 0.7x
  min_face) and sorted left to right.

Measured
- Public photos as they are: groups 19 of 19 counted faces, 0 false; each probe exactly one face,
  the two photos without people none. Scaled up (LANCZOS) to 12 MP: the same (groups also at 4, 6, 9
  and 16 MP; probes at 12 MP).
- Synthetic 4000x3000 photos (plain, noise, two upscaled photos without people; 30 pasted enrolment
  faces of 26-46 px and a 600 px face each): 26 px 20 of 32 found, 28-46 px 32 of 32, none false.
- Time per 12 MP photo: detect ~4.2 s CPU, ~2.2 s wall with 2 threads (+ ~0.07 s per face to
  encode), ~570 MB at peak beyond the photo; the plain way (face_recognition's face_locations +
  face_encodings, upsampling once) ~3.0 s on one thread, ~520 MB. bench/bench_photo_faces.py, median
  seconds per photo, ours/plain: the 31 public photos 0.26/0.25 (1.04x), 13 of them at 12 MP
  2.35/3.03 (0.78x); faces found 42/42 as they are (all counted), 24/25 at 12 MP (all 24 counted;
  plain's 25th is false). On a busy machine the 2-thread ratio suffers first.
- Encodings: within 0.02-0.10 of face_recognition's for the same box (the face region is scaled to
  at most 300 px first); probes lie 0.24-0.52 from their own enrolment and 0.69 or more from the
  others; the two non-enrolled people 0.75 or more from everyone.
"""

from __future__ import annotations

import itertools
import math
import queue
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageOps

ORIENTATION = 0x0112  # EXIF tag
REFINE_PAD = 0.6  # context around a face when re-detecting it, in face sizes
REFINE_SIZE = 1.5  # face size when re-detecting, in multiples of the detector's smallest face
REACH = 1.875  # tile overlap, in multiples of the biggest face a tile must hold whole
PASS_OVERHEAD = 2e5  # fixed cost of one detector run, in scanned pixels
HALF_STEP = 1.2**0.5  # half of a step of dlib's image pyramid
SECOND_PHASE_LIMIT = 2e6  # scanned pixels under which a photo is also scanned half a step finer
COARSE_CHOICES = 4  # coarse scales tried: the largest max_side allows, then halves of it
CONFIRM_BELOW = 1.5  # re-detection scores (summed, 0 where not found) under which HOG asks the CNN
CONFIRM_SIZE = 1.4  # face size for the CNN's look, in multiples of its smallest face
REFINE_STEPS = 3  # scales per pyramid step (1.2x) when re-detecting


@dataclass(frozen=True, slots=True)
class Box:
    """A face box in original image pixels (after EXIF orientation): left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        """One past the last column."""
        return self.x + self.w

    @property
    def bottom(self) -> int:
        """One past the last row."""
        return self.y + self.h

    @property
    def area(self) -> int:
        """Width times height."""
        return self.w * self.h

    def intersection(self, other: Box) -> int:
        """The area both boxes cover."""
        w = min(self.right, other.right) - max(self.x, other.x)
        h = min(self.bottom, other.bottom) - max(self.y, other.y)
        return max(w, 0) * max(h, 0)

    def iou(self, other: Box) -> float:
        """Intersection over union, 0 for disjoint boxes."""
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union else 0.0


@dataclass(frozen=True, slots=True)
class DetectedFace:
    """One face found in a photo; score is the detector's confidence where the model gives one."""

    box: Box
    score: float | None


@runtime_checkable
class FaceEngine(Protocol):
    """What the rest of the service needs from a face model."""

    def detect(self, image: Image.Image) -> list[DetectedFace]:
        """The faces in the photo, boxes in original pixels after EXIF orientation."""
        ...

    def encode(self, image: Image.Image, boxes: Sequence[Box]) -> list[np.ndarray]:
        """One 128-d encoding per box, in the order given."""
        ...


def oriented(image: Image.Image) -> Image.Image:
    """The photo as it is meant to be seen: EXIF orientation applied, RGB.

    Returns the same object when there is nothing to do (no orientation tag, already RGB).
    """
    if image.getexif().get(ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def crop(image: Image.Image, box: Box, *, margin: float = 0.25, size: int = 160) -> Image.Image:
    """A small square RGB crop of one face for display: the box plus `margin` on every side.

    The square is centred on the box; parts outside the photo are filled with grey.
    """
    image = oriented(image)
    side = max(box.w, box.h) * (1 + 2 * margin)
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    side_px = max(round(side), 1)
    region = (left, top, left + side_px, top + side_px)
    inside = (max(left, 0), max(top, 0), min(left + side_px, image.width), min(top + side_px, image.height))
    square = Image.new("RGB", (side_px, side_px), (128, 128, 128))
    if inside[2] > inside[0] and inside[3] > inside[1]:
        square.paste(image.crop(inside), (inside[0] - region[0], inside[1] - region[1]))
    return square.resize((size, size), Image.Resampling.LANCZOS)


# --- models ----------------------------------------------------------------------------------------

class _Pool:
    """dlib models are not safe to share between threads: one instance per concurrent user."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        """Create instances lazily with factory."""
        self._factory = factory
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()

    @contextmanager
    def get(self) -> Iterator[Any]:
        """Borrow an instance for the duration of the block."""
        try:
            model = self._free.get_nowait()
        except queue.Empty:
            model = self._factory()
        try:
            yield model
        finally:
            self._free.put(model)


def _model_path(name: str) -> str:
    """Where face_recognition_models keeps a model file."""
    import face_recognition_models

    return getattr(face_recognition_models, name)()


def _hog_factory() -> Any:
    """dlib's HOG frontal face detector."""
    import dlib

    return dlib.get_frontal_face_detector()


def _cnn_factory() -> Any:
    """dlib's CNN (MMOD) face detector."""
    import dlib

    return dlib.cnn_face_detection_model_v1(_model_path("cnn_face_detector_model_location"))


def _shape_factory() -> Any:
    """dlib's 5-landmark shape predictor (face_recognition's default)."""
    import dlib

    return dlib.shape_predictor(_model_path("pose_predictor_five_point_model_location"))


def _encoder_factory() -> Any:
    """dlib's ResNet face encoder (128-d)."""
    import dlib

    return dlib.face_recognition_model_v1(_model_path("face_recognition_model_location"))


_HOG = _Pool(_hog_factory)
_CNN = _Pool(_cnn_factory)
_SHAPE = _Pool(_shape_factory)
_ENCODER = _Pool(_encoder_factory)

Raw = tuple[float, float, float, float, float]  # left, top, right, bottom, score


def _run_hog(array: np.ndarray) -> list[Raw]:
    """HOG detections at 1:1 (dlib's threshold 0), right and bottom exclusive."""
    with _HOG.get() as detector:
        rects, scores, _ = detector.run(array, 0, 0.0)
    return [(r.left(), r.top(), r.right() + 1, r.bottom() + 1, s) for r, s in zip(rects, scores, strict=True)]


def _run_cnn(array: np.ndarray) -> list[Raw]:
    """CNN detections at 1:1, right and bottom exclusive."""
    with _CNN.get() as detector:
        found = detector(array, 0)
    return [(d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1, d.confidence)
            for d in found]


@dataclass(frozen=True, slots=True)
class _Model:
    """A detector and the two numbers the policy needs about it."""

    run: Callable[[np.ndarray], list[Raw]]
    smallest: float  # box height (px) of the smallest face found reliably at 1:1, with some margin
    tile: int  # default tile side (scanned px): bounds the memory of one run
    confirm: bool  # whether the CNN confirms faces this detector is unsure of


_MODELS = {"hog": _Model(_run_hog, 64.0, 4096, True), "cnn": _Model(_run_cnn, 72.0, 640, False)}


# --- the engine ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Pass:
    """One detector run: a region of the photo (original pixels) scanned at a scale."""

    region: tuple[int, int, int, int]  # left, top, right, bottom
    scale: float
    seams: tuple[bool, bool, bool, bool]  # left, top, right, bottom: a tile seam, not the photo's edge

    @property
    def cost(self) -> float:
        """Scanned pixels plus a fixed cost per run (crop, resize, detector set-up)."""
        left, top, right, bottom = self.region
        return (right - left) * (bottom - top) * self.scale**2 + PASS_OVERHEAD


class _DlibEngine:
    """dlib's HOG or CNN face detector behind the resolution policy described above."""

    def __init__(self, model: _Model, *, max_side: int, min_face: int, tile: int, threads: int,
                 refine: bool) -> None:
        """Keep the settings; models load on first use."""
        self.model = model
        self.max_side = max_side
        self.min_face = min_face
        self.tile = tile
        self.threads = threads
        self.refine = refine
        self.fine = model.smallest / min_face  # the scale at which a min_face face is detectable

    # planning

    def plan(self, width: int, height: int) -> list[_Pass]:
        """The detector runs that together find faces from min_face up to the whole photo.

        A small photo is scanned whole at the fine scale and again half a pyramid step finer: a face
        that falls between two of the detector's sizes in one scan sits on one in the other. Other
        photos get whichever of one whole scan or coarse-plus-tiles the threads finish soonest.
        Biggest runs first, so that the threads finish together.
        """
        whole = _Pass((0, 0, width, height), self.fine, (False, False, False, False))
        if whole.cost * HALF_STEP**2 <= min(SECOND_PHASE_LIMIT, self.tile**2):
            return [_Pass(whole.region, self.fine * HALF_STEP, whole.seams), whole]
        options = [[whole]] if whole.cost - PASS_OVERHEAD <= self.tile**2 else []
        coarsest = min(self.fine, self.max_side / max(width, height), self.tile / math.sqrt(width * height))
        for halvings in range(COARSE_CHOICES):
            coarse = coarsest / 2**halvings
            if coarse < self.fine:
                options.append(self._levels(width, height, coarse))
        return min(options, key=lambda passes: _makespan(passes, self.threads))

    def _levels(self, width: int, height: int, coarse: float) -> list[_Pass]:
        """The whole photo at `coarse`, then tiles at finer scales down to `fine`.

        Each tiled level overlaps its tiles by enough to hold, whole and with the detector's context,
        every face too small for the next coarser level; a level's tiles are kept at most about half
        overlap, which with large tiles (HOG) leaves two levels and with small ones (CNN) adds
        intermediate levels.
        """
        scales = [self.fine]
        while scales[-1] > coarse:
            scales.append(max(coarse, 2 * REACH * self.model.smallest * scales[-1] / self.tile))
        passes = [_Pass((0, 0, width, height), scales[-1], (False, False, False, False))]
        for finer, coarser in itertools.pairwise(scales):
            overlap = math.ceil(REACH * self.model.smallest / coarser)
            passes.extend(self._tiles(width, height, finer, overlap))
        return sorted(passes, key=lambda p: -p.cost)

    def _tiles(self, width: int, height: int, scale: float, overlap: int) -> list[_Pass]:
        """The grid of overlapping tiles at scale, each within tile**2 scanned pixels, that the
        threads finish soonest (fewest tiles on a tie)."""
        limit = self.tile**2 / scale**2  # in original pixels
        best: tuple[float, int, int, int] | None = None
        for cols in range(1, 257 if width > overlap else 2):
            tile_w = (width - overlap) / cols + overlap if cols > 1 else width
            if tile_w < 2 * overlap and best is not None:
                break  # narrower tiles would be mostly overlap
            room = limit / tile_w - overlap  # the tallest tile core that fits
            if room <= 0:
                continue
            fewest = max(1, math.ceil((height - overlap) / room))
            for rows in range(fewest, fewest + self.threads):  # more rows may keep all threads busy
                if rows > 1 and height <= overlap:
                    break
                tile_h = (height - overlap) / rows + overlap if rows > 1 else height
                cost = tile_w * tile_h * scale**2 + PASS_OVERHEAD
                key = (math.ceil(cols * rows / self.threads) * cost, cols * rows, cols, rows)
                if best is None or key[:2] < best[:2]:
                    best = key
        assert best is not None, "no tiling fits"  # cannot happen: overlap * scale <= tile / 2
        _, _, cols, rows = best
        return [_Pass((left, top, right, bottom), scale, (left > 0, top > 0, right < width, bottom < height))
                for top, bottom in _splits(height, rows, overlap)
                for left, right in _splits(width, cols, overlap)]

    def _scan(self, image: Image.Image, scan: _Pass) -> list[Raw]:
        """One detector run, boxes mapped back to original pixels."""
        left, top, right, bottom = scan.region
        part = image if scan.region == (0, 0, image.width, image.height) else image.crop(scan.region)
        size = (max(1, round(part.width * scan.scale)), max(1, round(part.height * scan.scale)))
        if size != part.size:
            part = part.resize(size, Image.Resampling.BILINEAR)
        fx, fy = (right - left) / size[0], (bottom - top) / size[1]
        found = []
        seam = 2
        for x0, y0, x1, y1, score in self.model.run(np.asarray(part)):
            if ((scan.seams[0] and x0 < seam) or (scan.seams[1] and y0 < seam)
                    or (scan.seams[2] and x1 > size[0] - seam) or (scan.seams[3] and y1 > size[1] - seam)):
                continue  # cut by a seam: the neighbouring tile holds the whole face
            found.append((left + x0 * fx, top + y0 * fy, left + x1 * fx, top + y1 * fy, score))
        return found

    def _refine(self, image: Image.Image, raw: Raw) -> Raw | None:
        """Re-detect one face in its neighbourhood at three finer scales; average what is found.

        dlib reports boxes in steps of 1.2x in size (its image pyramid), so a face found near the
        detector's smallest size may be off by a tenth of its size; three scales a third of a step
        apart and a score-weighted mean pin it down. None when the face does not hold up: HOG's
        weak or missing re-detections need the CNN's confirmation; the CNN must find it again.
        """
        x0, y0, x1, y1, score = raw
        size = max(x1 - x0, y1 - y0)
        pad = REFINE_PAD * size
        region = (max(math.floor(x0 - pad), 0), max(math.floor(y0 - pad), 0),
                  min(math.ceil(x1 + pad), image.width), min(math.ceil(y1 + pad), image.height))
        part = image.crop(region)
        found = []
        for step in range(REFINE_STEPS):
            scale = REFINE_SIZE * self.model.smallest * 1.2 ** (step / REFINE_STEPS) / size
            resized = part.resize((max(1, round(part.width * scale)), max(1, round(part.height * scale))),
                                  Image.Resampling.BILINEAR)
            fx, fy = part.width / resized.width, part.height / resized.height
            best = None
            for d in self.model.run(np.asarray(resized)):
                cand = (region[0] + d[0] * fx, region[1] + d[1] * fy,
                        region[0] + d[2] * fx, region[1] + d[3] * fy, d[4])
                overlap = _iou(cand, raw)
                if overlap >= 0.3 and (best is None or overlap > best[0]):
                    best = (overlap, cand)
            if best is not None:
                found.append(best[1])
        if self.model.confirm:
            if sum(c[4] for c in found) < CONFIRM_BELOW and not self._confirmed(part, region, raw):
                return None
        elif not found:
            return None
        if not found:
            return raw
        weights = [max(c[4], 0.05) for c in found]
        total = sum(weights)
        mean = [sum(w * c[i] for w, c in zip(weights, found, strict=True)) / total for i in range(4)]
        return (mean[0], mean[1], mean[2], mean[3], score)

    def _confirmed(self, part: Image.Image, region: tuple[int, int, int, int], raw: Raw) -> bool:
        """Whether the CNN, a stronger detector, also sees a face where HOG barely does."""
        scale = CONFIRM_SIZE * _MODELS["cnn"].smallest / max(raw[2] - raw[0], raw[3] - raw[1])
        resized = part.resize((max(1, round(part.width * scale)), max(1, round(part.height * scale))),
                              Image.Resampling.BILINEAR)
        fx, fy = part.width / resized.width, part.height / resized.height
        return any(_iou((region[0] + d[0] * fx, region[1] + d[1] * fy, region[0] + d[2] * fx,
                         region[1] + d[3] * fy, d[4]), raw) >= 0.3
                   for d in _run_cnn(np.asarray(resized)))

    def detect(self, image: Image.Image | np.ndarray) -> list[DetectedFace]:
        """The faces in the photo, boxes in original pixels after EXIF orientation."""
        image = _as_image(image)
        passes = self.plan(image.width, image.height)
        if len(passes) == 1 or self.threads <= 1:
            raws = [self._scan(image, p) for p in passes]
        else:
            with ThreadPoolExecutor(self.threads) as pool:
                raws = list(pool.map(lambda p: self._scan(image, p), passes))
        kept = _suppress([r for found in raws for r in found])
        if self.refine and kept:
            if len(kept) == 1 or self.threads <= 1:
                refined = [self._refine(image, r) for r in kept]
            else:
                with ThreadPoolExecutor(self.threads) as pool:
                    refined = list(pool.map(lambda r: self._refine(image, r), kept))
            kept = _suppress([r for r in refined if r is not None])
        faces = []
        for x0, y0, x1, y1, score in kept:
            box = _clip(x0, y0, x1, y1, image.width, image.height)
            if box is not None and box.h >= 0.7 * self.min_face:
                faces.append(DetectedFace(box, float(score)))
        faces.sort(key=lambda f: (f.box.x, f.box.y))
        return faces

    def encode(self, image: Image.Image | np.ndarray, boxes: Sequence[Box]) -> list[np.ndarray]:
        """One 128-d encoding per box (dlib's ResNet on the 5-landmark aligned chip)."""
        import dlib

        image = _as_image(image)
        out = []
        for box in boxes:
            # Work on a region around the face, scaled so the face is at most ~300 px: the
            # landmarks and the 150 px chip need no more, and the whole photo is never copied.
            pad = max(box.w, box.h)
            region = (max(box.x - pad, 0), max(box.y - pad, 0),
                      min(box.right + pad, image.width), min(box.bottom + pad, image.height))
            part = image.crop(region)
            k = min(1.0, 300 / max(box.w, box.h, 1))
            if k < 1:
                part = part.resize((max(1, round(part.width * k)), max(1, round(part.height * k))),
                                   Image.Resampling.BILINEAR)
            array = np.asarray(part)
            rect = dlib.rectangle(round((box.x - region[0]) * k), round((box.y - region[1]) * k),
                                  round((box.right - region[0]) * k) - 1,
                                  round((box.bottom - region[1]) * k) - 1)
            with _SHAPE.get() as shape_predictor:
                shape = shape_predictor(array, rect)
            with _ENCODER.get() as encoder:
                vector = encoder.compute_face_descriptor(array, shape, 0)
            out.append(np.asarray(vector, dtype=np.float64))
        return out


def _makespan(passes: list[_Pass], threads: int) -> float:
    """Estimated wall time of the passes, biggest first, on threads workers (in scanned pixels)."""
    loads = [0.0] * threads
    for p in sorted(passes, key=lambda p: -p.cost):
        loads[loads.index(min(loads))] += p.cost
    return max(loads)


def _splits(length: int, parts: int, overlap: int) -> list[tuple[int, int]]:
    """parts ranges covering 0..length, neighbours overlapping by at least overlap."""
    if parts <= 1 or length <= overlap:
        return [(0, length)]
    core = (length - overlap) / parts
    return [(round(i * core), min(length, round((i + 1) * core + overlap))) for i in range(parts)]


def _suppress(candidates: list[Raw]) -> list[Raw]:
    """Non-maximum suppression: of boxes covering the same face keep the best-scoring one."""
    kept: list[Raw] = []
    for cand in sorted(candidates, key=lambda c: (-c[4], c[0], c[1])):
        if not any(_same_face(cand, k) for k in kept):
            kept.append(cand)
    return kept


def _iou(a: Raw, b: Raw) -> float:
    """Intersection over union of two raw boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _same_face(a: Raw, b: Raw) -> bool:
    """Whether two raw boxes cover the same face: IoU >= 0.3, or most of the smaller in the larger."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return False
    inter = w * h
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter) >= 0.3 or inter / min(area_a, area_b) >= 0.6


def _clip(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Box | None:
    """The box inside the photo, or None when less than half of it is."""
    area = (x1 - x0) * (y1 - y0)
    cx0, cy0 = max(round(x0), 0), max(round(y0), 0)
    cx1, cy1 = min(round(x1), width), min(round(y1), height)
    if cx1 <= cx0 or cy1 <= cy0 or (cx1 - cx0) * (cy1 - cy0) < 0.5 * area:
        return None
    return Box(cx0, cy0, cx1 - cx0, cy1 - cy0)


def _as_image(image: Image.Image | np.ndarray) -> Image.Image:
    """The oriented RGB photo, decoded; an array is taken as an oriented RGB (or grey) frame."""
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    image = oriented(image)
    image.load()  # decode once, before any thread touches it
    return image


def make_engine(*, model: str = "hog", max_side: int = 2000, min_face: int = 30, tile: int | None = None,
                threads: int = 2, refine: bool = True) -> FaceEngine:
    """The face engine: dlib's "hog" (default) or "cnn" detector behind the resolution policy.

    min_face: the smallest face (box height, original px) to find; max_side: the longest side of the
    coarse whole-photo pass; tile: the side of the largest scan in one run (memory; default per
    model); threads: detector runs at a time; refine: re-detect, verify and re-box each face (off,
    the raw, 1.2x-quantised boxes of the first scans are returned unverified).
    """
    if model not in _MODELS:
        raise ValueError(f"unknown face model {model!r}: choose from {sorted(_MODELS)}")
    spec = _MODELS[model]
    tile = spec.tile if tile is None else tile
    if min_face < 8 or max_side < 64 or tile < 256 or threads < 1:
        raise ValueError("min_face >= 8, max_side >= 64, tile >= 256 and threads >= 1 are required")
    return _DlibEngine(spec, max_side=max_side, min_face=min_face, tile=tile, threads=threads,
                       refine=refine)
