"""Sound as the voice analysis hears it: 16 kHz mono float samples, decoded with PyAV in chunks.

Pure functions over a file path, no Flask, no database. A long recording is never held whole:
`pcm_chunks` yields pieces of at most `chunk_s` seconds, so memory stays bounded whatever the
length. Any accepted audio file and the first sound track of any accepted video decode the same way.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 16_000
CHUNK_SECONDS = 30.0


def has_sound(path: str | Path) -> bool:
    """Whether the file has an audio stream at all (a silent video has none)."""
    with av.open(str(path)) as container:
        return bool(container.streams.audio)


def duration_of(path: str | Path) -> float | None:
    """The length of the first audio stream in seconds, or None when the file does not say."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if container.duration:
            return container.duration / av.time_base
    return None


def pcm_chunks(path: str | Path, *, chunk_s: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
    """The first audio stream as float32 samples in [-1, 1], 16 kHz mono, in chunks of chunk_s."""
    chunk = max(1, int(chunk_s * SAMPLE_RATE))
    pending: list[np.ndarray] = []
    held = 0
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        for frame in _frames(container, stream):
            for out in resampler.resample(frame):
                pending.append(out.to_ndarray().reshape(-1))
                held += pending[-1].size
            while held >= chunk:
                joined = np.concatenate(pending)
                yield _as_float(joined[:chunk])
                pending, held = [joined[chunk:]], joined.size - chunk
        for out in resampler.resample(None):
            pending.append(out.to_ndarray().reshape(-1))
    rest = np.concatenate(pending) if pending else np.empty(0, np.int16)
    for start in range(0, rest.size, chunk):
        yield _as_float(rest[start:start + chunk])


def _frames(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> Iterator[
        av.AudioFrame]:
    """The stream's decoded frames; a damaged packet ends the sound rather than the analysis."""
    try:
        yield from container.decode(stream)
    except av.error.InvalidDataError:
        return


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
