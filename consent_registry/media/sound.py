"""Sound as the voice analysis hears it: 16 kHz mono float samples, decoded with PyAV in chunks.

Pure functions over a file path, no Flask, no database. A long recording is never held whole:
`pcm_chunks` yields pieces of at most `chunk_s` seconds, so memory stays bounded whatever the
length. Any accepted audio file and the first sound track of any accepted video decode the same way.

Sound that does not decode whole is never heard as silence: a decode error, a frame the decoder
marks corrupt, or less sound than the file's packets and header claim raises `DamagedMedia`
(media/completeness.py) when the stream is read to its end, so the analysis fails with a reason
instead of finding "no voices" in a stretch nobody heard.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from .completeness import (
    DamagedMedia,
    Timeline,
    check_whole,
    only_stream,
    packets_of,
    stream_claims,
)

SAMPLE_RATE = 16_000
CHUNK_SECONDS = 30.0
# Loud enough to be somebody: a 30 ms frame whose level is at least AUDIBLE_DBFS (speech into a
# phone is -35 to -20 dBFS, a quiet room -60 to -50). Audible frames less than AUDIBLE_GAP_S apart
# are one stretch.
LEVEL_FRAME_S = 0.03
AUDIBLE_DBFS = -45.0
AUDIBLE_GAP_S = 1.0


def has_sound(path: str | Path) -> bool:
    """Whether the file has an audio stream at all (a silent video has none)."""
    with av.open(str(path)) as container:
        return bool(container.streams.audio)


def duration_of(path: str | Path) -> float | None:
    """The length of the first audio stream in seconds as its packets say (headers can lie), or None."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        return packets_of(container, container.streams.audio[0]).packets_s or None


def pcm_chunks(path: str | Path, *, chunk_s: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
    """The first audio stream as float32 samples in [-1, 1], 16 kHz mono, in chunks of chunk_s.

    Raises DamagedMedia when the sound does not decode whole (checked once read to its end).
    """
    chunk = max(1, int(chunk_s * SAMPLE_RATE))
    pending: list[np.ndarray] = []
    held = 0
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return
        stream = only_stream(list(container.streams.audio), code="sound_tracks")
        claimed_s, claimed_frames = stream_claims(container, stream)
        timeline = Timeline()
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        for frame in _frames(container, stream, timeline):
            for out in resampler.resample(frame):
                pending.append(out.to_ndarray().reshape(-1))
                held += pending[-1].size
            while held >= chunk:
                joined = np.concatenate(pending)
                yield _as_float(joined[:chunk])
                pending, held = [joined[chunk:]], joined.size - chunk
        for out in resampler.resample(None):
            pending.append(out.to_ndarray().reshape(-1))
        check_whole(kind="sound", timeline=timeline, claimed_s=claimed_s,
                    claimed_frames=claimed_frames)
    rest = np.concatenate(pending) if pending else np.empty(0, np.int16)
    for start in range(0, rest.size, chunk):
        yield _as_float(rest[start:start + chunk])


def _frames(container: av.container.InputContainer, stream: av.audio.stream.AudioStream,
            timeline: Timeline) -> Iterator[av.AudioFrame]:
    """The stream's decoded frames, counted; a damaged packet or frame raises DamagedMedia.

    (It used to end the sound quietly: a copy of a video with its first sound packet damaged then
    had "no voices", and only its faces blocked publication.)
    """
    try:
        for packet in container.demux(stream):
            timeline.packet(packet)
            for frame in packet.decode():
                if frame.is_corrupt:
                    raise DamagedMedia("sound_damaged",
                                       f"a damaged frame after {timeline.decoded_s:.2f} s")
                timeline.sound(frame.samples / frame.sample_rate if frame.sample_rate else 0.0)
                yield frame
    except av.error.FFmpegError as error:
        raise DamagedMedia("sound_damaged", f"decoding stopped after {timeline.decoded_s:.2f} s: "
                                            f"{error.strerror or type(error).__name__}") from error


class Loudness:
    """Where a stream of 16 kHz chunks is audible, measured as it passes (bounded memory)."""

    def __init__(self) -> None:
        """Nothing heard yet."""
        self._frame = int(LEVEL_FRAME_S * SAMPLE_RATE)
        self._carry = np.empty(0, np.float32)
        self._position = 0  # samples measured so far
        self.spans: list[list[float]] = []  # [start_s, end_s] of audible stretches

    def passing(self, chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """The chunks unchanged, measured on their way."""
        for chunk in chunks:
            self.feed(chunk)
            yield chunk

    def feed(self, chunk: np.ndarray) -> None:
        """Measure the next samples."""
        samples = np.concatenate([self._carry, np.asarray(chunk, np.float32)])
        usable = samples.size - samples.size % self._frame
        self._carry = samples[usable:]
        frames = samples[:usable].reshape(-1, self._frame).astype(np.float64)
        level = 20 * np.log10(np.sqrt((frames ** 2).mean(axis=1)) + 1e-12)
        for index in np.flatnonzero(level >= AUDIBLE_DBFS):
            start = (self._position + index * self._frame) / SAMPLE_RATE
            end = start + LEVEL_FRAME_S
            if self.spans and start - self.spans[-1][1] < AUDIBLE_GAP_S:
                self.spans[-1][1] = end
            else:
                self.spans.append([start, end])
        self._position += usable

    @property
    def audible_s(self) -> float:
        """Seconds of audible stretches in all."""
        return sum(end - start for start, end in self.spans)


def _as_float(samples: np.ndarray) -> np.ndarray:
    """int16 samples as float32 in [-1, 1]."""
    return samples.astype(np.float32) / 32768.0


def extract(path: str | Path, *, start: float, end: float) -> np.ndarray:
    """The samples between start and end seconds (decoded from the beginning: cheap for sound)."""
    first, last = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
    pieces: list[np.ndarray] = []
    position = 0
    for chunk in pcm_chunks(path):
        if position + chunk.size > first:
            pieces.append(chunk[max(0, first - position):max(0, last - position)])
        position += chunk.size
        if position >= last:
            break
    return np.concatenate(pieces) if pieces else np.empty(0, np.float32)


def wav_bytes(samples: np.ndarray) -> bytes:
    """Float samples at 16 kHz as a mono 16-bit WAV file, playable in every browser."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()
