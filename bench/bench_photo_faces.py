"""Photo face analysis against the plain way, on the public photos and on them scaled up to 12 MP.

Ours: `faces.make_engine()` (HOG, the resolution policy of consent_registry.media.faces) detecting
and encoding every face. Plain: face_recognition's `face_locations` plus `face_encodings` on the
full image with default settings (HOG, upsampled once). Both get the same oriented RGB photo, one
run each per photo; the ratio is of the median seconds per photo. Also printed: the faces each way
finds, and how many of them the manifest's counts account for (the rest are false).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.common import report
from consent_registry.media.faces import make_engine, oriented

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "public"
TWELVE_MP = 12_000_000
# Scaled up, the plain way takes several seconds a photo: the groups, the photos without people and
# every third probe keep the run under three minutes.
UPSCALED_PROBES = 3


def _seconds(fn: Callable[[], int]) -> tuple[float, int]:
    """Wall seconds of one run and its result (the number of faces)."""
    start = time.perf_counter()
    faces = fn()
    return time.perf_counter() - start, faces


def _compare(label: str, photos: list[tuple[Image.Image, int]]) -> None:
    """Time both ways photo by photo and print the ratio and the faces found."""
    import face_recognition

    engine = make_engine()

    def ours(image: Image.Image) -> int:
        faces = engine.detect(image)
        engine.encode(image, [f.box for f in faces])
        return len(faces)

    def plain(image: Image.Image) -> int:
        array = np.asarray(image)
        locations = face_recognition.face_locations(array)
        face_recognition.face_encodings(array, locations)
        return len(locations)

    ours(photos[0][0]), plain(photos[0][0])  # load the models outside the timings
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    found = dict.fromkeys(times, 0)
    counted_found = dict.fromkeys(times, 0)
    for image, counted in photos:
        for name, fn in (("ours", ours), ("plain", plain)):
            seconds, faces = _seconds(lambda fn=fn, image=image: fn(image))
            times[name].append(seconds)
            found[name] += faces
            counted_found[name] += min(faces, counted)
    median_ours, median_plain = statistics.median(times["ours"]), statistics.median(times["plain"])
    report(f"photo faces: {label}, median s/photo", median_ours, median_plain,
           "face_locations+face_encodings")
    print(f"    median seconds per photo: ours {median_ours:.2f}, plain {median_plain:.2f} "
          f"({len(photos)} photos)")
    total = sum(counted for _, counted in photos)
    for name in ("ours", "plain"):
        beyond = found[name] - counted_found[name]
        print(f"    faces found by {name:<5}: {found[name]:3d} "
              f"({counted_found[name]} of the {total} counted, {beyond} beyond the counts)")


def _public() -> list[tuple[dict[str, Any], Image.Image]]:
    """The public photos with their manifest entries, oriented and RGB."""
    manifest = json.loads((DATA / "manifest.json").read_text())
    photos = []
    for entry in manifest:
        if entry["kind"] == "image":
            image = oriented(Image.open(DATA / entry["file"]))
            image.load()
            photos.append((entry, image))
    return photos


def _upscaled(image: Image.Image) -> Image.Image:
    """The photo scaled up (LANCZOS) to about 12 megapixels."""
    k = (TWELVE_MP / (image.width * image.height)) ** 0.5
    return image.resize((round(image.width * k), round(image.height * k)), Image.Resampling.LANCZOS)


def run() -> None:
    """Both ways on the public photos, then on a selection of them at 12 MP."""
    photos = _public()
    _compare(f"{len(photos)} public photos", [(image, e["faces"]) for e, image in photos])
    probes = [p for p in photos if p[0]["role"] == "probe"][::UPSCALED_PROBES]
    chosen = [p for p in photos if p[0]["role"] in ("group", "negative")] + probes
    _compare(f"{len(chosen)} photos at 12 MP", [(_upscaled(image), e["faces"]) for e, image in chosen])
