"""Taking in an uploaded file: judged by its content, checked by really opening it, stored once.

The steps, each usable on its own:

1. `Spool` / `spool_stream`: copy the upload to a temporary file in chunks while computing its
   SHA-256 and counting bytes. The first bytes say what kind of file it claims to be (photo, video,
   audio), and so which size limit applies; the copy stops as soon as that limit is passed.
2. `probe`: open the file with the decoder of the type its first bytes named (Pillow for photos,
   PyAV with that one demuxer for video and audio) and read what the rest of the service needs:
   kind, content type, width and height (as displayed), duration. Anything that does not open,
   decode or make sense is refused.
3. `ingest_spooled`: the same content again is the existing item; a new one is stored and then
   its row is inserted in the same transaction as the audit event. When the database step fails
   the stored object is deleted again, so there is never a file without its row or the reverse.

Nothing here looks at the file's name or the content type the client claimed, and nothing here
reads a Flask request: views hand in a stream (or a Spool they let the form parser fill).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import av
import pillow_heif
import sqlalchemy as sa
from PIL import ExifTags, Image, ImageFile

from ..audit import Actor, record
from ..db import db
from ..publishing.slots import StillPublished, prepare_delete
from ..storage import Storage
from ..translate import _
from .completeness import (
    ESTIMATED_DURATION_FORMATS,
    DamagedMedia,
    Timeline,
    allowed_gap,
    check_photo_filled,
    stream_claims,
)
from .models import Media

log = logging.getLogger(__name__)

pillow_heif.register_heif_opener()

CHUNK = 1024 * 1024
# Enough of the start of a file for every signature below (ISO BMFF lists its brands early).
SNIFF_BYTES = 256
STORAGE_PREFIX = "media/originals"
# Frames or packets read while looking for the first decodable frame of a stream.
MAX_PACKETS_TO_FIRST_FRAME = 500

# Orientations 5 to 8 turn the picture a quarter, so the displayed width is the stored height.
_QUARTER_TURN_ORIENTATIONS = frozenset({5, 6, 7, 8})

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
_HEIF_GENERIC_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_M4A_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P "})
_QUICKTIME_BRAND = b"qt  "
_MP4_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9", b"mp41",
     b"mp42", b"mp71", b"avc1", b"M4V ", b"M4VH", b"M4VP", b"dash", b"XAVC", b"MSNV", b"mmp4"}
)
# QuickTime files from before the ftyp box start straight with one of these atoms.
_QUICKTIME_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"pnot"})


@dataclass(frozen=True, slots=True)
class Guess:
    """What a file's first bytes say it is: the kind decides the size limit, the format the decoder."""

    kind: str
    format: str
    content_type: str


# The decoder each format is opened with: never auto-detected, so a file that only looks like
# one type cannot steer ffmpeg into another demuxer (playlists, concat lists, ...).
PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "heif": "HEIF"}
AV_FORMATS = {"mp4": "mov", "mov": "mov", "m4a": "mov", "webm": "webm", "wav": "wav",
              "mp3": "mp3", "flac": "flac", "ogg": "ogg"}
_ISO_MEDIA = frozenset({"mp4", "mov", "m4a"})
EXTENSIONS = {
    "image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/heic": "heic",
    "image/heif": "heif", "video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "webm",
    "audio/wav": "wav", "audio/mpeg": "mp3", "audio/mp4": "m4a", "audio/flac": "flac",
    "audio/ogg": "ogg",
}


class IngestError(Exception):
    """A refused upload: `code` for programs, `message` for people, `status` for HTTP."""

    STATUSES = {"too_large": 413, "unsupported_type": 415, "corrupt": 422, "too_many_pixels": 422,
                "empty": 422}

    def __init__(self, code: str, message: str) -> None:
        """Keep the code and the (translated) message."""
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        """The HTTP status this refusal maps to: 413, 415 or 422."""
        return self.STATUSES[self.code]


@dataclass(frozen=True, slots=True)
class Limits:
    """The most bytes per kind and the most pixels a photo or video frame may have."""

    photo: int
    video: int
    audio: int
    pixels: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Limits:
        """The limits an app is configured with."""
        return cls(photo=int(config["MAX_PHOTO_BYTES"]), video=int(config["MAX_VIDEO_BYTES"]),
                   audio=int(config["MAX_AUDIO_BYTES"]), pixels=int(config["MAX_IMAGE_PIXELS"]))

    def bytes_for(self, kind: str) -> int:
        """The size limit of a kind."""
        return {"photo": self.photo, "video": self.video, "audio": self.audio}[kind]

    @property
    def largest(self) -> int:
        """The largest size limit: no upload can be longer than this."""
        return max(self.photo, self.video, self.audio)


def _unsupported() -> IngestError:
    """The refusal for a file that is none of the accepted types."""
    return IngestError("unsupported_type", _(
        "This type of file is not accepted. Upload a photo (JPEG, PNG, WebP, HEIC), a video "
        "(MP4, MOV, WebM) or a sound recording (WAV, MP3, M4A, FLAC, OGG)."))


def _corrupt(what: str) -> IngestError:
    """The refusal for a file that does not open or decode as what it claims to be."""
    return IngestError("corrupt", _("The file looks like %(what)s but cannot be read: it is "
                                    "damaged or incomplete.", what=what))


def _kind_label(kind: str) -> str:
    """A kind as people call it."""
    return {"photo": _("a photo"), "video": _("a video"), "audio": _("a sound recording")}[kind]


def readable_size(size: int) -> str:
    """A size limit for people, in the largest unit that keeps it whole-ish."""
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} bytes"


def _too_large(kind: str, limit: int) -> IngestError:
    """The refusal for a file over its kind's limit."""
    return IngestError("too_large", _("The file is larger than the %(limit)s allowed for %(kind)s.",
                                      limit=readable_size(limit), kind=_kind_label(kind)))


def _iso_brands(head: bytes) -> tuple[bytes, frozenset[bytes]] | None:
    """The major brand and all brands of an ISO base media file (MP4, MOV, HEIF), or None."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    end = min(max(box_size, 16), len(head))
    brands = {head[i:i + 4] for i in range(16, end - 3, 4)}
    return head[8:12], frozenset(brands | {head[8:12]})


def _sniff_iso(head: bytes) -> Guess | None:
    """HEIF photos, MP4 and MOV videos and M4A recordings all start with an ftyp box."""
    found = _iso_brands(head)
    if found is None:
        if head[4:8] in _QUICKTIME_ATOMS:
            return Guess("video", "mov", "video/quicktime")
        return None
    major, brands = found
    if major in _AVIF_BRANDS or (major in _HEIF_GENERIC_BRANDS and brands & _AVIF_BRANDS):
        return None  # AVIF: not among the accepted types
    if major in _HEIF_BRANDS:
        return Guess("photo", "heif", "image/heic")
    if major in _HEIF_GENERIC_BRANDS:
        return Guess("photo", "heif", "image/heif")
    if major in _M4A_BRANDS:
        return Guess("audio", "m4a", "audio/mp4")
    if major == _QUICKTIME_BRAND:
        return Guess("video", "mov", "video/quicktime")
    if brands & _MP4_BRANDS:
        return Guess("video", "mp4", "video/mp4")
    if _QUICKTIME_BRAND in brands:
        return Guess("video", "mov", "video/quicktime")
    return None


def _is_mp3_frame(head: bytes) -> bool:
    """An MPEG audio frame header of layer I-III (ADTS AAC shares the sync word but has layer 0)."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 0b11, (head[1] >> 1) & 0b11
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 0b11
    return version != 0b01 and layer != 0 and bitrate != 0b1111 and rate != 0b11


def sniff(head: bytes) -> Guess | None:
    """What the first bytes of a file say it is, or None when it is none of the accepted types."""
    if head.startswith(b"\xff\xd8\xff"):
        return Guess("photo", "jpeg", "image/jpeg")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Guess("photo", "png", "image/png")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Guess("photo", "webp", "image/webp")
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return Guess("audio", "wav", "audio/wav")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        # Matroska and WebM share the EBML header; its DocType says which.
        return Guess("video", "webm", "video/webm") if b"\x42\x82\x84webm" in head[:64] else None
    if head.startswith(b"fLaC"):
        return Guess("audio", "flac", "audio/flac")
    if head.startswith(b"OggS"):
        return Guess("audio", "ogg", "audio/ogg")
    if head.startswith(b"ID3") or _is_mp3_frame(head):
        return Guess("audio", "mp3", "audio/mpeg")
    return _sniff_iso(head)


@dataclass(frozen=True, slots=True)
class Spooled:
    """An upload copied to a temporary file, with its digest, size and the type its start names."""

    path: Path
    sha256: str
    size: int
    guess: Guess

    def discard(self) -> None:
        """Remove the temporary file (again: no error when it is gone)."""
        self.path.unlink(missing_ok=True)


class Spool:
    """A write-only sink that spools an upload to a temporary file, hashing and limiting as it goes.

    It is also a stream factory's product for werkzeug's form parser (which only writes and seeks):
    once refused, it drops the rest of the file without storing it, so the other files of the
    same form can still be read. `finish()` raises the refusal, or returns the Spooled file.
    """

    def __init__(self, *, limits: Limits, tmp_dir: str | Path | None = None) -> None:
        """Open a fresh temporary file (0600, removed again on any refusal)."""
        self.limits = limits
        fd, name = tempfile.mkstemp(prefix="ingest-", suffix=".part", dir=tmp_dir)
        self.path = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self._head = bytearray()
        self.size = 0
        self.guess: Guess | None = None
        self.error: IngestError | None = None

    def _refuse(self, error: IngestError) -> None:
        """Remember the first refusal and remove what was written so far."""
        if self.error is None:
            self.error = error
        self.discard()

    def _decide(self) -> None:
        """Name the type from the first bytes; refuse when they name none of the accepted types."""
        self.guess = sniff(bytes(self._head))
        if self.guess is None:
            self._refuse(_unsupported())

    def write(self, data: bytes) -> int:
        """Take the next chunk; after a refusal chunks are counted as read and dropped."""
        if self.error is not None:
            return len(data)
        self.size += len(data)
        if self.guess is None and len(self._head) < SNIFF_BYTES:
            self._head += data[: SNIFF_BYTES - len(self._head)]
            if len(self._head) >= SNIFF_BYTES:
                self._decide()
        if self.guess is not None and self.size > self.limits.bytes_for(self.guess.kind):
            self._refuse(_too_large(self.guess.kind, self.limits.bytes_for(self.guess.kind)))
        if self.error is not None or self._file is None:
            return len(data)
        self._digest.update(data)
        self._file.write(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        """The form parser rewinds a finished file part; there is nothing to rewind here."""
        return 0

    @property
    def refused(self) -> bool:
        """Whether the upload has been refused already (the rest is not worth reading)."""
        return self.error is not None

    def finish(self) -> Spooled:
        """The spooled file, or the refusal (temporary file removed) as an IngestError."""
        if self.error is None and self.guess is None:
            if self.size == 0:
                self._refuse(IngestError("empty", _("The file is empty.")))
            else:
                self._decide()
        if self.error is not None or self.guess is None:
            self.discard()
            raise self.error or _unsupported()
        assert self._file is not None
        self._file.close()
        self._file = None
        return Spooled(self.path, self._digest.hexdigest(), self.size, self.guess)

    def discard(self) -> None:
        """Close and remove the temporary file; safe to call more than once."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)


class SpoolFactory:
    """A werkzeug `stream_factory` that spools every file part of a form into its own Spool.

    Used as a context manager, it removes on leaving whatever temporary files are left, also when
    parsing fails half-way.
    """

    def __init__(self, *, limits: Limits, tmp_dir: str | Path | None = None) -> None:
        """Keep the limits for the spools to come."""
        self.limits = limits
        self.tmp_dir = tmp_dir
        self.spools: list[Spool] = []

    def __call__(self, total_content_length: int | None = None, content_type: str | None = None,
                 filename: str | None = None, content_length: int | None = None) -> Spool:
        """A new spool for the next file part (what the client says about it is ignored)."""
        spool = Spool(limits=self.limits, tmp_dir=self.tmp_dir)
        self.spools.append(spool)
        return spool

    def __enter__(self) -> SpoolFactory:
        """Nothing to set up."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Remove every temporary file still there."""
        for spool in self.spools:
            spool.discard()


def spool_stream(
    stream: BinaryIO, *, limits: Limits, tmp_dir: str | Path | None = None, chunk_size: int = CHUNK
) -> Spooled:
    """Copy a stream to a temporary file, refusing as soon as its kind's limit is passed."""
    spool = Spool(limits=limits, tmp_dir=tmp_dir)
    try:
        while chunk := stream.read(chunk_size):
            spool.write(chunk)
            if spool.refused:
                break  # stop reading: the rest would be thrown away anyway
        return spool.finish()
    except BaseException:
        spool.discard()
        raise


@dataclass(frozen=True, slots=True)
class Probed:
    """What opening the file showed it to be."""

    kind: str
    content_type: str
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse pictures with more pixels than allowed (decompression bombs among them)."""
    if width <= 0 or height <= 0:
        raise IngestError("corrupt", _("The picture has no size."))
    if width * height > max_pixels:
        raise IngestError("too_many_pixels", _(
            "The picture has too many pixels (%(width)d by %(height)d; at most %(max)s million).",
            width=width, height=height, max=f"{max_pixels / 1_000_000:g}"))


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 when absent or unreadable)."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a damaged EXIF block does not make the picture unreadable
        return 1
    return value if isinstance(value, int) else 1


def _too_little_picture(width: int, height: int) -> IngestError:
    """The refusal for a photo whose data cannot fill the pixels its header claims."""
    return IngestError("corrupt", _(
        "The photo claims %(width)d by %(height)d pixels but holds too little picture data to fill "
        "them: it is damaged or made to look larger than it is.", width=width, height=height))


def probe_photo(path: Path, *, guess: Guess, max_pixels: int) -> Probed:
    """Open a photo with Pillow: size check before decoding, verify, then decode it whole.

    A photo whose data cannot fill the pixels it claims (media/completeness.py) is refused before
    it is decoded: decoders pad it, and analysis would scan megapixels of nothing.
    """
    formats = [PILLOW_FORMATS[guess.format]]
    # A process-wide Pillow switch that some libraries turn on when imported (face_recognition
    # does): with it, a cut-off photo decodes padded with grey instead of failing. Ours is off.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        # Image.open reads only the header; Pillow's own decompression-bomb guard runs here too.
        with Image.open(path, formats=formats) as img:
            _check_pixels(*img.size, max_pixels)
            if guess.format in ("png", "webp") and getattr(img, "is_animated", False):
                raise IngestError("unsupported_type", _(
                    "Animated pictures are not accepted; upload the recording as a video."))
            img.verify()
            claimed = img.size
        try:
            check_photo_filled(path.read_bytes(), fmt=guess.format)
        except DamagedMedia:
            raise _too_little_picture(*claimed) from None
        with Image.open(path, formats=formats) as img:
            _check_pixels(*img.size, max_pixels)
            turns = _orientation(img) in _QUARTER_TURN_ORIENTATIONS
            img.load()
            width, height = img.size
    except IngestError:
        raise
    except Image.DecompressionBombError:
        raise IngestError("too_many_pixels", _("The picture has too many pixels.")) from None
    except Exception:
        raise _corrupt(_("a photo")) from None
    if turns:
        width, height = height, width
    return Probed("photo", guess.content_type, width, height)


def _is_attached_picture(stream: Any) -> bool:
    """Cover art in an audio file shows up as a one-frame video stream."""
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _first_frame(container: Any, stream: Any) -> Any:
    """Decode the stream's first frame, or raise when none comes within a few hundred packets."""
    for count, packet in enumerate(container.demux(stream)):
        for frame in packet.decode():
            return frame
        if count >= MAX_PACKETS_TO_FIRST_FRAME:
            break
    for frame in stream.codec_context.decode(None):  # flush: a decoder may hold the first frame
        return frame
    raise ValueError("no frame decoded")


def _measured_duration(path: Path, *, guess: Guess, what: str) -> float | None:
    """The length in seconds as the packets of the file's streams say; None when they say nothing.

    Headers can lie both ways: duration fields set to 0xFFFFFFFF read as 0.844 s for a 10 s video
    (analysis then paced its progress by that and sat at 99%), so the packets' timestamps give the
    length. A header that claims much more than the packets (a cut-off file, a forged index)
    means part of the file is missing: refused as damaged (media/completeness.py's tolerance).
    """
    with av.open(str(path), format=AV_FORMATS[guess.format], metadata_errors="replace") as container:
        streams = [s for s in container.streams if s.type in ("video", "audio")
                   and not _is_attached_picture(s)]
        timelines = {s.index: Timeline() for s in streams}
        for packet in container.demux(streams):
            timelines[packet.stream.index].packet(packet)
        for stream in streams:
            claimed_s, claimed_frames = stream_claims(container, stream)
            timeline = timelines[stream.index]
            if claimed_frames is not None and timeline.packets < claimed_frames:
                raise _corrupt(what)
            if claimed_s is not None and claimed_s - timeline.packets_s > allowed_gap(claimed_s):
                raise _corrupt(what)
        starts = [t.packets_start for t in timelines.values() if t.packets_start is not None]
        ends = [t.packets_end for t in timelines.values() if t.packets_end is not None]
        if not starts or not ends:
            return None
        length = max(ends) - min(starts)
        claimed = (container.duration / av.time_base
                   if container.duration and container.duration > 0
                   and container.format.name not in ESTIMATED_DURATION_FORMATS else None)
        if claimed is not None and claimed - length > allowed_gap(claimed):
            raise _corrupt(what)
    return round(length, 3) if length > 0 else None


def _kind_of_streams(guess: Guess, videos: list[Any], audios: list[Any]) -> str:
    """Whether the opened file is a video or a sound recording, by its streams and container."""
    if guess.format in _ISO_MEDIA:  # MP4, MOV and M4A are one container: the streams decide
        if videos:
            return "video"
        if audios:
            return "audio"
        raise IngestError("corrupt", _("The file contains neither video nor sound."))
    if guess.kind == "video":
        if not videos:
            raise IngestError("corrupt", _("The video has no video stream."))
        return "video"
    if videos:  # e.g. Ogg with Theora video: not one of the accepted video types
        raise _unsupported()
    if not audios:
        raise IngestError("corrupt", _("The sound recording has no audio stream."))
    return "audio"


def probe_av(path: Path, *, guess: Guess, max_pixels: int) -> Probed:
    """Open a video or sound recording with PyAV, forcing the demuxer its first bytes named."""
    what = _("a video") if guess.kind == "video" else _("a sound recording")
    try:
        container = av.open(str(path), format=AV_FORMATS[guess.format], metadata_errors="replace")
    except Exception:
        raise _corrupt(what) from None
    try:
        with container:
            videos = [s for s in container.streams.video if not _is_attached_picture(s)]
            audios = list(container.streams.audio)
            kind = _kind_of_streams(guess, videos, audios)
            if kind == "video":
                stream = videos[0]
                width, height = stream.codec_context.width, stream.codec_context.height
                _check_pixels(width, height, max_pixels)
                frame = _first_frame(container, stream)
                if abs(int(getattr(frame, "rotation", 0) or 0)) % 180 == 90:
                    width, height = height, width  # phones record portrait as turned landscape
                content_type = {"mov": "video/quicktime", "webm": "video/webm"}.get(
                    guess.format, "video/mp4")
                return Probed("video", content_type, width, height,
                              _measured_duration(path, guess=guess, what=what))
            stream = audios[0]
            _first_frame(container, stream)
            content_type = "audio/mp4" if guess.format in _ISO_MEDIA else guess.content_type
            return Probed("audio", content_type,
                          duration_s=_measured_duration(path, guess=guess, what=what))
    except IngestError:
        raise
    except Exception:
        raise _corrupt(what) from None


def probe(path: Path, *, guess: Guess, max_pixels: int) -> Probed:
    """Open the file as what its first bytes say it is; IngestError when it is not."""
    if guess.kind == "photo":
        return probe_photo(path, guess=guess, max_pixels=max_pixels)
    return probe_av(path, guess=guess, max_pixels=max_pixels)


def display_name(name: str | None) -> str | None:
    """An uploaded file's name, fit to show: no folders, no control or direction characters."""
    if not name:
        return None
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    # Category C covers control characters and the invisible format characters (right-to-left
    # overrides among them) that make "gpj.exe" read as "exe.jpg".
    name = "".join(ch for ch in name if not unicodedata.category(ch).startswith("C")).strip()
    return name[:255] or None


def media_by_sha256(sha256: str) -> Media | None:
    """The item with this content, if it is stored already."""
    return db.session.execute(sa.select(Media).where(Media.sha256 == sha256)).scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The item an upload ended up as, and whether it is new (False: the same content was there)."""

    media: Media
    created: bool


def _delete_quietly(storage: Storage, key: str) -> None:
    """Remove a stored object while another error is on its way out; log rather than mask it."""
    try:
        storage.delete(key)
    except Exception:
        log.exception("could not remove stored object %s after a failed upload", key)


def ingest_spooled(
    spooled: Spooled,
    *,
    limits: Limits,
    storage: Storage,
    actor: Actor,
    uploaded_by: int | None,
    title: str | None = None,
    taken_on: date | None = None,
    original_name: str | None = None,
) -> IngestResult:
    """Check, store and register a spooled upload; the temporary file is always removed.

    This function ends the caller's transaction and commits its own: a large file is checked and
    stored with no transaction open (SQLite would otherwise hold its write lock for that long),
    and the stored object must be removed again if, and only if, the row did not commit.
    """
    try:
        existing = media_by_sha256(spooled.sha256)
        if existing is not None:
            return IngestResult(existing, created=False)
        db.session.commit()
        probed = probe(spooled.path, guess=spooled.guess, max_pixels=limits.pixels)
        # The kind may differ from the first guess (an MP4 with only sound is a recording).
        if spooled.size > limits.bytes_for(probed.kind):
            raise _too_large(probed.kind, limits.bytes_for(probed.kind))
        with spooled.path.open("rb") as handle:
            key = storage.put_stream(handle, prefix=STORAGE_PREFIX, size_hint=spooled.size)
    finally:
        spooled.discard()
    media = Media(
        kind=probed.kind, status="queued", progress=0, sha256=spooled.sha256, storage_key=key,
        content_type=probed.content_type, size_bytes=spooled.size, width=probed.width,
        height=probed.height, duration_s=probed.duration_s, title=title, taken_on=taken_on,
        original_name=display_name(original_name), uploaded_by=uploaded_by,
    )
    try:
        db.session.add(media)
        db.session.flush()
        record("media:upload", actor=actor, subject_type="media", subject_id=media.id,
               details={"kind": media.kind, "content_type": media.content_type,
                        "size_bytes": media.size_bytes, "sha256": media.sha256})
        db.session.commit()
    except sa.exc.IntegrityError:
        # The same file arrived twice at once and the other upload committed first.
        db.session.rollback()
        _delete_quietly(storage, key)
        existing = media_by_sha256(spooled.sha256)
        if existing is None:
            raise
        return IngestResult(existing, created=False)
    except BaseException:
        db.session.rollback()
        _delete_quietly(storage, key)
        raise
    return IngestResult(media, created=True)


def ingest_stream(
    stream: BinaryIO,
    *,
    limits: Limits,
    storage: Storage,
    actor: Actor,
    uploaded_by: int | None,
    title: str | None = None,
    taken_on: date | None = None,
    original_name: str | None = None,
    tmp_dir: str | Path | None = None,
) -> IngestResult:
    """Spool a stream and ingest it: the whole path from bytes to a registered media item."""
    spooled = spool_stream(stream, limits=limits, tmp_dir=tmp_dir)
    return ingest_spooled(spooled, limits=limits, storage=storage, actor=actor,
                          uploaded_by=uploaded_by, title=title, taken_on=taken_on,
                          original_name=original_name)


def delete_media(media: Media, *, actor: Actor, storage: Storage) -> None:
    """Remove an item's rows (audited, committed), then its stored files.

    An item queued or live on a channel raises StillPublished (nothing written): the proof of a
    live post keeps its item until the post is taken down. Rows go first: a failure after the
    commit leaves an unreferenced object (logged) rather than a row pointing at nothing.
    """
    media_id = media.id
    try:
        prepare_delete(media_id)
    except StillPublished:
        db.session.rollback()
        raise
    keys = [media.storage_key, *([media.display_key] if media.display_key else []),
            *(a.crop_key for a in media.appearances if a.crop_key)]
    record("media:delete", actor=actor, subject_type="media", subject_id=media.id,
           details={"kind": media.kind, "sha256": media.sha256,
                    "appearances": len(media.appearances)})
    db.session.delete(media)
    try:
        db.session.commit()
    except sa.exc.IntegrityError:  # a publication took a slot since the check
        db.session.rollback()
        raise StillPublished(media_id) from None
    for key in keys:
        _delete_quietly(storage, key)
