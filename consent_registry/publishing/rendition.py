"""Publishable renditions: new files made from an upload, with metadata gone and chosen faces blurred.

Pure functions (no Flask, no database). Nothing of the upload's metadata is carried over: every
output is decoded pixels (and samples) re-encoded into a fresh file.

- Photos: EXIF orientation applied, then every tag dropped (EXIF with GPS, XMP, IPTC, comments,
  MakerNotes); an embedded ICC profile is converted to sRGB and dropped; JPEG quality 90.
- Blur (irreversible): the box plus MARGIN of its size on every side is replaced by a mosaic of
  cells of at least a PIXEL_CELLS-th of the box's larger side (each cell the mean of its pixels),
  Gaussian-blurred over about a cell, then given a little random noise. Averaging into a handful
  of cells throws away what the face was made of; the blur and noise leave no cell edges or exact
  means to work back from; the output is re-encoded, so no hidden layer keeps the original.
- Videos (PyAV): every frame decoded, turned upright (display rotation applied, no rotation tag in
  the output), cropped to even dimensions, the boxes of each track blurred (interpolated linearly
  between the track's sampled boxes, held for HOLD seconds before the first and after the last),
  encoded H.264 (libx264, yuv420p); the sound re-encoded as AAC, so it is kept; no container or
  stream tags copied (no title, location, creation_time). Frames stream through: memory stays
  bounded whatever the length.
- Sound recordings: re-encoded as AAC in an M4A file without any tags.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import Any

import av
import numpy as np
from PIL import Image, ImageCms, ImageFilter, ImageOps

from ..media.faces import Box
from ..media.video import _rotation

MARGIN = 0.25  # of the box size, around a blurred face
PIXEL_CELLS = 5  # at most this many mosaic cells across a box's larger side (the margin adds more)
NOISE = 10.0  # standard deviation of the noise added over a blurred region (0-255 scale)
HOLD = 0.2  # seconds a track's first and last box are kept before and after (half a sample step)
JPEG_QUALITY = 90
VIDEO_CODEC = "libx264"
VIDEO_OPTIONS = {"crf": "20", "preset": "veryfast"}
AUDIO_CODEC = "aac"
AUDIO_BIT_RATE = 160_000
ORIENTATION = 0x0112

TrackPoints = Sequence[Sequence[float]]  # [[t_s, x, y, w, h], ...]


# --- blurring --------------------------------------------------------------------------------------

def _widened(box: Box, width: int, height: int, margin: float = MARGIN) -> tuple[int, int, int, int]:
    """The box plus margin on every side, clipped to the picture: left, top, right, bottom."""
    mx, my = box.w * margin, box.h * margin
    left, top = max(math.floor(box.x - mx), 0), max(math.floor(box.y - my), 0)
    right, bottom = min(math.ceil(box.right + mx), width), min(math.ceil(box.bottom + my), height)
    return left, top, right, bottom


def blur_box(pixels: np.ndarray, box: Box, rng: np.random.Generator) -> None:
    """Make one face (the box and its margin) unrecognisable, in place, in an RGB uint8 array."""
    height, width = pixels.shape[:2]
    left, top, right, bottom = _widened(box, width, height)
    if right - left < 1 or bottom - top < 1:
        return
    region = Image.fromarray(pixels[top:bottom, left:right])
    cell = max(math.ceil(max(box.w, box.h) / PIXEL_CELLS), 2)
    small = (max(math.ceil(region.width / cell), 1), max(math.ceil(region.height / cell), 1))
    mosaic = region.resize(small, Image.Resampling.BOX).resize(region.size, Image.Resampling.NEAREST)
    soft = np.asarray(mosaic.filter(ImageFilter.GaussianBlur(cell * 0.6)), dtype=np.float32)
    soft += rng.normal(0.0, NOISE, soft.shape).astype(np.float32)
    pixels[top:bottom, left:right] = np.clip(soft, 0, 255).astype(np.uint8)


def _scaled_box(box: Box, fx: float, fy: float) -> Box:
    """A box in the pixels of a resized picture."""
    x, y = math.floor(box.x * fx), math.floor(box.y * fy)
    return Box(x, y, max(math.ceil(box.right * fx) - x, 1), max(math.ceil(box.bottom * fy) - y, 1))


# --- photos ----------------------------------------------------------------------------------------

def _to_srgb(image: Image.Image) -> Image.Image:
    """RGB pixels in sRGB: alpha flattened onto white, an embedded ICC profile applied."""
    icc = image.info.get("icc_profile")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
            image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    elif image.mode not in ("RGB", "CMYK", "L"):
        image = image.convert("RGB")
    if icc:
        try:
            converted = ImageCms.profileToProfile(
                image, ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"),
                outputMode="RGB")
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass  # a broken or mismatched profile: take the pixels as they are
    return image.convert("RGB")


def _upright(data: bytes, max_side: int) -> tuple[np.ndarray, float, float]:
    """The photo as shown, in sRGB, at most max_side px; and the scale from shown-size boxes."""
    with Image.open(io.BytesIO(data)) as img:
        turned = img.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)
        full_w, full_h = (img.height, img.width) if turned else img.size
        img.draft("RGB", (max_side, max_side))  # JPEG decodes straight at a smaller scale
        icc = img.info.get("icc_profile")
        image = ImageOps.exif_transpose(img)
        if icc:
            image.info["icc_profile"] = icc
        image = _to_srgb(image)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.array(image, dtype=np.uint8), image.width / full_w, image.height / full_h


def _jpeg(pixels: np.ndarray) -> bytes:
    """Fresh JPEG bytes of the pixels: no EXIF, XMP, IPTC, ICC or comment (nothing but pixels)."""
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def photo_rendition(data: bytes, blur_boxes: Sequence[Box], *, max_side: int = 2048) -> bytes:
    """The publishable JPEG of a photo: upright, at most max_side px, no metadata, boxes blurred.

    Boxes are in the pixels of the full-size photo after EXIF orientation (as analysis stores them).
    """
    pixels, fx, fy = _upright(data, max_side)
    rng = np.random.default_rng()
    for box in blur_boxes:
        blur_box(pixels, _scaled_box(box, fx, fy), rng)
    return _jpeg(pixels)


PREVIEW_SOFTEN = 60  # the whole preview is blurred with a radius of its longer side / this


def preview_photo(data: bytes, keep_boxes: Sequence[Box], blur_boxes: Sequence[Box], *,
                  max_side: int = 1024) -> bytes:
    """A small JPEG for a parent's answer page: their own child sharp, everyone else unrecognisable.

    The whole picture is softened first (a face the detector missed must not reach a parent
    sharp: the scene stays readable, faces do not), every other known face is then blurred
    strongly, and only the keep boxes are restored. Another face's box always wins: a kept box
    stays sharp only where it does not cover one of the blurred boxes themselves.
    """
    pixels, fx, fy = _upright(data, max_side)
    original = pixels.copy()
    height, width = pixels.shape[:2]
    radius = max(6.0, max(width, height) / PREVIEW_SOFTEN)
    softened = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(radius))
    pixels = np.array(softened)
    rng = np.random.default_rng()
    blurred = [_scaled_box(b, fx, fy) for b in blur_boxes]
    for box in blurred:
        blur_box(pixels, box, rng)
    others = np.zeros((height, width), dtype=bool)
    for box in blurred:
        others[box.y:box.bottom, box.x:box.right] = True
    for keep in keep_boxes:
        box = _scaled_box(keep, fx, fy)
        window = (slice(max(box.y, 0), min(box.bottom, height)), slice(max(box.x, 0), min(box.right, width)))
        sharp = ~others[window]
        pixels[window][sharp] = original[window][sharp]
    return _jpeg(pixels)


# --- videos ----------------------------------------------------------------------------------------

def boxes_at(tracks: Sequence[TrackPoints], t: float, *, hold: float = HOLD) -> list[Box]:
    """Where each track's face is at t seconds: interpolated between its samples, held at its ends."""
    found = []
    for track in tracks:
        if not track:
            continue
        first, last = track[0], track[-1]
        if t < first[0] - hold or t > last[0] + hold:
            continue
        if t <= first[0]:
            values = first[1:5]
        elif t >= last[0]:
            values = last[1:5]
        else:
            after = next(i for i, p in enumerate(track) if p[0] >= t)
            a, b = track[after - 1], track[after]
            span = b[0] - a[0]
            k = (t - a[0]) / span if span > 0 else 1.0
            values = [a[i] + (b[i] - a[i]) * k for i in range(1, 5)]
        x, y, w, h = values
        found.append(Box(math.floor(x), math.floor(y), max(math.ceil(w), 1), max(math.ceil(h), 1)))
    return found


def _sorted_tracks(tracks: Sequence[TrackPoints]) -> list[list[list[float]]]:
    """Tracks as lists of [t, x, y, w, h] sorted by time; malformed points are refused."""
    out = []
    for track in tracks:
        points = [[float(v) for v in p] for p in track]
        if any(len(p) != 5 or not all(math.isfinite(v) for v in p) for p in points):
            raise ValueError("a track point must be [t, x, y, w, h]")
        out.append(sorted(points, key=lambda p: p[0]))
    return out


def _start(stream: Any) -> float:
    """A stream's first timestamp in seconds (0 when unknown)."""
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _duration(container: Any, stream: Any) -> float | None:
    """The length of a stream in seconds, when the file says."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


class _Audio:
    """Decoded sound re-encoded as AAC, timestamps counted in samples from a common origin."""

    def __init__(self, output: Any, source: Any, origin: float) -> None:
        """Add an AAC stream like the source's (rate, channels) to the output."""
        rate = source.rate or 44100
        layout = "mono" if (source.channels or 2) == 1 else "stereo"
        self.stream = output.add_stream(AUDIO_CODEC, rate=rate)
        self.stream.layout = layout
        self.stream.bit_rate = AUDIO_BIT_RATE
        self.rate = rate
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        self.origin = origin
        self.next_pts: int | None = None

    def encode(self, frame: Any) -> Iterator[Any]:
        """The packets for one decoded frame (None flushes the encoder)."""
        frames = self.resampler.resample(frame) if frame is not None else self.resampler.resample(None)
        for out in frames:
            if self.next_pts is None:
                at = (frame.time if frame is not None and frame.time is not None else self.origin)
                self.next_pts = max(round((at - self.origin) * self.rate), 0)
            out.pts, out.time_base = self.next_pts, Fraction(1, self.rate)
            self.next_pts += out.samples
            yield from self.stream.encode(out)
        if frame is None:
            yield from self.stream.encode(None)


def _open_output(target: str) -> Any:
    """An MP4 file for writing with no tags of its own (bitexact: not even the muxer's name)."""
    output = av.open(target, mode="w", format="mp4", options={"movflags": "+faststart"})
    output.flags |= av.container.Flags.bitexact.value
    return output


def video_rendition(source: str, target: str, blur_tracks: Sequence[TrackPoints], *,
                    progress: Callable[[int], None] | None = None) -> None:
    """Write the publishable MP4 of a video: upright H.264 with boxes blurred, AAC sound, no tags.

    Track times count from the video stream's first timestamp; boxes are in displayed pixels
    (after rotation), as analysis stores them. `progress` gets 0..100 (100 once, at the end).
    """
    tracks = _sorted_tracks(blur_tracks)
    reported = -1

    def report(value: int) -> None:
        nonlocal reported
        if progress is not None and value > reported:
            reported = value
            progress(value)

    report(0)
    rng = np.random.default_rng()
    with av.open(source, mode="r") as container:
        if not container.streams.video:
            raise ValueError("the file has no video stream")
        vin = container.streams.video[0]
        vin.thread_type = "AUTO"
        ain = container.streams.audio[0] if container.streams.audio else None
        origin = _start(vin)
        common = min(origin, _start(ain)) if ain is not None else origin
        duration = _duration(container, vin)
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        with _open_output(target) as output:
            vout = audio = None
            last_pts = -1
            waiting: list[Any] = []  # sound before the first picture: streams are added video first
            for packet in container.demux(*(s for s in (vin, ain) if s is not None)):
                if packet.stream is ain:
                    for frame in packet.decode():
                        if audio is None:
                            waiting.append(frame)
                        else:
                            output.mux(list(audio.encode(frame)))
                    continue
                for frame in packet.decode():
                    if frame.time is None:
                        continue
                    pixels = frame.to_ndarray(format="rgb24")
                    turns = _rotation(frame) // 90
                    if turns:
                        pixels = np.rot90(pixels, turns)
                    height, width = pixels.shape[0] // 2 * 2, pixels.shape[1] // 2 * 2
                    pixels = np.ascontiguousarray(pixels[:height, :width])
                    t = frame.time - origin
                    for box in boxes_at(tracks, t):
                        blur_box(pixels, box, rng)
                    if vout is None:
                        vout = output.add_stream(VIDEO_CODEC, rate=rate, options=dict(VIDEO_OPTIONS))
                        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
                        vout.codec_context.time_base = Fraction(1, 90000)
                        if ain is not None:
                            audio = _Audio(output, ain, common)
                    pts = round((frame.time - common) * 90000)
                    if pts <= last_pts:
                        continue  # a repeated or out-of-order timestamp: the encoder needs them rising
                    last_pts = pts
                    out = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
                    out.pts, out.time_base = pts, Fraction(1, 90000)
                    output.mux(vout.encode(out))
                    if audio is not None and waiting:
                        for early in waiting:
                            output.mux(list(audio.encode(early)))
                        waiting = []
                    if duration:
                        report(min(int(100 * t / duration), 99))
            if vout is None:
                raise ValueError("the video has no frames")
            output.mux(vout.encode(None))
            if audio is not None:
                for early in waiting:
                    output.mux(list(audio.encode(early)))
                output.mux(list(audio.encode(None)))
    report(100)


def audio_rendition(source: str, target: str) -> None:
    """Write the publishable M4A of a sound recording: AAC, no tags (no title, artist, location)."""
    with av.open(source, mode="r") as container:
        if not container.streams.audio:
            raise ValueError("the file has no audio stream")
        ain = container.streams.audio[0]
        with _open_output(target) as output:
            audio = _Audio(output, ain, _start(ain))
            for frame in container.decode(ain):
                output.mux(list(audio.encode(frame)))
            output.mux(list(audio.encode(None)))
