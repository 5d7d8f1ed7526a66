"""Voices without the models: the speech tracker, windows, clustering, decoding and the pure rules."""

from __future__ import annotations

import io
import itertools
import wave
from datetime import UTC, datetime
from pathlib import Path

import av
import numpy as np
import pytest

from consent_registry.media.matching import Reference, suggest_many
from consent_registry.media.sound import SAMPLE_RATE, extract, has_sound, pcm_chunks, wav_bytes
from consent_registry.media.voices import (
    HOP_S,
    WINDOW_S,
    SpeechTracker,
    cluster_windows,
    find_voices,
    window_starts,
)
from consent_registry.publishing.gate import AppearanceFacts, evaluate

from fake_voice_engine import FakeVoiceEngine, voice_vector
from voice_clips import write_sound

FRAME = 512
FRAME_S = FRAME / SAMPLE_RATE


def track(probabilities: list[float], *, chunk_frames: int = 7, **settings: float
          ) -> list[tuple[float, float, int]]:
    """Feed probabilities (with numbered samples) in chunks; (start, end, samples) per region."""
    tracker = SpeechTracker(frame=FRAME, **settings)
    samples = np.arange(len(probabilities) * FRAME, dtype=np.float32)
    regions = []
    for first in range(0, len(probabilities), chunk_frames):
        piece = probabilities[first:first + chunk_frames]
        regions += tracker.feed(samples[first * FRAME:(first + len(piece)) * FRAME], piece)
        assert tracker._buffer.size <= (60 + 2) * SAMPLE_RATE + chunk_frames * FRAME
    regions += tracker.finish()
    for region in regions:  # each region carries exactly its own samples
        first_sample = round(region.start * SAMPLE_RATE)
        assert region.samples[0] == first_sample
        assert region.samples.size == round((region.end - region.start) * SAMPLE_RATE)
    return [(round(r.start, 3), round(r.end, 3), r.samples.size) for r in regions]


def frames(seconds: float) -> int:
    """How many 32 ms frames make this many seconds."""
    return round(seconds / FRAME_S)


def test_silence_gives_no_region() -> None:
    """Probabilities below the threshold never open a region."""
    assert track([0.1] * frames(5)) == []


def test_one_utterance_is_padded_on_both_sides() -> None:
    """Speech from 1 s to 2 s becomes a region 0.25 s wider on each side."""
    probabilities = [0.0] * frames(1) + [0.9] * frames(1) + [0.0] * frames(3)
    [(start, end, _n)] = track(probabilities)
    assert start == pytest.approx(1 - 0.25, abs=FRAME_S)
    assert end == pytest.approx(2 + 0.25, abs=FRAME_S)


def test_hysteresis_keeps_a_region_open_between_the_thresholds() -> None:
    """A dip to 0.4 (above the 0.35 off-threshold) does not end speech."""
    probabilities = [0.0] * 10 + [0.9] * 20 + [0.4] * 20 + [0.9] * 20 + [0.0] * 60
    assert len(track(probabilities)) == 1


def test_close_utterances_are_joined_far_ones_are_not() -> None:
    """A pause of 0.3 s joins two utterances (padding closes it); a pause of 2 s does not."""
    near = [0.9] * frames(1) + [0.0] * frames(0.3) + [0.9] * frames(1) + [0.0] * frames(2)
    assert len(track([0.0] * 20 + near)) == 1
    far = [0.9] * frames(1) + [0.0] * frames(2) + [0.9] * frames(1) + [0.0] * frames(2)
    assert len(track([0.0] * 20 + far)) == 2


def test_speech_to_the_end_is_closed_by_finish() -> None:
    """A region still open when the stream ends ends at the last sample heard."""
    probabilities = [0.0] * frames(1) + [0.9] * frames(2)
    [(start, end, _n)] = track(probabilities)
    assert end == pytest.approx(len(probabilities) * FRAME_S, abs=1e-6)
    assert start == pytest.approx(0.75, abs=FRAME_S)


def test_long_speech_is_split_and_memory_stays_bounded() -> None:
    """Three minutes without a pause: regions of at most a minute that do not overlap."""
    regions = track([0.9] * frames(180), chunk_frames=900)
    assert len(regions) == 3
    assert all(end - start <= 60.0 + FRAME_S for start, end, _n in regions)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(regions))
    assert sum(n for _s, _e, n in regions) == frames(180) * FRAME


def test_chunking_does_not_change_the_regions() -> None:
    """The same probabilities give the same regions whatever the chunk size."""
    rng = np.random.default_rng(3)
    probabilities = list(np.repeat(rng.random(60) > 0.5, 25) * 0.9)
    assert track(probabilities, chunk_frames=1) == track(probabilities, chunk_frames=333)


def test_window_starts_cover_the_region() -> None:
    """Windows every hop, the last one flush with the end; a short region gets one window."""
    window = int(WINDOW_S * SAMPLE_RATE)
    assert window_starts(window // 2) == [0]
    starts = window_starts(10 * SAMPLE_RATE)
    assert starts[0] == 0 and starts[1] == int(HOP_S * SAMPLE_RATE)
    assert starts[-1] + window == 10 * SAMPLE_RATE


def test_clustering_finds_the_number_of_speakers() -> None:
    """Noisy windows around three voices: three labels, one per voice, in order of appearance."""
    rng = np.random.default_rng(1)
    centres = [voice_vector(i) for i in range(3)]
    windows = np.stack([centres[i] + rng.normal(scale=0.02, size=256) for i in (0, 0, 1, 2, 1, 0)])
    assert cluster_windows(windows).tolist() == [0, 0, 1, 2, 1, 0]
    assert cluster_windows(np.empty((0, 256))).tolist() == []
    assert cluster_windows(windows[:1]).tolist() == [0]


def test_clustering_in_blocks_agrees_with_clustering_at_once() -> None:
    """Past the block size, blocks and their centroids give the same speakers."""
    rng = np.random.default_rng(2)
    centres = [voice_vector(10 + i) for i in range(4)]
    who = rng.integers(0, 4, size=300)
    windows = np.stack([centres[i] + rng.normal(scale=0.03, size=256) for i in who])
    at_once = cluster_windows(windows)
    in_blocks = cluster_windows(windows, block=64)
    assert len(set(at_once.tolist())) == 4
    assert all(len(set(in_blocks[at_once == label].tolist())) == 1 for label in range(4))


def test_find_voices_gives_one_voice_per_speaker_with_segments() -> None:
    """Alice, Bob, Alice: two voices; Alice's segments are both of hers; snippets within them."""
    alice, bob = voice_vector(1), voice_vector(2)
    engine = FakeVoiceEngine([(0.5, 3.0, alice), (4.0, 6.0, bob), (7.0, 9.5, alice)])
    seen: list[float] = []
    voices = find_voices(iter([np.zeros(SAMPLE_RATE * 5, np.float32)] * 2), engine=engine,
                         progress=seen.append)
    assert seen == [5.0, 10.0]
    assert [v.segments for v in voices] == [[(0.5, 3.0), (7.0, 9.5)], [(4.0, 6.0)]]
    assert voices[0].speech_s == pytest.approx(5.0)
    assert np.allclose(voices[0].encoding, alice, atol=1e-6)
    for voice in voices:
        start, end = voice.snippet
        assert any(s <= start < end <= e for s, e in voice.segments)


def test_no_speech_gives_no_voice() -> None:
    """Nothing said, nobody found."""
    assert find_voices(iter([np.zeros(SAMPLE_RATE, np.float32)]), engine=FakeVoiceEngine()) == []


# --- decoding ---------------------------------------------------------------------------------------

def test_decoding_gives_16k_mono_in_bounded_chunks(tmp_path: Path) -> None:
    """A 44.1 kHz stereo FLAC of 7 s: 16 kHz mono, chunks of at most 2 s, the tone kept."""
    t = np.arange(7 * SAMPLE_RATE) / SAMPLE_RATE
    path = write_sound(tmp_path / "tone.flac", 0.5 * np.sin(2 * np.pi * 440 * t))
    chunks = list(pcm_chunks(path, chunk_s=2.0))
    assert all(c.size <= 2 * SAMPLE_RATE and c.dtype == np.float32 for c in chunks)
    joined = np.concatenate(chunks)
    assert abs(joined.size - 7 * SAMPLE_RATE) < SAMPLE_RATE // 10
    spectrum = np.abs(np.fft.rfft(joined[:SAMPLE_RATE]))
    assert abs(np.argmax(spectrum) - 440) <= 2
    piece = extract(path, start=2.0, end=3.5)
    assert abs(piece.size - int(1.5 * SAMPLE_RATE)) < 10


def test_a_video_without_sound_has_none(tmp_path: Path) -> None:
    """has_sound is false and pcm_chunks yields nothing for a silent video."""
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 40, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    assert not has_sound(path)
    assert list(pcm_chunks(path)) == []


def test_wav_snippet_is_a_playable_wav() -> None:
    """The snippet format: mono 16-bit 16 kHz WAV with every sample."""
    data = wav_bytes(np.linspace(-1, 1, 1600, dtype=np.float32))
    with wave.open(io.BytesIO(data)) as snippet:
        assert (snippet.getnchannels(), snippet.getsampwidth(), snippet.getframerate()) == (1, 2, 16000)
        assert snippet.getnframes() == 1600


# --- matching and the gate for voices ---------------------------------------------------------------

def test_voice_matching_uses_the_same_rule_and_never_mixes_kinds() -> None:
    """A 256-number voice is matched like a face; faces and voices in one call are refused."""
    alice = voice_vector(5)
    references = [Reference(1, alice), Reference(2, voice_vector(6))]
    [suggestion] = suggest_many([alice], references)
    assert suggestion is not None and suggestion.person_id == 1
    with pytest.raises(ValueError, match="one kind"):
        suggest_many([np.ones(128)], references)
    with pytest.raises(ValueError, match="one kind"):
        suggest_many([alice, np.ones(128)], references)


NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


def decide(kind: str, voices_analysed: bool, appearances: list[AppearanceFacts]) -> list[str]:
    """The gate's blocker reasons for an item on facebook, attested."""
    decision = evaluate(kind=kind, status="ready", voices_analysed=voices_analysed,
                        appearances=appearances, consents={}, channel="facebook", at=NOW,
                        attested=True)
    return [b.reason for b in decision.blockers]


def test_a_video_whose_sound_was_not_analysed_is_blocked() -> None:
    """Videos carry voices too: their sound must have been listened to."""
    assert decide("video", False, []) == ["not_analysed"]
    assert decide("video", True, []) == []


def test_a_voice_marked_blur_still_blocks() -> None:
    """Renditions keep the sound: 'blur' clears a face but never a voice."""
    blurred_face = AppearanceFacts(1, "face", None, None, "blur")
    blurred_voice = AppearanceFacts(2, "voice", None, None, "blur")
    murmur = AppearanceFacts(3, "voice", None, None, "not_recognisable")
    assert decide("video", True, [blurred_face, murmur]) == []
    assert decide("video", True, [blurred_voice]) == ["unresolved"]
