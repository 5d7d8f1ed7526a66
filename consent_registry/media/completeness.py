"""Whether a file decoded whole: what analysis refuses rather than read as "nobody there".

Pure code, no Flask, no database. A decoder that stops, skips or conceals part of a file leaves a
stretch nobody looked at or listened to; the publication gate must not take that stretch for empty.
So every decode error, every frame the decoder marks corrupt, and every stretch the file claims
but that did not decode, is a `DamagedMedia` error with a code the media page translates.

What a file "claims" comes from two places that can both lie: its header (a stream's duration,
its number of frames) and its packets (their timestamps, read by the demuxer from the index or
the stream). The rule: what decoded must cover both, within `allowed_gap` (decoders trim a few
priming samples, the last frame's length is a guess). A header that claims less than the packets
(a duration field of 0xFFFFFFFF reads as 0.844 s) is simply wrong and the packets count; a header
that claims more (a cut-off file, a lying index) means something is missing, and that fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# What may be missing between what a file claims and what decoded: decoders drop priming samples
# (AAC: ~0.05 s) and the end of the last frame is a guess, so half a second and 1% are allowed.
GAP_S = 0.5
GAP_SHARE = 0.01
# Video decoders may withhold a few frames that are never shown (VP8's alternate reference frames,
# ~1 in 20 packets); fewer frames than this share of the packets means frames were dropped.
FRAMES_PER_PACKET = 0.9
# Formats whose stream durations are estimated (MP3 without a Xing header: from the bitrate), not
# stated: their headers claim nothing that decoding must cover.
ESTIMATED_DURATION_FORMATS = frozenset({"mp3"})

CODES = ("sound_damaged", "sound_incomplete", "sound_tracks", "frames_damaged", "frames_incomplete",
         "video_tracks", "photo_incomplete")


class DamagedMedia(ValueError):
    """A file that did not decode whole: `code` (one of CODES) for the page, `detail` says where."""

    def __init__(self, code: str, detail: str) -> None:
        """Keep the code and the detail; the message is 'code: detail'."""
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def allowed_gap(expected_s: float) -> float:
    """Seconds that may be missing from what decoded, of expected_s claimed."""
    return max(GAP_S, GAP_SHARE * expected_s)


@dataclass
class Timeline:
    """One stream as its packets claim it and as its decoder gave it, counted while decoding."""

    packets: int = 0
    packets_start: float | None = None
    packets_end: float | None = None
    frames: int = 0
    decoded_s: float = 0.0  # sound: samples decoded / sample rate
    decoded_start: float | None = None
    decoded_end: float | None = None  # video: the last frame's time plus one frame

    def packet(self, packet: Any) -> None:
        """Count a demuxed packet (the empty one that flushes the decoder is not one)."""
        if not packet.size:
            return
        self.packets += 1
        if packet.pts is None or packet.time_base is None:
            return
        start = float(packet.pts * packet.time_base)
        end = start + float((packet.duration or 0) * packet.time_base)
        self.packets_start = start if self.packets_start is None else min(self.packets_start, start)
        self.packets_end = end if self.packets_end is None else max(self.packets_end, end)

    def frame(self, start: float, end: float) -> None:
        """Count a decoded video frame shown from start to end (seconds, the stream's clock)."""
        self.frames += 1
        self.decoded_start = start if self.decoded_start is None else min(self.decoded_start, start)
        self.decoded_end = end if self.decoded_end is None else max(self.decoded_end, end)

    def sound(self, seconds: float) -> None:
        """Count a decoded piece of sound of this many seconds."""
        self.frames += 1
        self.decoded_s += seconds

    @property
    def packets_s(self) -> float:
        """How long the packets say the stream lasts."""
        if self.packets_start is None or self.packets_end is None:
            return 0.0
        return max(0.0, self.packets_end - self.packets_start)

    @property
    def video_s(self) -> float:
        """How long the decoded frames last, first to last."""
        if self.decoded_start is None or self.decoded_end is None:
            return 0.0
        return max(0.0, self.decoded_end - self.decoded_start)


def only_stream(streams: list[Any], *, code: str) -> Any:
    """The one stream analysis looks at or listens to; DamagedMedia when there are more.

    A second sound track (or picture) would be published with the file but never analysed.
    """
    if len(streams) > 1:
        raise DamagedMedia(code, f"{len(streams)} tracks; only files with one can be analysed")
    return streams[0]


def stream_claims(container: Any, stream: Any) -> tuple[float | None, int | None]:
    """A stream's header claims: its duration in seconds and its number of frames (None: unsaid)."""
    if getattr(container.format, "name", "") in ESTIMATED_DURATION_FORMATS:
        return None, None
    seconds = (float(stream.duration * stream.time_base)
               if stream.duration and stream.duration > 0 and stream.time_base else None)
    return seconds, (stream.frames if stream.frames and stream.frames > 0 else None)


def check_whole(*, kind: str, timeline: Timeline, claimed_s: float | None,
                claimed_frames: int | None) -> float:
    """Raise DamagedMedia when the decoded stream does not cover what was claimed; its length.

    kind is "sound" or "frames". The length returned is what really decoded, in seconds.
    """
    code = f"{kind}_incomplete"
    if timeline.frames == 0:  # a stream that decodes to nothing has not been seen or heard
        raise DamagedMedia(code, "nothing decoded")
    if claimed_frames is not None and timeline.packets < claimed_frames:
        raise DamagedMedia(code, f"the file lists {claimed_frames} packets, only "
                                 f"{timeline.packets} are there")
    decoded = timeline.decoded_s if kind == "sound" else timeline.video_s
    expected = max(timeline.packets_s, claimed_s or 0.0)
    if expected - decoded > allowed_gap(expected):
        raise DamagedMedia(code, f"{decoded:.2f} s of {expected:.2f} s decoded")
    if kind == "frames" and timeline.frames < FRAMES_PER_PACKET * timeline.packets:
        raise DamagedMedia("frames_damaged", f"{timeline.frames} frames decoded from "
                                             f"{timeline.packets} packets")
    return decoded


def packets_of(container: Any, stream: Any) -> Timeline:
    """The stream's packets counted without decoding them (reads the file once, decodes nothing)."""
    timeline = Timeline()
    for packet in container.demux(stream):
        timeline.packet(packet)
    return timeline


# --- photos: coded data that cannot fill the pixels the header claims ------------------------------
# Decoders fill what a photo's data does not cover (libjpeg pads a scan cut short with grey, a PNG
# whose compressed rows end early is padded too), so a 690-byte JPEG whose header says 9000 x 9000
# decodes "fine" into 81 megapixels of nothing, which face detection then scans for minutes. Each
# format's data must be able to fill its pixels: a JPEG codes every 8 x 8 block of its full-size
# component with at least one bit (Huffman codes are at least a bit long; arithmetic-coded JPEGs,
# which browsers do not show, may code a flat picture in less and are refused then), and a PNG's
# rows must inflate to every byte of every row. WebP and HEIF decoders refuse short data themselves.

_JPEG_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                          0xCF})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))
_INFLATE_STEP = 1 << 20


def check_photo_filled(data: bytes, *, fmt: str) -> None:
    """Raise DamagedMedia('photo_incomplete') when a JPEG's or PNG's data cannot fill its pixels."""
    if fmt == "jpeg":
        size, coded = jpeg_coded_bytes(data)
        if size is not None:
            width, height = size
            blocks = -(-width // 8) * -(-height // 8)
            if coded * 8 < blocks:
                raise DamagedMedia("photo_incomplete", f"{coded} bytes of picture data for "
                                                       f"{width} x {height} pixels")
    elif fmt == "png":
        have, need = png_row_bytes(data)
        if have < need:
            raise DamagedMedia("photo_incomplete", f"{have} of {need} bytes of rows")


def jpeg_coded_bytes(data: bytes) -> tuple[tuple[int, int] | None, int]:
    """The first frame's (width, height) and the bytes of entropy-coded data of its scans."""
    size: tuple[int, int] | None = None
    coded = 0
    i, n = 2, len(data)
    while i + 1 < n:
        if data[i] != 0xFF:
            i = data.find(b"\xff", i)  # stray bytes between segments: libjpeg skips them too
            if i < 0:
                break
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker == 0xD9 or i + 4 > n:  # end of the image
            break
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _JPEG_FRAMES and size is None and i + 9 <= n:
            size = (int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big"))
        i += 2 + length
        if marker == 0xDA:  # a scan: its coded data runs to the next marker that is not a restart
            start = i
            while True:
                i = data.find(b"\xff", i)
                if i < 0 or i + 1 >= n:
                    i = n
                    break
                follower = data[i + 1]
                if follower == 0x00 or 0xD0 <= follower <= 0xD7 or follower == 0xFF:
                    i += 1
                    continue
                break
            coded += i - start
    return size, coded


def png_row_bytes(data: bytes) -> tuple[int, int]:
    """Bytes the PNG's compressed data inflates to (counted up to what is needed), and the need."""
    import zlib

    i, need, have = 8, 0, 0
    inflater = zlib.decompressobj()
    while i + 8 <= len(data):
        length = int.from_bytes(data[i:i + 4], "big")
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + length]
        i += 12 + length
        if kind == b"IHDR" and len(body) >= 13:
            need = _png_need(body)
        elif kind == b"IDAT" and have < need:
            try:
                have += len(inflater.decompress(body, _INFLATE_STEP))
                while inflater.unconsumed_tail and have < need:
                    have += len(inflater.decompress(inflater.unconsumed_tail, _INFLATE_STEP))
            except zlib.error:
                break
        elif kind == b"IEND":
            break
    return have, need


def _png_need(header: bytes) -> int:
    """Bytes of filtered rows a PNG of this IHDR inflates to (each row: a filter byte, then pixels)."""
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    bits = header[8] * _PNG_CHANNELS.get(header[9], 4)

    def rows(w: int, h: int) -> int:
        return h * (1 + (w * bits + 7) // 8) if w > 0 and h > 0 else 0

    if header[12] != 1:
        return rows(width, height)
    return sum(rows((width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy)
               for x0, y0, dx, dy in _ADAM7)
