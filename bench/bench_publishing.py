"""Publishing: photo and video renditions against the plain way, and the gate against building its input.

Photos: `photo_rendition` (draft decode, EXIF orientation, sRGB, two faces blurred, JPEG q90
optimized) on the public group photos as they are and scaled up (LANCZOS) to 12 MP, against the
plain way: Pillow open + `exif_transpose` + `thumbnail` to the same max side + save JPEG q90, no blur.
Each photo is done 3 times each way, interleaved; the best run per photo counts and the ratio is of
the medians over the photos. The two blurred boxes are the manifest's annotated ones where it has
them, otherwise two face-sized boxes (a sixth of the shorter side) placed in the picture: the cost of
a blur depends on the box size, not on what is in it.

Videos: `video_rendition` on video/v01.mp4 and on a 1280x720 copy of it (made once, untimed, sound
copied as is) with one blurred track covering the whole clip, against a plain PyAV transcode of the
same file: decode, H.264 with the rendition's codec options, AAC sound, no blur. Best of 2 runs.

Gate: `evaluate` on an item with 40 appearances of 40 tagged people in mixed consent states, against
building the same 40 AppearanceFacts, 40 PersonConsent and the consents dict; and one photo rendition
(of a public group photo, median) against one gate call, to show the gate costs nothing next to
rendering.
"""

from __future__ import annotations

import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image, ImageOps

from bench.common import best_of, report, video_size
from consent_registry.media.faces import Box
from consent_registry.publishing.gate import AppearanceFacts, PersonConsent, evaluate
from consent_registry.publishing.rendition import (
    AUDIO_BIT_RATE,
    JPEG_QUALITY,
    VIDEO_CODEC,
    VIDEO_OPTIONS,
    photo_rendition,
)
from consent_registry.publishing.rendition import video_rendition as rendition_of_video

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "public"
CLIP = DATA / "video" / "v01.mp4"
TWELVE_MP = 12_000_000
MAX_SIDE = 2048  # photo_rendition's default
PHOTO_RUNS = 3
VIDEO_RUNS = 2
SIZE_720P = (1280, 720)
TRACK_STEP = 0.4  # seconds between a track's sampled boxes (rendition.HOLD is half of it)
GATE_PEOPLE = 40
GATE_CALLS = 2000


# --- photos ----------------------------------------------------------------------------------------

def _plain_photo(data: bytes) -> bytes:
    """The plain way: open, orient, shrink to the max side, JPEG q90; no blur, no colour handling."""
    with Image.open(io.BytesIO(data)) as img:
        image = ImageOps.exif_transpose(img)
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def _two_boxes(entry: dict, width: int, height: int) -> list[Box]:
    """Two face boxes in the photo's pixels: annotated ([top, left, w, h]) when the manifest has them."""
    if entry.get("boxes"):
        return [Box(left, top, w, h) for top, left, w, h in entry["boxes"][:2]]
    side = min(width, height) // 6
    return [Box(width // 3 - side // 2, height // 3, side, side),
            Box(2 * width // 3 - side // 2, height // 3, side, side)]


def _group_photos() -> list[tuple[dict, bytes, Image.Image]]:
    """The public group photos: manifest entry, file bytes, decoded image (as stored, not turned)."""
    manifest = json.loads((DATA / "manifest.json").read_text())
    photos = []
    for entry in manifest:
        if entry["role"] == "group":
            data = (DATA / entry["file"]).read_bytes()
            image = Image.open(io.BytesIO(data))
            image.load()
            photos.append((entry, data, image))
    return photos


def _upscaled(image: Image.Image) -> tuple[bytes, float]:
    """The photo scaled up (LANCZOS, as bench_photo_faces) to about 12 MP as JPEG q95; and the scale."""
    k = (TWELVE_MP / (image.width * image.height)) ** 0.5
    big = image.convert("RGB").resize((round(image.width * k), round(image.height * k)),
                                      Image.Resampling.LANCZOS)
    out = io.BytesIO()
    big.save(out, format="JPEG", quality=95)
    return out.getvalue(), k


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _compare_photos(label: str, photos: list[tuple[bytes, list[Box]]]) -> float:
    """Print the ratio of the median best-of-3 seconds per photo; return ours (median seconds)."""
    photo_rendition(photos[0][0], photos[0][1]), _plain_photo(photos[0][0])  # warm up
    ours: list[float] = []
    plain: list[float] = []
    for data, boxes in photos:
        runs: dict[str, list[float]] = {"ours": [], "plain": []}
        for _ in range(PHOTO_RUNS):
            runs["ours"].append(_seconds(lambda d=data, b=boxes: photo_rendition(d, b)))
            runs["plain"].append(_seconds(lambda d=data: _plain_photo(d)))
        ours.append(min(runs["ours"]))
        plain.append(min(runs["plain"]))
    median_ours, median_plain = statistics.median(ours), statistics.median(plain)
    report(f"photo rendition: {label}, 2 blurred", median_ours, median_plain,
           "open+exif_transpose+thumbnail+JPEG q90")
    print(f"    median seconds per photo: ours {median_ours:.3f}, plain {median_plain:.3f} "
          f"({len(photos)} photos, max side {MAX_SIDE})")
    return median_ours


# --- videos ----------------------------------------------------------------------------------------

def _scaled_copy(source: Path, folder: Path) -> Path:
    """The video re-encoded at 1280x720 (H.264 crf 18, same timestamps), its sound packets copied."""
    target = folder / "v01_720p.mp4"
    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        vin = src.streams.video[0]
        vin.thread_type = "AUTO"
        ain = src.streams.audio[0] if src.streams.audio else None
        rate = vin.average_rate or Fraction(30)
        vout = dst.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "fast"})
        vout.width, vout.height, vout.pix_fmt = SIZE_720P[0], SIZE_720P[1], "yuv420p"
        aout = dst.add_stream_from_template(ain) if ain is not None else None
        for packet in src.demux(*(s for s in (vin, ain) if s is not None)):
            if packet.stream is ain:
                if packet.dts is not None:
                    packet.stream = aout
                    dst.mux(packet)
                continue
            for frame in packet.decode():
                scaled = frame.reformat(width=SIZE_720P[0], height=SIZE_720P[1], format="yuv420p")
                scaled.pts, scaled.time_base = frame.pts, frame.time_base
                dst.mux(vout.encode(scaled))
        dst.mux(vout.encode(None))
    return target


def _plain_transcode(source: Path, target: Path) -> None:
    """The plain way: decode, encode H.264 (same codec options) and AAC; no blur, no RGB round trip."""
    with av.open(str(source)) as src, av.open(str(target), "w", format="mp4") as dst:
        vin = src.streams.video[0]
        vin.thread_type = "AUTO"
        ain = src.streams.audio[0] if src.streams.audio else None
        rate = vin.average_rate or Fraction(30)
        vout = dst.add_stream(VIDEO_CODEC, rate=rate, options=dict(VIDEO_OPTIONS))
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        aout = None
        if ain is not None:
            aout = dst.add_stream("aac", rate=ain.rate)
            aout.layout = "mono" if ain.channels == 1 else "stereo"
            aout.bit_rate = AUDIO_BIT_RATE
        for packet in src.demux(*(s for s in (vin, ain) if s is not None)):
            for frame in packet.decode():
                dst.mux((aout if packet.stream is ain else vout).encode(frame))
        dst.mux(vout.encode(None))
        if aout is not None:
            dst.mux(aout.encode(None))


def _whole_clip_track(width: int, height: int, seconds: float) -> list[list[float]]:
    """One face-sized box (a quarter of the height) drifting left to right, sampled every TRACK_STEP."""
    side = height / 4
    steps = int(seconds / TRACK_STEP) + 1
    return [[i * TRACK_STEP, (width - side) * i / steps, height / 3, side, side] for i in range(steps + 1)]


def _compare_video(clip: Path, folder: Path) -> None:
    """Print ours against the plain transcode and against the clip's length."""
    width, height, seconds = video_size(clip)
    tracks = [_whole_clip_track(width, height, seconds)]
    ours = best_of(lambda: rendition_of_video(str(clip), str(folder / "ours.mp4"), tracks), repeat=VIDEO_RUNS)
    plain = best_of(lambda: _plain_transcode(clip, folder / "plain.mp4"), repeat=VIDEO_RUNS)
    name = f"video rendition: {width}x{height}, 1 track"
    report(name, ours, plain, "decode+H.264+AAC transcode, no blur")
    report(name, ours, seconds, "seconds of video (real-time factor)")
    report(f"video plain transcode: {width}x{height}", plain, seconds, "seconds of video (real-time factor)")
    print(f"    seconds: ours {ours:.2f}, plain {plain:.2f} for {seconds:.2f} s of video")


# --- the gate --------------------------------------------------------------------------------------

_STATES = [("granted", (1,), None, False), ("granted", (2, 3), date(2099, 1, 1), False),
           ("granted", (4,), date(2000, 1, 1), False), ("granted", (), None, False),
           ("refused", (5,), None, False), ("withdrawn", (6,), None, False),
           ("expired", (7,), None, False), ("none", (), None, False), ("granted", (8,), None, True)]


def _gate_input() -> tuple[list[AppearanceFacts], dict[int, PersonConsent]]:
    """40 faces identified as 40 people; consents cycle through granted, expired, refused, left..."""
    appearances = [AppearanceFacts(100 + i, "face", i, None, "identified") for i in range(GATE_PEOPLE)]
    consents = {i: PersonConsent(i, *_STATES[i % len(_STATES)]) for i in range(GATE_PEOPLE)}
    return appearances, consents


def _compare_gate(photo_seconds: float) -> None:
    appearances, consents = _gate_input()
    at = datetime(2025, 6, 1, 12, tzinfo=UTC)

    def gate() -> None:
        for _ in range(GATE_CALLS):
            evaluate(kind="photo", status="ready", voices_analysed=False, appearances=appearances,
                     consents=consents, channel="website", at=at, attested=True)

    def build() -> None:
        for _ in range(GATE_CALLS):
            _gate_input()

    decision = evaluate(kind="photo", status="ready", voices_analysed=False, appearances=appearances,
                        consents=consents, channel="website", at=at, attested=True)
    per_call = best_of(gate) / GATE_CALLS
    building = best_of(build) / GATE_CALLS
    name = f"gate: evaluate, {GATE_PEOPLE} appearances/people"
    report(name, per_call, building, "building its input objects")
    report("photo rendition: one public group photo (median)", photo_seconds, per_call,
           "one gate evaluate (40 appearances)")
    print(f"    {1 / per_call:,.0f} calls/s ({per_call * 1e6:.0f} us/call, "
          f"{len(decision.blockers)} blockers, {len(decision.people)} people)")


def run() -> None:
    """Photos as they are and at 12 MP, the clip and its 720p copy, then the gate."""
    groups = _group_photos()
    public_seconds = _compare_photos(
        f"{len(groups)} groups as they are", [(data, _two_boxes(e, *img.size)) for e, data, img in groups])
    upscaled = []
    for entry, _, image in groups:
        data, k = _upscaled(image)
        boxes = [Box(round(b.x * k), round(b.y * k), round(b.w * k), round(b.h * k))
                 for b in _two_boxes(entry, *image.size)]
        upscaled.append((data, boxes))
    _compare_photos(f"{len(groups)} groups at 12 MP", upscaled)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _compare_video(CLIP, folder)
        _compare_video(_scaled_copy(CLIP, folder), folder)
    _compare_gate(public_seconds)
