"""A face engine with fixed answers, for tests that need faces without running dlib.

    engine = FakeFaceEngine([Box(10, 20, 40, 40)])            # every photo has this one face
    engine = FakeFaceEngine([box], vectors={box: alice_vector})  # and this encoding for it

Boxes outside a photo are not reported for it. Encodings not given are derived from the box, so the
same box always gets the same unit vector and different boxes get (almost surely) distant ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from consent_registry.media.faces import Box, DetectedFace


class FakeFaceEngine:
    """Fixed faces and encodings; records what it was asked."""

    def __init__(self, boxes: Sequence[Box] = (), *, vectors: Mapping[Box, np.ndarray] | None = None,
                 score: float | None = 1.0) -> None:
        """Report boxes in every photo large enough to hold them, with vectors as their encodings."""
        self.boxes = list(boxes)
        self.vectors = dict(vectors or {})
        self.score = score
        self.detected: list[tuple[int, int]] = []  # sizes of the photos given to detect
        self.encoded: list[list[Box]] = []  # boxes given to encode, per call

    def detect(self, image: Image.Image | np.ndarray) -> list[DetectedFace]:
        """The fixed boxes that lie inside the photo."""
        width, height = (image.shape[1], image.shape[0]) if isinstance(image, np.ndarray) else image.size
        self.detected.append((width, height))
        return [DetectedFace(box, self.score) for box in self.boxes
                if box.x >= 0 and box.y >= 0 and box.right <= width and box.bottom <= height]

    def encode(self, image: Image.Image | np.ndarray, boxes: Sequence[Box]) -> list[np.ndarray]:
        """The given vector per box, or one derived from the box's coordinates."""
        self.encoded.append(list(boxes))
        return [self.vectors[box] if box in self.vectors else vector_for(box) for box in boxes]


def vector_for(box: Box) -> np.ndarray:
    """A deterministic 128-d unit vector for a box."""
    rng = np.random.default_rng([box.x, box.y, box.w, box.h])
    vector = rng.normal(size=128)
    return vector / np.linalg.norm(vector)
