"""The matching rule: which enrolled person, if anyone, a face encoding should be suggested as.

Pure code over numpy arrays, no Flask, no database. The rule (media issue):

- per person, the distance is the smallest Euclidean distance from the face to any of that person's
  references (a person may have several);
- the nearest person is suggested when that distance is within `threshold` (inclusive, default 0.5)
  AND the next-nearest *other* person is further away by at least `margin` (default 0.05); a second
  reference of the same person is never a competitor;
- the result is a `Suggestion` a human confirms. `auto_accept` is set only when the policy has an
  `auto_accept_below` distance (off by default) and the distance is strictly below it;
- otherwise the answer is None: the face matches nobody.

Edges are compared with a tolerance of `EDGE_TOLERANCE` (1e-9), so a distance that is "exactly the
threshold" or a gap that is "exactly the margin" up to floating-point rounding still matches, while
"below auto_accept_below" stays strict (rounding never tips a face into auto-accept).

Degenerate input never crashes and never matches: a face encoding that has NaN/inf values or is all
zeros gets None; a reference like that is ignored (it neither matches nor competes). Arrays of the
wrong shape (anything but `ENCODING_SIZE` numbers, or `VOICE_ENCODING_SIZE` for voices) or of a
non-numeric dtype raise ValueError, and so does mixing faces with voices in one call.

Voices follow the same rule over Resemblyzer's unit-length 256-number embeddings (media/voices.py),
with their own numbers (VOICE_MATCH_THRESHOLD 0.6, VOICE_MATCH_MARGIN 0.05). Measured on the public
LibriSpeech clips: a speaker's other clip lies 0.30-0.46 from their own, other speakers 0.75-1.05.

Privacy: this module keeps nothing. Whatever calls it must not store the encoding of a face whose
answer is None ("encodings of faces that match nobody are never stored"), and stores a confirmed
face's encoding only as a reference of a person with a valid biometric consent.

Measured on the public set (shared/data/public) with `faces.make_engine()` defaults (HOG) and the
default policy (threshold 0.5, margin 0.05), the 8 enroll/ people enrolled with one reference each
(tests/test_matching.py checks the rule on every run; the exact distances move by ~0.01-0.03 when the
detector's boxes change):

- enrolled probes: 12 of 13 get the right suggestion, 1 gets none (p010, a small video still of
  alex_lacamoire, at 0.527), none gets a wrong one. Right-match distances 0.24-0.48 (0.24 is p017, a
  crop of the enrolment photo itself); the next other person was always 0.23 or more further away.
- non-enrolled people: 0 of 14 faces suggested. Nearest distances: probes of steve_carell 0.75 and
  amy_adams 0.83; g04's two non-enrolled people 0.70/0.85; the 9 unknown faces the engine finds in g05/g06
  0.58-0.75; the non-enrolled child in g03 0.78. The closest stranger (0.58) is 0.08 above the
  threshold. The 2 photos without people give no faces.
- group photos with enrolled people (g01, g02, g03): all 6 enrolled faces suggested correctly
  (0.34-0.45), nobody suggested who is not in the photo.
- no auto-accept by default. With `auto_accept_below=0.4`, 8 of the 13 enrolled probes and 5 of the
  6 enrolled group faces would be auto-accepted, none wrongly.
- other thresholds: 0.55 would get 13 of 13 probes right and still suggest no stranger; 0.6
  suggests a stranger (a g05 face as eric_clapton).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ENCODING_SIZE = 128  # dlib's face descriptor
VOICE_ENCODING_SIZE = 256  # Resemblyzer's speaker embedding (media/voices.py), unit length
ENCODING_SIZES = (ENCODING_SIZE, VOICE_ENCODING_SIZE)
EDGE_TOLERANCE = 1e-9  # rounding allowed at the threshold and margin edges
MIN_NORM = 1e-6  # an encoding shorter than this is not a face (real ones are about 0.9-1.0 long)
_BLOCK = 1 << 22  # distance-matrix entries computed at once (32 MiB of float64)


def _as_encoding(value: object, what: str) -> np.ndarray:
    """value as a read-only float64 vector of one of the ENCODING_SIZES, or ValueError."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{what} must be numeric, not {array.dtype}")
    if array.ndim != 1 or array.shape[0] not in ENCODING_SIZES:
        raise ValueError(f"{what} must have shape ({ENCODING_SIZE},) or ({VOICE_ENCODING_SIZE},), "
                         f"not {array.shape}")
    array = np.array(array, dtype=np.float64)  # a copy: the caller's array may change later
    array.flags.writeable = False
    return array


def _usable(rows: np.ndarray) -> np.ndarray:
    """Which rows of an (n, ENCODING_SIZE) array are real encodings: finite and not (near) zero."""
    finite = np.isfinite(rows).all(axis=1)
    with np.errstate(over="ignore"):
        norms = np.linalg.norm(np.where(finite[:, None], rows, 0.0), axis=1)
    return finite & (norms >= MIN_NORM)


@dataclass(frozen=True, slots=True, eq=False)
class Reference:
    """One enrolled encoding of a person (a person may have several).

    The encoding is copied into a read-only float64 array. Compared by identity: arrays have no
    single truth value, so value equality would be a trap.
    """

    person_id: int
    encoding: np.ndarray

    def __post_init__(self) -> None:
        """Check the id and the shape; freeze a copy of the encoding."""
        try:
            person_id = operator.index(self.person_id)
        except TypeError:
            raise ValueError(f"person_id must be an integer, not {self.person_id!r}") from None
        if isinstance(self.person_id, bool):
            raise ValueError("person_id must be an integer, not a bool")
        object.__setattr__(self, "person_id", int(person_id))
        object.__setattr__(self, "encoding", _as_encoding(self.encoding, "reference encoding"))


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    """The configurable numbers of the rule; see the module docstring."""

    threshold: float = 0.5
    margin: float = 0.05
    auto_accept_below: float | None = None

    def __post_init__(self) -> None:
        """Refuse numbers that would make the rule meaningless."""
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"threshold must be a positive number, not {self.threshold!r}")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"margin must be a number >= 0, not {self.margin!r}")
        below = self.auto_accept_below
        if below is not None and not (math.isfinite(below) and 0 < below <= self.threshold):
            raise ValueError(f"auto_accept_below must be in (0, threshold={self.threshold}], not {below!r}")


@dataclass(frozen=True, slots=True)
class Suggestion:
    """The person a face probably is: a human confirms it unless auto_accept is set."""

    person_id: int
    distance: float
    auto_accept: bool


DEFAULT_POLICY = MatchPolicy()


VOICE_POLICY = MatchPolicy(threshold=0.6, margin=0.05)


def policy_from_settings(settings: Mapping[str, object], *, prefix: str = "") -> MatchPolicy:
    """The policy the {prefix}MATCH_* settings describe; ValueError when they make no sense."""
    default = VOICE_POLICY if prefix == "VOICE_" else DEFAULT_POLICY

    def number(name: str, default: float | None) -> float | None:
        value = settings.get(name, default)
        if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "off"}):
            return None
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, not {value!r}") from None

    threshold = number(f"{prefix}MATCH_THRESHOLD", default.threshold)
    margin = number(f"{prefix}MATCH_MARGIN", default.margin)
    return MatchPolicy(threshold=default.threshold if threshold is None else threshold,
                       margin=default.margin if margin is None else margin,
                       auto_accept_below=number(f"{prefix}MATCH_AUTO_ACCEPT_BELOW", None))


def suggest(encoding: np.ndarray, references: Sequence[Reference], *,
            policy: MatchPolicy = DEFAULT_POLICY) -> Suggestion | None:
    """The suggestion for one face encoding, or None when it matches nobody."""
    return suggest_many([_as_encoding(encoding, "encoding")], references, policy=policy)[0]


def suggest_many(encodings: Sequence[np.ndarray] | np.ndarray, references: Sequence[Reference], *,
                 policy: MatchPolicy = DEFAULT_POLICY) -> list[Suggestion | None]:
    """suggest() for each encoding (a sequence of vectors or an (n, 128) array), in order."""
    probes = _as_matrix(encodings)
    answers: list[Suggestion | None] = [None] * len(probes)
    references = list(references)
    if not references or not len(probes):
        return answers
    if len({r.encoding.size for r in references} | {probes.shape[1]}) > 1:
        raise ValueError("encodings and references must be of one kind (all faces or all voices)")
    matrix = np.stack([r.encoding for r in references])
    ids = np.array([r.person_id for r in references], dtype=np.int64)
    keep = _usable(matrix)
    if not keep.any():
        return answers
    # Sort the references by person: column j of `by_person` below is person `people[j]`.
    people, person_of_ref = np.unique(ids[keep], return_inverse=True)
    order = np.argsort(person_of_ref, kind="stable")
    matrix = matrix[keep][order]
    starts = np.flatnonzero(np.r_[True, np.diff(person_of_ref[order]) != 0])
    usable = np.flatnonzero(_usable(probes))
    block = max(1, _BLOCK // len(matrix))
    for first in range(0, len(usable), block):
        rows = usable[first:first + block]
        by_person = np.minimum.reduceat(_distances(probes[rows], matrix), starts, axis=1)
        nearest = np.argmin(by_person, axis=1)
        best = by_person[np.arange(len(rows)), nearest]
        # the second-smallest per row; the extra column of inf stands in for "no other person"
        second = np.partition(np.c_[by_person, np.full(len(rows), np.inf)], 1, axis=1)[:, 1]
        with np.errstate(invalid="ignore"):  # inf - inf when nobody is at a finite distance: no match
            gap = second - best
        ok = (best <= policy.threshold + EDGE_TOLERANCE) & (gap >= policy.margin - EDGE_TOLERANCE)
        for row, person, distance in zip(rows[ok], people[nearest[ok]], best[ok], strict=True):
            auto = (policy.auto_accept_below is not None
                    and distance < policy.auto_accept_below - EDGE_TOLERANCE)
            answers[row] = Suggestion(int(person), float(distance), bool(auto))
    return answers


def _as_matrix(encodings: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """The encodings as an (n, ENCODING_SIZE) float64 array, or ValueError."""
    if isinstance(encodings, np.ndarray) and encodings.ndim != 2:
        raise ValueError(f"encodings must be a sequence of vectors or an (n, {ENCODING_SIZE}) array, "
                         f"not an array of shape {encodings.shape}")
    try:
        rows = list(encodings)  # the rows of a 2-d array, or the items of a sequence
    except TypeError:
        raise ValueError(f"encodings must be a sequence of vectors, not {type(encodings).__name__}") from None
    if not rows:
        return np.empty((0, ENCODING_SIZE))
    matrix = [_as_encoding(row, f"encoding {i}") for i, row in enumerate(rows)]
    if len({row.size for row in matrix}) > 1:
        raise ValueError("encodings must all be of one kind (all faces or all voices)")
    return np.stack(matrix)


def _distances(probes: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Euclidean distances, (len(probes), len(refs)), via |a|^2 + |b|^2 - 2ab (one matrix product).

    Absurdly large values overflow to inf or NaN: such a distance counts as infinitely far.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        squared = (np.einsum("ij,ij->i", probes, probes)[:, None]
                   + np.einsum("ij,ij->i", refs, refs)[None, :] - 2.0 * probes @ refs.T)
        distances = np.sqrt(np.maximum(squared, 0.0))
    return np.where(np.isnan(distances), np.inf, distances)
