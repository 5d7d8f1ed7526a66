"""The matching rule: synthetic vectors for every branch, then the real face engine on the public set."""

from __future__ import annotations

import gc
import json
import math
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from consent_registry.config import BaseConfig
from consent_registry.media import matching
from consent_registry.media.faces import make_engine
from consent_registry.media.matching import (
    ENCODING_SIZE,
    MatchPolicy,
    Reference,
    Suggestion,
    policy_from_settings,
    suggest,
    suggest_many,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "public"

# --- synthetic vectors -------------------------------------------------------------------------------
# The probe is the unit vector e0; a reference "at distance d along axis k" is e0 + d * e_k, so its
# distance to the probe is d (exactly, for the values used at the edges), and references along
# different axes are different faces.

PROBE = np.eye(ENCODING_SIZE)[0]


def at(distance: float, axis: int = 1) -> np.ndarray:
    """A vector `distance` away from PROBE, in direction `axis`."""
    vector = PROBE.copy()
    vector[axis] += distance
    return vector


def ref(person_id: int, distance: float, axis: int | None = None) -> Reference:
    """A reference of person_id at `distance` from PROBE (its own axis unless given)."""
    return Reference(person_id, at(distance, person_id if axis is None else axis))


def spoiled(index: int, value: float) -> np.ndarray:
    """A vector near PROBE with one bad number."""
    vector = at(0.1)
    vector[index] = value
    return vector


def test_the_nearest_person_within_the_threshold_is_suggested() -> None:
    found = suggest(PROBE, [ref(1, 0.3), ref(2, 0.6), ref(3, 0.9)])
    assert found == Suggestion(1, pytest.approx(0.3), False)
    assert type(found.person_id) is int and type(found.distance) is float and type(found.auto_accept) is bool


@pytest.mark.parametrize(("distance", "policy", "matches"), [
    (0.5, MatchPolicy(), True),  # the threshold itself is "within"
    (0.5 + 1e-6, MatchPolicy(), False),
    (0.55, MatchPolicy(), False),
    (0.55, MatchPolicy(threshold=0.6), True),  # configurable
    (0.35, MatchPolicy(threshold=0.3), False),
    (0.0, MatchPolicy(), True),  # an identical encoding
])
def test_threshold_edge(distance: float, policy: MatchPolicy, matches: bool) -> None:
    found = suggest(PROBE, [ref(1, distance), ref(2, distance + 0.5)], policy=policy)
    assert (found == Suggestion(1, pytest.approx(distance, abs=1e-7), False)) if matches else found is None


@pytest.mark.parametrize(("second", "policy", "matches"), [
    (0.35, MatchPolicy(), True),  # exactly the margin (0.3 + 0.05) is enough
    (0.35 - 1e-6, MatchPolicy(), False),
    (0.31, MatchPolicy(), False),
    (0.30, MatchPolicy(), False),  # a tie
    (0.31, MatchPolicy(margin=0.0), True),  # configurable, down to "any gap"
    (0.45, MatchPolicy(margin=0.2), False),
    (0.5, MatchPolicy(margin=0.2), True),
    (0.9, MatchPolicy(), True),  # the competitor may be beyond the threshold: still a competitor
])
def test_margin_edge(second: float, policy: MatchPolicy, matches: bool) -> None:
    found = suggest(PROBE, [ref(1, 0.3), ref(2, second)], policy=policy)
    assert (found == Suggestion(1, pytest.approx(0.3), False)) if matches else found is None


def test_a_competitor_beyond_the_threshold_still_needs_the_margin() -> None:
    assert suggest(PROBE, [ref(1, 0.49), ref(2, 0.52)]) is None
    assert suggest(PROBE, [ref(1, 0.49), ref(2, 0.54)]) == Suggestion(1, pytest.approx(0.49), False)


def test_several_references_per_person_use_the_closest() -> None:
    refs = [ref(1, 0.7, 10), ref(2, 0.6), ref(1, 0.45, 11), ref(1, 0.9, 12)]
    assert suggest(PROBE, refs) == Suggestion(1, pytest.approx(0.45), False)
    assert suggest(PROBE, refs[::-1]) == Suggestion(1, pytest.approx(0.45), False)
    # ...for the competitor too: person 2's closest reference is what blocks person 1.
    refs += [ref(2, 0.48, 13)]
    assert suggest(PROBE, refs) is None


def test_the_second_nearest_must_be_a_different_person() -> None:
    own = [ref(1, 0.30, 10), ref(1, 0.31, 11), ref(1, 0.305, 12)]  # 0.01 apart: not a competitor
    assert suggest(PROBE, own) == Suggestion(1, pytest.approx(0.30), False)
    assert suggest(PROBE, [*own, ref(2, 0.8)]) == Suggestion(1, pytest.approx(0.30), False)
    assert suggest(PROBE, [*own, ref(2, 0.32)]) is None


def test_a_single_enrolled_person_needs_only_the_threshold() -> None:
    assert suggest(PROBE, [ref(7, 0.2)]) == Suggestion(7, pytest.approx(0.2), False)
    assert suggest(PROBE, [ref(7, 0.6)]) is None


def test_no_references_no_suggestion() -> None:
    assert suggest(PROBE, []) is None
    assert suggest(PROBE, ()) is None
    assert suggest_many([PROBE, at(0.1)], []) == [None, None]
    assert suggest_many([], [ref(1, 0.1)]) == []
    assert suggest_many(np.empty((0, ENCODING_SIZE)), [ref(1, 0.1)]) == []


def test_auto_accept_is_off_by_default() -> None:
    assert suggest(PROBE, [ref(1, 0.0)]) == Suggestion(1, pytest.approx(0.0, abs=1e-7), False)
    assert suggest(PROBE, [ref(1, 0.01), ref(2, 0.9)]).auto_accept is False


@pytest.mark.parametrize(("distance", "auto"), [
    (0.1, True), (0.3, True), (0.4 - 1e-6, True),
    (0.4, False),  # strictly below
    (0.45, False),  # still a suggestion, for a human
    (0.5, False),
])
def test_auto_accept_only_below_the_stricter_distance(distance: float, auto: bool) -> None:
    policy = MatchPolicy(auto_accept_below=0.4)
    assert suggest(PROBE, [ref(1, distance), ref(2, 0.9)], policy=policy) == Suggestion(
        1, pytest.approx(distance, abs=1e-7), auto)


def test_auto_accept_never_overrides_the_margin() -> None:
    policy = MatchPolicy(auto_accept_below=0.4)
    assert suggest(PROBE, [ref(1, 0.1), ref(2, 0.12)], policy=policy) is None


@pytest.mark.parametrize("bad", [
    np.full(ENCODING_SIZE, np.nan),
    spoiled(5, np.nan),
    np.full(ENCODING_SIZE, np.inf),
    spoiled(5, -np.inf),
    np.zeros(ENCODING_SIZE),
    np.full(ENCODING_SIZE, 1e-12),
], ids=["all-nan", "one-nan", "all-inf", "one-inf", "zero", "near-zero"])
def test_degenerate_probes_match_nobody(bad: np.ndarray) -> None:
    refs = [ref(1, 0.1), Reference(2, np.zeros(ENCODING_SIZE)), Reference(3, bad)]
    with np.errstate(all="raise"):  # not even a numpy warning
        assert suggest(bad, refs) is None
        assert suggest_many([bad, PROBE, bad], refs) == [None, Suggestion(1, pytest.approx(0.1), False), None]


@pytest.mark.parametrize("bad", [
    np.full(ENCODING_SIZE, np.nan), np.full(ENCODING_SIZE, -np.inf), np.zeros(ENCODING_SIZE),
], ids=["nan", "inf", "zero"])
def test_degenerate_references_are_ignored(bad: np.ndarray) -> None:
    # Neither matched (a zero reference is 0.1 from this short probe) nor a competitor.
    assert suggest(at(0.0) * 0.1, [Reference(1, bad)]) is None
    assert suggest(PROBE, [ref(1, 0.3), Reference(2, bad)]) == Suggestion(1, pytest.approx(0.3), False)
    assert suggest(PROBE, [Reference(2, bad)]) is None


def test_absurdly_large_values_do_not_crash() -> None:
    huge = np.full(ENCODING_SIZE, 1e200)
    with np.errstate(all="raise"):
        assert suggest(huge, [ref(1, 0.1)]) is None
        assert suggest(PROBE, [ref(1, 0.1), Reference(2, huge)]) == Suggestion(1, pytest.approx(0.1), False)


@pytest.mark.parametrize("bad", [
    np.zeros(ENCODING_SIZE - 1), np.zeros(ENCODING_SIZE + 1), np.zeros((1, ENCODING_SIZE)),
    np.zeros((ENCODING_SIZE, 1)), np.zeros(()), np.zeros(0), [0.0] * 127, "not a vector",
    np.array(["x"] * ENCODING_SIZE), np.zeros(ENCODING_SIZE, dtype=complex),
    np.zeros(ENCODING_SIZE, dtype=bool), np.array([None] * ENCODING_SIZE),
], ids=["127", "129", "1x128", "128x1", "scalar", "empty", "short-list", "str", "strings", "complex", "bool",
        "objects"])
def test_wrong_shapes_and_types_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="encoding"):
        suggest(bad, [ref(1, 0.1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="encoding"):
        Reference(1, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="encoding"):
        suggest_many([PROBE, bad], [ref(1, 0.1)])  # type: ignore[list-item]


def test_suggest_many_refuses_what_is_not_a_list_of_vectors() -> None:
    for bad in (PROBE, np.zeros((2, 3, ENCODING_SIZE)), np.zeros((3, ENCODING_SIZE - 1)), np.float64(1.0)):
        with pytest.raises(ValueError, match="encoding"):
            suggest_many(bad, [ref(1, 0.1)])  # type: ignore[arg-type]


@pytest.mark.parametrize("person_id", ["1", 1.0, None, True])
def test_person_ids_are_integers(person_id: object) -> None:
    with pytest.raises(ValueError, match="person_id"):
        Reference(person_id, PROBE)  # type: ignore[arg-type]
    assert Reference(np.int64(4), PROBE).person_id == 4
    assert type(Reference(np.int64(4), PROBE).person_id) is int


@pytest.mark.parametrize("kwargs", [
    {"threshold": 0.0}, {"threshold": -0.5}, {"threshold": math.nan}, {"threshold": math.inf},
    {"margin": -0.01}, {"margin": math.nan},
    {"auto_accept_below": 0.0}, {"auto_accept_below": 0.6}, {"auto_accept_below": math.nan},
    {"threshold": 0.3, "auto_accept_below": 0.4},
])
def test_policies_that_make_no_sense_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MatchPolicy(**kwargs)


def test_policy_defaults() -> None:
    assert MatchPolicy() == MatchPolicy(threshold=0.5, margin=0.05, auto_accept_below=None)
    assert MatchPolicy(auto_accept_below=0.5).auto_accept_below == 0.5  # "stricter" may equal


# --- the policy from the configuration ----------------------------------------------------------------

PREFIXES = ["", "VOICE_"]


def test_policies_of_an_unconfigured_school() -> None:
    """Faces 0.5/0.05 and voices 0.6/0.05, no auto-accept: from no settings and from the config class."""
    faces = MatchPolicy(threshold=0.5, margin=0.05, auto_accept_below=None)
    voices = MatchPolicy(threshold=0.6, margin=0.05, auto_accept_below=None)
    assert policy_from_settings({}) == faces
    assert policy_from_settings({}, prefix="VOICE_") == voices
    defaults = {name: getattr(BaseConfig, name) for name in dir(BaseConfig) if name.isupper()}
    assert policy_from_settings(defaults) == faces
    assert policy_from_settings(defaults, prefix="VOICE_") == voices


@pytest.mark.parametrize("prefix", PREFIXES)
def test_each_match_setting_takes_effect_alone(prefix: str) -> None:
    """Each of the three numbers, set alone, changes exactly that number of the policy."""
    default = policy_from_settings({}, prefix=prefix)
    assert policy_from_settings({f"{prefix}MATCH_THRESHOLD": 0.42}, prefix=prefix) == MatchPolicy(
        threshold=0.42, margin=default.margin, auto_accept_below=None)
    assert policy_from_settings({f"{prefix}MATCH_MARGIN": 0.07}, prefix=prefix) == MatchPolicy(
        threshold=default.threshold, margin=0.07, auto_accept_below=None)
    assert policy_from_settings({f"{prefix}MATCH_AUTO_ACCEPT_BELOW": 0.3}, prefix=prefix) == MatchPolicy(
        threshold=default.threshold, margin=default.margin, auto_accept_below=0.3)
    assert policy_from_settings({f"{prefix}MATCH_THRESHOLD": 0.42, f"{prefix}MATCH_MARGIN": 0.0,
                                 f"{prefix}MATCH_AUTO_ACCEPT_BELOW": 0.42}, prefix=prefix) == MatchPolicy(
        threshold=0.42, margin=0.0, auto_accept_below=0.42)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_other_modalitys_settings_are_ignored(prefix: str) -> None:
    """Face settings never change the voice policy, nor the other way round."""
    other = "VOICE_" if prefix == "" else ""
    settings = {f"{other}MATCH_THRESHOLD": 0.2, f"{other}MATCH_MARGIN": 0.2,
                f"{other}MATCH_AUTO_ACCEPT_BELOW": 0.1}
    assert policy_from_settings(settings, prefix=prefix) == policy_from_settings({}, prefix=prefix)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_settings_read_from_the_environment_are_strings(prefix: str) -> None:
    """Numbers as text are read; empty, "none" and "off" (any case, spaces) mean the default / off."""
    default = policy_from_settings({}, prefix=prefix)
    assert policy_from_settings({f"{prefix}MATCH_THRESHOLD": " 0.45 ", f"{prefix}MATCH_MARGIN": "0.1",
                                 f"{prefix}MATCH_AUTO_ACCEPT_BELOW": "0.25"}, prefix=prefix) == MatchPolicy(
        threshold=0.45, margin=0.1, auto_accept_below=0.25)
    assert policy_from_settings({f"{prefix}MATCH_THRESHOLD": "1"}, prefix=prefix).threshold == 1.0
    for off in ("", "  ", "none", "None", " OFF ", "off", None):
        policy = policy_from_settings({f"{prefix}MATCH_THRESHOLD": off, f"{prefix}MATCH_MARGIN": off,
                                       f"{prefix}MATCH_AUTO_ACCEPT_BELOW": off}, prefix=prefix)
        assert policy == default, off


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("name", ["MATCH_THRESHOLD", "MATCH_MARGIN", "MATCH_AUTO_ACCEPT_BELOW"])
@pytest.mark.parametrize("value", ["half", "0,4", [0.4], object()])
def test_a_setting_that_is_no_number_is_named(prefix: str, name: str, value: object) -> None:
    """A mistyped number stops the start with the setting's full name and what it held."""
    with pytest.raises(ValueError, match=rf"^{prefix}{name} must be a number, not "):
        policy_from_settings({f"{prefix}{name}": value}, prefix=prefix)


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("settings", [
    {"MATCH_THRESHOLD": "0"}, {"MATCH_MARGIN": "-0.1"}, {"MATCH_AUTO_ACCEPT_BELOW": "0.9"},
    {"MATCH_THRESHOLD": "0.2", "MATCH_AUTO_ACCEPT_BELOW": "0.3"}, {"MATCH_THRESHOLD": "nan"},
])
def test_settings_that_make_no_sense_are_refused(prefix: str, settings: dict[str, str]) -> None:
    """The policy's own checks apply to configured numbers too."""
    with pytest.raises(ValueError):
        policy_from_settings({prefix + k: v for k, v in settings.items()}, prefix=prefix)


def test_configured_numbers_change_what_is_suggested() -> None:
    """A stricter threshold or margin loses a suggestion the default makes; auto-accept comes on."""
    references = [ref(1, 0.45), ref(2, 0.52)]
    assert suggest(PROBE, references, policy=policy_from_settings({})) == Suggestion(
        1, pytest.approx(0.45), False)
    assert suggest(PROBE, references, policy=policy_from_settings({"MATCH_THRESHOLD": "0.44"})) is None
    assert suggest(PROBE, references, policy=policy_from_settings({"MATCH_MARGIN": "0.08"})) is None
    assert suggest(PROBE, references, policy=policy_from_settings(
        {"MATCH_AUTO_ACCEPT_BELOW": "0.46"})) == Suggestion(1, pytest.approx(0.45), True)


def test_references_keep_a_frozen_copy() -> None:
    vector = at(0.2)
    reference = Reference(1, vector)
    vector[1] = 5.0
    assert reference.encoding[1] == 0.2 and reference.encoding.dtype == np.float64
    with pytest.raises(ValueError):
        reference.encoding[1] = 5.0
    assert Reference(1, [1] + [0] * (ENCODING_SIZE - 1)).encoding.dtype == np.float64


def test_nothing_of_the_face_is_kept() -> None:
    """The matcher holds no reference to an encoding it was given (they must not be stored)."""
    probe = at(0.9, 50)
    alive = weakref.ref(probe)
    assert suggest(probe, [ref(1, 0.1)]) is None
    assert suggest_many([probe], [ref(1, 0.1)]) == [None]
    del probe
    gc.collect()
    assert alive() is None


def naive(encoding: np.ndarray, references: list[Reference], policy: MatchPolicy) -> Suggestion | None:
    """The rule written out plainly, to check the vectorised one against."""
    best: dict[int, float] = {}
    for r in references:
        d = float(np.linalg.norm(r.encoding - encoding))
        best[r.person_id] = min(d, best.get(r.person_id, math.inf))
    if not best:
        return None
    ranked = sorted(best.items(), key=lambda item: item[1])
    person, distance = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else math.inf
    if distance <= policy.threshold and second - distance >= policy.margin:
        auto = policy.auto_accept_below is not None and distance < policy.auto_accept_below
        return Suggestion(person, pytest.approx(distance), auto)
    return None


@pytest.mark.parametrize("block", [matching._BLOCK, 1, 7])
def test_suggest_many_agrees_with_the_plain_rule(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    monkeypatch.setattr(matching, "_BLOCK", block)  # small blocks: the chunked path
    rng = np.random.default_rng(20240611)
    centres = rng.normal(size=(6, ENCODING_SIZE)) * 0.06  # people about 0.7 apart, like real encodings
    references = [Reference(int(p) * 10, centres[p] + rng.normal(size=ENCODING_SIZE) * 0.02)
                  for p in rng.permutation(np.repeat(np.arange(6), 3))]
    probes = np.concatenate([centres[rng.integers(0, 6, 60)] + rng.normal(size=(60, ENCODING_SIZE)) * 0.025,
                             rng.normal(size=(30, ENCODING_SIZE)) * 0.06])  # 30 strangers
    policy = MatchPolicy(auto_accept_below=0.3)
    expected = [naive(p, references, policy) for p in probes]
    assert suggest_many(probes, references, policy=policy) == expected
    assert suggest_many(list(probes), references, policy=policy) == expected
    assert [suggest(p, references, policy=policy) for p in probes] == expected
    assert sum(e is not None for e in expected[:60]) >= 40 and all(e is None for e in expected[60:])
    assert any(e is not None and e.auto_accept for e in expected)
    assert any(e is not None and not e.auto_accept for e in expected)


# --- the real engine on the public set ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Photo:
    """One manifest image and what the default policy suggested for each face the engine found."""

    file: str
    role: str
    identities: list[str]
    expected: str | None
    suggestions: list[Suggestion | None]


@dataclass(frozen=True, slots=True)
class PublicSet:
    """The enrolled people and the analysed probes and group photos."""

    names: dict[int, str]  # person id -> identity
    enrol_faces: dict[str, int]  # identity -> number of faces found in the enrolment photo
    photos: list[Photo]

    def named(self, suggestion: Suggestion | None) -> str | None:
        """The identity suggested, or None."""
        return None if suggestion is None else self.names[suggestion.person_id]


@pytest.fixture(scope="module")
def public_set() -> PublicSet:
    """Enrol every enroll/ photo (one reference each), then analyse every probe and group photo."""
    manifest = json.loads((DATA / "manifest.json").read_text(encoding="utf-8"))
    engine = make_engine()
    references, names, enrol_faces = [], {}, {}
    for person_id, entry in enumerate((e for e in manifest if e["role"] == "enroll"), start=1):
        with Image.open(DATA / entry["file"]) as image:
            faces = engine.detect(image)
            (identity,) = entry["identities"]
            enrol_faces[identity] = len(faces)
            if len(faces) == 1:
                references.append(Reference(person_id, engine.encode(image, [faces[0].box])[0]))
        names[person_id] = identity
    photos = []
    for entry in manifest:
        if entry["kind"] != "image" or entry["role"] not in {"probe", "negative", "group"}:
            continue
        with Image.open(DATA / entry["file"]) as image:
            encodings = engine.encode(image, [face.box for face in engine.detect(image)])
        photos.append(Photo(entry["file"], entry["role"], entry["identities"], entry.get("expected_match"),
                            suggest_many(encodings, references)))
    return PublicSet(names, enrol_faces, photos)


@pytest.mark.slow
def test_public_set_every_enrolment_photo_gives_one_reference(public_set: PublicSet) -> None:
    assert len(public_set.enrol_faces) == 8
    assert public_set.enrol_faces == dict.fromkeys(public_set.enrol_faces, 1)


@pytest.mark.slow
def test_public_set_enrolled_probes_get_the_right_suggestion_or_none(public_set: PublicSet) -> None:
    enrolled = set(public_set.names.values())
    probes = [p for p in public_set.photos if p.role == "probe" and p.expected is not None]
    assert len(probes) == 13 and {p.expected for p in probes} <= enrolled
    answers = {p.file: [public_set.named(s) for s in p.suggestions] for p in probes}
    assert {p.file: answers[p.file] for p in probes if set(answers[p.file]) - {None, p.expected}} == {}
    right = [p.file for p in probes if p.expected in answers[p.file]]
    # Measured with the HOG engine: 12 of 13 (p010, a small video still, is at 0.519: no suggestion).
    assert len(right) >= 0.8 * len(probes), answers


@pytest.mark.slow
def test_public_set_non_enrolled_people_are_suggested_as_nobody(public_set: PublicSet) -> None:
    enrolled = set(public_set.names.values())
    strangers = [p for p in public_set.photos
                 if p.role == "negative" or (p.role == "probe" and p.expected is None)
                 or (p.role == "group" and not enrolled & set(p.identities))]
    assert {p.file for p in strangers} >= {"probes/p004.jpg", "probes/p008.jpg", "groups/g04.jpg",
                                           "groups/g05.jpg", "groups/g06.jpg"}
    assert sum(len(p.suggestions) for p in strangers) >= 10  # faces were found, and then not matched
    suggested = {p.file: [public_set.named(s) for s in p.suggestions if s] for p in strangers}
    assert {file: names for file, names in suggested.items() if names} == {}


@pytest.mark.slow
def test_public_set_group_photos_suggest_only_people_in_them(public_set: PublicSet) -> None:
    enrolled = set(public_set.names.values())
    groups = [p for p in public_set.photos if p.role == "group" and enrolled & set(p.identities)]
    assert len(groups) == 3
    found = 0
    for photo in groups:
        names = [public_set.named(s) for s in photo.suggestions if s is not None]
        assert set(names) <= enrolled & set(photo.identities), photo
        assert len(names) == len(set(names)), photo  # nobody twice in one photo
        found += len(names)
    # Measured: all 6 enrolled faces of g01, g02 and g03 suggested; g03's child is suggested as nobody.
    assert found >= 0.8 * sum(len(enrolled & set(p.identities)) for p in groups)


@pytest.mark.slow
def test_public_set_nothing_is_auto_accepted_by_default(public_set: PublicSet) -> None:
    assert not any(s.auto_accept for p in public_set.photos for s in p.suggestions if s is not None)
