"""Voices in one hour of sound: the real-time factor and peak memory, against decoding alone.

A one-hour FLAC is built (not timed) from the public LibriSpeech clips, joined in turn with pauses
and a stretch of silence every few minutes, in a temporary folder. Each measurement runs in a
fresh process, so its peak resident memory is its own:
- decode: the file decoded to 16 kHz mono in chunks (what analysis must do at the least);
- voices: decoding, speech detection, embeddings and clustering (media/voices.py).
Printed: seconds of processing per second of audio (the real-time factor) for both, the ratio of
the two, the peak memory of each and the ratio of the two.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import report

AUDIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "public" / "audio"
HOUR_S = 3600.0
RATE = 16_000

_CHILD = r"""
import json, sys, time
from consent_registry.media.sound import pcm_chunks
path, mode = sys.argv[1], sys.argv[2]
if mode == "voices":
    from consent_registry.media.voices import find_voices, make_voice_engine
    engine = make_voice_engine()
start = time.perf_counter()
if mode == "voices":
    voices = find_voices(pcm_chunks(path), engine=engine)
    found = len(voices)
else:
    found = sum(chunk.size for chunk in pcm_chunks(path))
seconds = time.perf_counter() - start
# VmHWM is this program's own peak: ru_maxrss keeps the parent's peak across fork and exec, so
# after the other benchmarks (a 2.3 GB parent) both modes read 2321 MB.
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
peak_mb = int(status["VmHWM"].split()[0]) / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "found": found}))
"""


def _hour_of_talk(folder: Path) -> Path:
    """One hour of the public clips in turn, with pauses and a minute's silence every ten minutes."""
    import av

    clips = []
    for path in sorted(AUDIO.glob("*.flac")):
        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            frames = [f.to_ndarray().reshape(-1) for frame in container.decode(audio=0)
                      for f in resampler.resample(frame)]
            clips.append(np.concatenate(frames))
    target = folder / "hour.flac"
    with av.open(str(target), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=RATE, layout="mono")
        written, turn = 0, 0
        while written < HOUR_S * RATE:
            piece = clips[turn % len(clips)]
            pause = np.zeros(int(RATE * (0.4 + 0.3 * (turn % 3))), np.int16)
            if turn and turn % 60 == 0:
                pause = np.zeros(60 * RATE, np.int16)
            samples = np.concatenate([piece, pause])[:int(HOUR_S * RATE) - written]
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = RATE
            for packet in stream.encode(frame):
                out.mux(packet)
            written += samples.size
            turn += 1
        for packet in stream.encode(None):
            out.mux(packet)
    return target


def _measure(path: Path, mode: str) -> dict[str, float]:
    """Run one measurement in a fresh process and read its JSON line."""
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path), mode],  # noqa: S603 (our own code)
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run() -> None:
    """Build the hour, measure decoding and voice analysis, print the ratios."""
    with tempfile.TemporaryDirectory() as folder:
        hour = _hour_of_talk(Path(folder))
        decode = _measure(hour, "decode")
        voices = _measure(hour, "voices")
    print(f"one hour of speech from {len(list(AUDIO.glob('*.flac')))} clips: "
          f"{voices['found']} voices found (3 speakers in the clips)")
    print(f"real-time factor: voices {voices['seconds'] / HOUR_S:.4f}, "
          f"decoding alone {decode['seconds'] / HOUR_S:.4f} (seconds per second of audio)")
    report("voices in an hour of audio, time", voices["seconds"], decode["seconds"], "decoding alone")
    print(f"peak memory: voices {voices['peak_mb']:.0f} MB, decoding alone {decode['peak_mb']:.0f} MB")
    report("voices in an hour of audio, peak memory", voices["peak_mb"], decode["peak_mb"],
           "decoding alone")


if __name__ == "__main__":
    run()
