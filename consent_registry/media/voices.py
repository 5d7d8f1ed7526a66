"""Voices in sound: where somebody speaks, and which stretches are the same speaker.

Pure code over 16 kHz float samples (media/sound.py), no Flask, no database. In the style of
faces.py: a tiny `VoiceEngine` protocol and one factory, `make_voice_engine()`, which gives Silero's
voice activity detector (its weights ship in the `silero-vad` package) and Resemblyzer's speaker
encoder (weights in its wheel), both on the CPU build of torch.

The pipeline, streaming with bounded memory (only 256 numbers per 0.4 s of speech are kept):
1. Speech: the detector gives a probability per 32 ms frame; a region starts at 0.5 and ends
   below 0.35, is padded by 0.25 s on both sides, and regions closer than 0.5 s are joined.
   Music, tones, noise and silence score near zero (measured: white noise, a loud tone, a
   synthesised melody and brown noise gave no speech at all; webrtcvad called all but the quiet
   noise speech, which is why it is not used). Regions longer than a minute are split.
2. Embeddings: windows of 1.6 s (the encoder's own partial length) every 0.4 s of each region.
3. Speakers: average-linkage clustering of the windows by cosine distance, cut at 0.375, so the
   number of speakers is not known in advance. Measured on clips joined from the public
   LibriSpeech speakers (28 clips of 1 to 4 parts): the cut found the right count in 28 of 28
   between 0.35 and 0.40; 0.30 split voices, 0.45 joined two of them. Past `BLOCK` windows (~13
   minutes of speech) blocks are clustered on their own and their clusters joined by the same
   average linkage over all their windows: for unit vectors the mean distance between two sets of
   windows is 1 - (mean of one) . (mean of the other), so only each cluster's mean and size are
   kept. (Joining the clusters' normalised centroids at the window cut instead merged two of the
   three public speakers in an hour of talk: centroids are far less noisy than windows.) Every
   cluster becomes a voice, however short: a short voice is extra work for the tagger, a dropped
   one would be a person published without consent.
4. Each voice gets its segments, the mean of its embeddings (for matching, never stored) and the
   stretch of its longest segment the tagger can play.

Speed (bench/bench_voices.py): an hour of the public speakers' talk took ~75 s on two torch
threads of a quick machine (0.02 s per second of audio) and 200-220 s on one thread of a machine
about three times slower (0.055-0.061; 60x decoding alone); 3 voices found; peak ~620 MB of which
torch and the models are most (decoding alone peaks at ~150 MB).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .sound import SAMPLE_RATE

WINDOW_S = 1.6
HOP_S = 0.4
CLUSTER_THRESHOLD = 0.375
BLOCK = 2000  # windows clustered at once: a 2000x2000 distance matrix is 16 MB
SNIPPET_S = 5.0
SEGMENT_STEP_S = 0.1  # resolution at which time inside a region is given to a speaker


@dataclass(frozen=True, slots=True)
class SpeechRegion:
    """A stretch of speech (padded): where it lies in the recording, and its samples."""

    start: float
    end: float
    samples: np.ndarray


@dataclass(frozen=True, slots=True)
class Voice:
    """One speaker: when they speak, their mean embedding (kept only in memory), the best snippet."""

    segments: list[tuple[float, float]]
    encoding: np.ndarray
    snippet: tuple[float, float]

    @property
    def speech_s(self) -> float:
        """How long this speaker speaks in all."""
        return sum(end - start for start, end in self.segments)


class VoiceEngine(Protocol):
    """Finds speech in a stream of samples and embeds windows of it."""

    def speech(self, chunks: Iterable[np.ndarray]) -> Iterator[SpeechRegion]:
        """The speech regions of the stream, in order, as soon as each is complete."""
        ...

    def embed(self, samples: np.ndarray, starts: Sequence[int]) -> np.ndarray:
        """Unit-length embeddings of the WINDOW_S windows of samples beginning at each start."""
        ...


@dataclass
class SpeechTracker:
    """Per-frame speech probabilities to padded, joined regions with their samples, streaming."""

    frame: int
    on: float = 0.5
    off: float = 0.35
    pad_s: float = 0.25
    gap_s: float = 0.5
    max_s: float = 60.0
    _buffer: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    _buffer_start: int = 0
    _position: int = 0
    _raw_start: int | None = None
    _pending: list[int] | None = None
    _emitted_end: int = 0

    def feed(self, samples: np.ndarray, probabilities: Sequence[float]) -> list[SpeechRegion]:
        """Take the next samples (len(probabilities) frames of them); the regions now complete."""
        self._buffer = np.concatenate([self._buffer, samples])
        done: list[SpeechRegion] = []
        pad, gap, longest = (int(s * SAMPLE_RATE) for s in (self.pad_s, self.gap_s, self.max_s))
        for probability in probabilities:
            if self._raw_start is None and probability >= self.on:
                self._raw_start = self._position
            elif self._raw_start is not None and probability < self.off:
                done += self._close_raw(self._position, pad, gap)
            self._position += self.frame
            if self._raw_start is not None and self._position - self._open_start(pad) >= longest:
                done += self._close_raw(self._position, 0, gap)
                done += self._emit()
                self._raw_start = self._position
            if (self._pending is not None and self._raw_start is None
                    and self._position - pad - self._pending[1] >= gap):
                done += self._emit()
        self._trim(pad)
        return done

    def finish(self) -> list[SpeechRegion]:
        """The regions still open when the stream ends."""
        done: list[SpeechRegion] = []
        if self._raw_start is not None:
            done += self._close_raw(self._position, int(self.pad_s * SAMPLE_RATE),
                                    int(self.gap_s * SAMPLE_RATE))
        done += self._emit()
        return done

    def _open_start(self, pad: int) -> int:
        """Where the region being built began (its padded start)."""
        starts = [max(self._emitted_end, (self._raw_start or 0) - pad)]
        if self._pending is not None:
            starts.append(self._pending[0])
        return min(starts)

    def _close_raw(self, end: int, pad: int, gap: int) -> list[SpeechRegion]:
        """End the raw speech run at `end`; join it to the pending region or start a new one."""
        start = max(self._emitted_end, (self._raw_start or 0) - pad)
        self._raw_start = None
        padded_end = end + pad
        if self._pending is not None and start - self._pending[1] < gap:
            self._pending[1] = max(self._pending[1], padded_end)
            return []
        done = self._emit()
        self._pending = [start, padded_end]
        return done

    def _emit(self) -> list[SpeechRegion]:
        """The pending region with its samples (its end clipped to what has been heard)."""
        if self._pending is None:
            return []
        start, end = self._pending[0], min(self._pending[1], self._buffer_start + self._buffer.size)
        self._pending = None
        self._emitted_end = max(self._emitted_end, end)
        if end <= start:
            return []
        samples = self._buffer[start - self._buffer_start:end - self._buffer_start].copy()
        return [SpeechRegion(start / SAMPLE_RATE, end / SAMPLE_RATE, samples)]

    def _trim(self, pad: int) -> None:
        """Forget samples no region can still need."""
        keep = self._position - pad
        if self._pending is not None:
            keep = min(keep, self._pending[0])
        if self._raw_start is not None:
            keep = min(keep, self._raw_start - pad)
        keep = max(keep, self._emitted_end, self._buffer_start)
        self._buffer = self._buffer[keep - self._buffer_start:]
        self._buffer_start = keep


def window_starts(length: int) -> list[int]:
    """Offsets of the windows of a region of `length` samples: every HOP_S, the last flush at the end."""
    window, hop = int(WINDOW_S * SAMPLE_RATE), int(HOP_S * SAMPLE_RATE)
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, hop))
    if length - (starts[-1] + window) > hop // 2:
        starts.append(length - window)
    return starts


def cluster_windows(embeddings: np.ndarray, *, threshold: float = CLUSTER_THRESHOLD,
                    block: int = BLOCK) -> np.ndarray:
    """A speaker label (0, 1, ...) per embedding, by average-linkage clustering on cosine distance."""
    count = len(embeddings)
    if count == 0:
        return np.empty(0, np.int64)
    if count <= block:
        return _average_linkage(embeddings, threshold)
    local = np.empty(count, np.int64)
    means: list[np.ndarray] = []
    sizes: list[int] = []
    for first in range(0, count, block):
        part = np.asarray(embeddings[first:first + block], np.float64)
        labels = _average_linkage(part, threshold)
        for label in range(labels.max() + 1):
            local[first:first + block][labels == label] = len(means)
            means.append(part[labels == label].mean(axis=0))
            sizes.append(int((labels == label).sum()))
    merged = _join_clusters(np.stack(means), np.array(sizes, np.float64), threshold)
    order = {label: i for i, label in enumerate(dict.fromkeys(merged[local].tolist()))}
    return np.array([order[label] for label in merged[local]], np.int64)


def _join_clusters(means: np.ndarray, sizes: np.ndarray, threshold: float) -> np.ndarray:
    """Average linkage over clusters given by the mean and size of their unit-length windows.

    The mean cosine distance between the windows of two clusters is 1 - mean_a . mean_b, so the
    clusters are joined exactly as if all their windows were clustered together. A label each.
    """
    labels = np.arange(len(means))
    means, sizes = means.copy(), sizes.copy()
    alive = list(range(len(means)))
    while len(alive) > 1:
        block = means[alive]
        distance = 1.0 - block @ block.T
        np.fill_diagonal(distance, np.inf)
        i, j = np.unravel_index(np.argmin(distance), distance.shape)
        if distance[i, j] > threshold:
            break
        keep, gone = alive[min(i, j)], alive[max(i, j)]
        total = sizes[keep] + sizes[gone]
        means[keep] = (sizes[keep] * means[keep] + sizes[gone] * means[gone]) / total
        sizes[keep] = total
        labels[labels == gone] = keep
        alive.remove(gone)
    return labels


def _average_linkage(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """Labels 0..k-1 in order of first appearance, clusters cut at the cosine distance threshold."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(embeddings) == 1:
        return np.zeros(1, np.int64)
    tree = linkage(np.asarray(embeddings, np.float64), method="average", metric="cosine")
    raw = fcluster(tree, t=threshold, criterion="distance")
    order = {label: i for i, label in enumerate(dict.fromkeys(raw.tolist()))}
    return np.array([order[label] for label in raw], np.int64)


def _unit(vector: np.ndarray) -> np.ndarray:
    """The vector scaled to length 1 (a zero vector stays zero)."""
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def find_voices(chunks: Iterable[np.ndarray], *, engine: VoiceEngine,
                threshold: float = CLUSTER_THRESHOLD, block: int = BLOCK,
                progress: Callable[[float], None] | None = None) -> list[Voice]:
    """The speakers of a recording given as 16 kHz chunks, ordered by when each first speaks.

    `progress` is called with the seconds of sound read so far, and with the end of each speech
    region once it is embedded: embedding is the slow part, and a 30-second chunk full of talk
    would otherwise show no progress until all of it is done.
    """
    regions: list[tuple[float, float]] = []
    centres: list[list[float]] = []
    embeddings: list[np.ndarray] = []
    reached = 0.0

    def advance(seconds: float) -> None:
        """Report a position further than any before (an engine may read ahead of its regions)."""
        nonlocal reached
        if progress is not None and seconds > reached:
            reached = seconds
            progress(seconds)

    for region in engine.speech(_counted(chunks, advance)):
        starts = window_starts(region.samples.size)
        embeddings.append(np.asarray(engine.embed(region.samples, starts), np.float32))
        regions.append((region.start, region.end))
        centres.append([region.start + (s / SAMPLE_RATE) + WINDOW_S / 2 for s in starts])
        advance(region.end)
    if not regions:
        return []
    labels = cluster_windows(np.concatenate(embeddings), threshold=threshold, block=block)
    return _voices(regions, centres, np.concatenate(embeddings), labels)


def _counted(chunks: Iterable[np.ndarray], progress: Callable[[float], None] | None
             ) -> Iterator[np.ndarray]:
    """The chunks, reporting the seconds read after each."""
    heard = 0
    for chunk in chunks:
        yield chunk
        heard += chunk.size
        if progress is not None:
            progress(heard / SAMPLE_RATE)


def _voices(regions: list[tuple[float, float]], centres: list[list[float]], embeddings: np.ndarray,
            labels: np.ndarray) -> list[Voice]:
    """Segments, mean embedding and snippet per label."""
    spans: dict[int, list[tuple[float, float]]] = {}
    first = 0
    for (start, end), region_centres in zip(regions, centres, strict=True):
        region_labels = labels[first:first + len(region_centres)]
        first += len(region_centres)
        for label, span_start, span_end in _label_spans(start, end, region_centres, region_labels):
            spans.setdefault(label, []).append((span_start, span_end))
    voices = []
    for label in sorted(spans, key=lambda k: spans[k][0][0]):
        segments = [(round(s, 2), round(e, 2)) for s, e in spans[label]]
        longest = max(segments, key=lambda seg: seg[1] - seg[0])
        middle = (longest[0] + longest[1]) / 2
        half = min(SNIPPET_S, longest[1] - longest[0]) / 2
        voices.append(Voice(segments, _unit(embeddings[labels == label].mean(axis=0)),
                            (round(middle - half, 2), round(middle + half, 2))))
    return voices


def _label_spans(start: float, end: float, centres: list[float], labels: np.ndarray
                 ) -> Iterator[tuple[int, float, float]]:
    """Split a region into spans, each step given to the label of the nearest window centre."""
    steps = max(1, int(np.ceil((end - start) / SEGMENT_STEP_S)))
    edges = np.minimum(start + np.arange(steps + 1) * SEGMENT_STEP_S, end)
    mids = (edges[:-1] + edges[1:]) / 2
    nearest = labels[np.abs(np.asarray(centres)[None, :] - mids[:, None]).argmin(axis=1)]
    run_start = 0
    for i in range(1, steps + 1):
        if i == steps or nearest[i] != nearest[run_start]:
            yield int(nearest[run_start]), float(edges[run_start]), float(edges[i])
            run_start = i


class SileroResemblyzerEngine:
    """Silero VAD for speech, Resemblyzer's encoder for speaker embeddings; CPU, deterministic."""

    FRAME = 512  # samples per Silero frame at 16 kHz (32 ms)

    def __init__(self, *, threads: int = 1) -> None:
        """Load both models (a fraction of a second; weights come with the packages)."""
        import torch
        from resemblyzer import VoiceEncoder
        from silero_vad import load_silero_vad

        # Process-wide in torch; silero_vad also sets one thread when imported, so set it after.
        torch.set_num_threads(max(1, threads))
        self._torch = torch
        self._vad = load_silero_vad()
        self._encoder = VoiceEncoder(device="cpu", verbose=False)

    def speech(self, chunks: Iterable[np.ndarray]) -> Iterator[SpeechRegion]:
        """Speech regions of the stream, frame by frame through Silero."""
        tracker = SpeechTracker(frame=self.FRAME)
        self._vad.reset_states()
        carry = np.empty(0, np.float32)
        with self._torch.no_grad():
            for chunk in chunks:
                samples = np.concatenate([carry, np.asarray(chunk, np.float32)])
                usable = samples.size - samples.size % self.FRAME
                carry = samples[usable:]
                tensor = self._torch.from_numpy(samples[:usable].copy())
                probabilities = [float(self._vad(tensor[i:i + self.FRAME], SAMPLE_RATE))
                                 for i in range(0, usable, self.FRAME)]
                yield from tracker.feed(samples[:usable], probabilities)
        yield from tracker.finish()

    def embed(self, samples: np.ndarray, starts: Sequence[int]) -> np.ndarray:
        """Embeddings of the 1.6 s windows at starts, from one mel spectrogram of the region."""
        from resemblyzer.audio import wav_to_mel_spectrogram
        from resemblyzer.hparams import mel_window_step, partials_n_frames

        hop = SAMPLE_RATE * mel_window_step // 1000
        need = max(starts) + int(WINDOW_S * SAMPLE_RATE)
        padded = np.pad(samples, (0, max(0, need - samples.size))).astype(np.float32)
        mel = wav_to_mel_spectrogram(padded)
        frames = [mel[s // hop:s // hop + partials_n_frames] for s in starts]
        frames = [np.pad(f, ((0, partials_n_frames - len(f)), (0, 0))) for f in frames]
        with self._torch.no_grad():
            out = self._encoder(self._torch.from_numpy(np.stack(frames))).numpy()
        return out


def make_voice_engine(*, threads: int = 1) -> VoiceEngine:
    """The voice engine the service uses, on `threads` torch threads (VOICE_THREADS in config)."""
    return SileroResemblyzerEngine(threads=threads)
