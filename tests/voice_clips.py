"""Sound for the voice tests: the public LibriSpeech clips, joined into conversations, as files.

`conversation()` joins clips of different speakers with pauses (and optionally noise under it),
and returns the samples with, per speaker, the reference speech: the 30 ms frames of each clip
within 30 dB of its loud level. That reference is an energy measure, independent of the detector
under test, so coverage is measured against something the pipeline did not produce.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import av
import numpy as np

from consent_registry.media.sound import SAMPLE_RATE, pcm_chunks

from conftest import SHARED_DATA

AUDIO = SHARED_DATA / "audio"
FRAME_S = 0.03


@cache
def clip(name: str) -> np.ndarray:
    """A public clip (e.g. '1688-0000') as 16 kHz float samples."""
    path = AUDIO / f"{name}.flac"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: the tests need ../shared/data/public")
    return np.concatenate(list(pcm_chunks(path)))


def speaker_of(name: str) -> str:
    """The LibriSpeech speaker id in a clip's name."""
    return name.split("-")[0]


def reference_speech(samples: np.ndarray, offset: float) -> list[tuple[float, float]]:
    """Frames within 30 dB of the clip's loud level (its 95th percentile), shifted by offset."""
    n = int(FRAME_S * SAMPLE_RATE)
    frames = samples[:samples.size - samples.size % n].reshape(-1, n)
    level = 20 * np.log10(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) + 1e-9)
    loud = level > np.percentile(level, 95) - 30
    return [(offset + i * FRAME_S, offset + (i + 1) * FRAME_S) for i in np.flatnonzero(loud)]


@dataclass(frozen=True)
class Conversation:
    """Joined clips and, per speaker, their reference speech."""

    samples: np.ndarray
    speech: dict[str, list[tuple[float, float]]]


def conversation(names: list[str], *, pause_s: float = 0.6, noise_db: float | None = None,
                 seed: int = 0) -> Conversation:
    """The clips one after another with pauses, optionally with white noise at noise_db dBFS."""
    pieces: list[np.ndarray] = []
    speech: dict[str, list[tuple[float, float]]] = {}
    position = 0
    for name in names:
        samples = clip(name)
        speech.setdefault(speaker_of(name), []).extend(
            reference_speech(samples, position / SAMPLE_RATE))
        pieces += [samples, np.zeros(int(pause_s * SAMPLE_RATE), np.float32)]
        position += samples.size + int(pause_s * SAMPLE_RATE)
    joined = np.concatenate(pieces)
    if noise_db is not None:
        rng = np.random.default_rng(seed)
        joined = joined + rng.normal(scale=10 ** (noise_db / 20), size=joined.size).astype(np.float32)
    return Conversation(joined.astype(np.float32), speech)


def overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Seconds two lists of spans have in common (each list's spans do not overlap each other)."""
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


def write_sound(path: Path, samples: np.ndarray, *, container: str = "flac", rate: int = 44100) -> Path:
    """Float samples at 16 kHz written as a stereo file at another rate (decoding must convert)."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream("flac" if container == "flac" else "aac", rate=rate, layout="stereo")
        resampler = av.AudioResampler(format=stream.format.name, layout="stereo", rate=rate)
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for converted in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(converted):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def flac_bytes(samples: np.ndarray, tmp_path: Path, name: str = "clip.flac") -> bytes:
    """The samples as the bytes of a FLAC file, as a recorder would upload them."""
    return write_sound(tmp_path / name, samples).read_bytes()


def music(seconds: float, *, seed: int = 0) -> np.ndarray:
    """A synthesised melody: notes with harmonics and a bass line, no voice."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    out = np.zeros_like(t)
    notes = [262, 294, 330, 349, 392, 440, 494, 523]
    note = int(0.5 * SAMPLE_RATE)
    for first in range(0, t.size, note):
        tt = t[first:first + note] - t[first]
        envelope = np.exp(-3 * tt)
        high, low = notes[rng.integers(0, 8)], notes[rng.integers(0, 8)] / 2
        for h in range(1, 6):
            out[first:first + note] += envelope * np.sin(2 * np.pi * high * h * tt) / h
        for h in range(1, 4):
            out[first:first + note] += 0.5 * envelope * np.sin(2 * np.pi * low * h * tt) / h
    return (0.5 * out / np.abs(out).max()).astype(np.float32)
