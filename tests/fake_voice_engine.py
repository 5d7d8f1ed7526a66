"""A voice engine with fixed answers, for tests that need voices without running torch.

    engine = FakeVoiceEngine([(0.0, 4.0, ALICE), (5.0, 9.0, BOB)])  # speech spans and who speaks

Each span that lies within the sound heard becomes one speech region; its windows are embedded as
the span's vector, so spans with one vector are one speaker. Vectors are 256 numbers (a voice's).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from consent_registry.media.sound import SAMPLE_RATE
from consent_registry.media.voices import SpeechRegion


def voice_vector(seed: int) -> np.ndarray:
    """A unit vector of 256 numbers, the same for the same seed."""
    vector = np.random.default_rng(seed).normal(size=256)
    return vector / np.linalg.norm(vector)


class FakeVoiceEngine:
    """Fixed speech spans and speaker vectors; records how much sound it heard."""

    def __init__(self, spans: Sequence[tuple[float, float, np.ndarray]] = ()) -> None:
        """Speech at each (start, end) in seconds, spoken by the voice with that vector."""
        self.spans = list(spans)
        self.heard_s = 0.0
        self._speaking: np.ndarray | None = None

    def speech(self, chunks: Iterable[np.ndarray]) -> Iterator[SpeechRegion]:
        """The spans that lie within the sound, after all of it was heard."""
        samples = sum(np.asarray(chunk).size for chunk in chunks)
        self.heard_s = samples / SAMPLE_RATE
        for start, end, vector in self.spans:
            if end <= self.heard_s:
                self._speaking = vector
                yield SpeechRegion(start, end, np.zeros(int((end - start) * SAMPLE_RATE), np.float32))

    def embed(self, samples: np.ndarray, starts: Sequence[int]) -> np.ndarray:
        """The current span's vector for every window."""
        assert self._speaking is not None
        return np.tile(self._speaking, (len(starts), 1))
