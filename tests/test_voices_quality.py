"""The voice issue's quality bars, with the real engine (Silero VAD + Resemblyzer) on the public clips.

Clips are joined from the LibriSpeech speakers in ../shared/data/public/audio, with pauses, noise and
music around them, written as FLAC at 44.1 kHz stereo and decoded back as analysis does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from consent_registry.media.matching import VOICE_POLICY, Reference, suggest_many
from consent_registry.media.sound import SAMPLE_RATE, pcm_chunks
from consent_registry.media.voices import Voice, find_voices, make_voice_engine

from voice_clips import conversation, music, overlap, write_sound

pytestmark = pytest.mark.slow

# Ten conversations of two or three speakers (1688 M, 1998 F, 2033 M), some with noise under them.
CONVERSATIONS: list[tuple[list[str], float | None]] = [
    (["1688-0000", "1998-0001"], None),
    (["2033-0000", "1688-0001"], None),
    (["1998-0000", "2033-0001"], -45.0),
    (["1688-0001", "1998-0000", "1688-0000"], None),
    (["2033-0001", "1998-0001", "2033-0000"], -40.0),
    (["1688-0000", "1998-0000", "2033-0000"], None),
    (["2033-0001", "1688-0001", "1998-0001"], None),
    (["1998-0001", "2033-0000", "1688-0000"], -45.0),
    (["1688-0001", "2033-0001", "1998-0000"], -40.0),
    (["1998-0000", "1688-0000", "2033-0001", "1998-0001"], None),
]


@pytest.fixture(scope="module")
def engine():
    """The real voice engine, loaded once."""
    return make_voice_engine()


def voices_in(samples: np.ndarray, tmp_path: Path, engine, name: str = "clip.flac") -> list[Voice]:
    """Write the samples as a file and find its voices as analysis does."""
    return find_voices(pcm_chunks(write_sound(tmp_path / name, samples)), engine=engine)


def test_conversations_meet_the_count_and_coverage_bars(tmp_path: Path, engine) -> None:
    """Right number of speakers in at least 9 of 10; each speaker's voice covers 90% of their speech."""
    right, coverages = 0, []
    for i, (names, noise) in enumerate(CONVERSATIONS):
        talk = conversation(names, pause_s=0.4 + 0.1 * i, noise_db=noise, seed=i)
        voices = voices_in(talk.samples, tmp_path, engine, f"c{i}.flac")
        right += len(voices) == len(talk.speech)
        for speech in talk.speech.values():
            best = max(voices, key=lambda v: overlap(v.segments, speech))
            coverages.append(overlap(best.segments, speech) / sum(e - s for s, e in speech))
    assert right >= 9, right
    assert min(coverages) >= 0.9, sorted(coverages)[:3]


def test_long_files_two_stage_clustering_meets_the_count_bar(tmp_path: Path, engine) -> None:
    """Blocks of 120 windows (~50 s of speech; an hour uses 2000) joined by their means and sizes:
    the right number of speakers in at least 9 of 10 conversations still."""
    right = 0
    for i, (names, noise) in enumerate(CONVERSATIONS):
        talk = conversation(names, pause_s=0.4 + 0.1 * i, noise_db=noise, seed=i)
        voices = find_voices(iter([talk.samples]), engine=engine, block=120)
        right += len(voices) == len(talk.speech)
    assert right >= 9, right


def test_music_silence_and_noise_alone_give_no_voice(tmp_path: Path, engine) -> None:
    """No appearance for a melody, silence, hiss or a tone."""
    t = np.arange(8 * SAMPLE_RATE) / SAMPLE_RATE
    rng = np.random.default_rng(0)
    for name, samples in {
        "music": music(8.0),
        "silence": np.zeros(8 * SAMPLE_RATE, np.float32),
        "hiss": rng.normal(scale=0.2, size=8 * SAMPLE_RATE).astype(np.float32),
        "tone": (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
    }.items():
        assert voices_in(samples, tmp_path, engine, f"{name}.flac") == [], name


def test_speech_over_music_is_still_found(tmp_path: Path, engine) -> None:
    """A voice with a melody under it and music before and after: one voice, during the speech."""
    talk = conversation(["1998-0000"])
    backing = music(talk.samples.size / SAMPLE_RATE + 6.0, seed=1) * 0.3
    mixed = backing.copy()
    start = 3 * SAMPLE_RATE
    mixed[start:start + talk.samples.size] += talk.samples
    [voice] = voices_in(mixed, tmp_path, engine)
    shifted = [(s + 3.0, e + 3.0) for s, e in talk.speech["1998"]]
    assert overlap(voice.segments, shifted) / sum(e - s for s, e in shifted) >= 0.9
    speech_end = 3.0 + talk.samples.size / SAMPLE_RATE
    assert voice.segments[0][0] >= 2.5 and voice.segments[-1][1] <= speech_end + 0.5


def test_enrolled_speakers_other_clip_is_suggested_and_a_stranger_is_not(tmp_path: Path, engine) -> None:
    """Enrol 1688 and 1998 with one clip each; their other clips match them, 2033 matches nobody."""
    def embedding(name: str) -> np.ndarray:
        [voice] = voices_in(conversation([name]).samples, tmp_path, engine, f"{name}.flac")
        return voice.encoding

    references = [Reference(1688, embedding("1688-0000")), Reference(1998, embedding("1998-0000"))]
    talk = conversation(["1998-0001", "2033-0001", "1688-0001"])
    voices = voices_in(talk.samples, tmp_path, engine)
    assert len(voices) == 3
    suggestions = suggest_many([v.encoding for v in voices], references, policy=VOICE_POLICY)
    assert [s.person_id if s else None for s in suggestions] == [1998, None, 1688]
