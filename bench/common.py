"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def best_of(fn: Callable[[], object], *, repeat: int = 5) -> float:
    """The fastest of several runs, in seconds: the least disturbed by a noisy machine."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def report(name: str, measured: float, baseline: float, baseline_name: str) -> None:
    """Print one ratio line."""
    print(f"{name:<48} {measured / baseline:8.2f}x  {baseline_name}")


def video_size(path: Path) -> tuple[int, int, float]:
    """Width, height and seconds (decoded frames over the frame rate) of the first video stream."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.width, stream.codec_context.height, frames / float(stream.average_rate)
