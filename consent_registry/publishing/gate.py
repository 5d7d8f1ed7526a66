"""The publication gate: may this item go on this channel now? Pure: no Flask, no database.

Default deny. Every fact the gate does not recognise (a kind, a status, a resolution, a consent
state, a person without an entry) blocks, with a reason per appearance, so a blocker can always
be shown next to the face, track or voice it concerns. The answer does not depend on the order in
which appearances are given: blockers and people come out sorted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

REASONS = ("not_analysed", "analysis_failed", "unresolved", "suggestion_unconfirmed", "no_consent",
           "refused", "withdrawn", "expired", "person_left", "not_attested")
# The channels a school has when its configuration names none (consent.rules has no list).
DEFAULT_CHANNELS = ("facebook", "website", "newsletter", "schoolguide")
# Resolutions a human chose that need nobody's consent: the face or voice is not recognisable, or
# the face will be made unrecognisable in the published rendition. Renditions do not alter sound,
# so a voice marked "blur" is not cleared by it.
_NO_CONSENT_NEEDED = {"face": ("not_recognisable", "blur"), "voice": ("not_recognisable",)}
_REFUSING_STATES = ("refused", "withdrawn", "expired")
_KINDS = ("face", "voice")


@dataclass(frozen=True, slots=True)
class AppearanceFacts:
    """What the gate needs to know about one face, face track or voice."""

    appearance_id: int
    kind: str
    person_id: int | None
    suggested_person_id: int | None
    resolution: str


@dataclass(frozen=True, slots=True)
class PersonConsent:
    """A tagged person's effective consent for the channel at the moment asked about."""

    person_id: int
    state: str  # granted|refused|withdrawn|expired|none (consent.rules STATES)
    record_ids: tuple[int, ...]
    valid_until: date | None
    left: bool

    def as_json(self) -> dict[str, Any]:
        """JSON-ready, as in a decision."""
        return {"person_id": self.person_id, "state": self.state,
                "consent_record_ids": list(self.record_ids),
                "valid_until": self.valid_until.isoformat() if self.valid_until else None,
                "left": self.left}


@dataclass(frozen=True, slots=True)
class Blocker:
    """One reason the item may not be published; appearance and person when it concerns one."""

    appearance_id: int | None
    person_id: int | None
    reason: str

    def as_json(self) -> dict[str, Any]:
        """JSON-ready, as in a decision."""
        return {"appearance_id": self.appearance_id, "person_id": self.person_id,
                "reason": self.reason}


@dataclass(frozen=True, slots=True)
class GateDecision:
    """The gate's answer: allowed only when nothing blocks; the consents of everyone tagged."""

    allowed: bool
    blockers: tuple[Blocker, ...]
    people: tuple[PersonConsent, ...]

    def as_json(self) -> dict[str, Any]:
        """{"allowed", "blockers": [...], "people": [...]}, JSON-ready."""
        return {"allowed": self.allowed, "blockers": [b.as_json() for b in self.blockers],
                "people": [p.as_json() for p in self.people]}


def evaluate(
    *,
    kind: str,
    status: str,
    voices_analysed: bool,
    appearances: Sequence[AppearanceFacts],
    consents: Mapping[int, PersonConsent],
    channel: str,
    at: datetime,
    attested: bool,
    known_channels: Collection[str] = DEFAULT_CHANNELS,
) -> GateDecision:
    """Whether the item may be published on the channel at `at`, and everything that blocks it."""
    if channel not in known_channels:
        raise ValueError(f"unknown channel {channel!r}")
    if at.utcoffset() is None:
        raise ValueError("at must be timezone-aware")
    blockers: set[Blocker] = set()
    analysis = _analysis_reason(kind=kind, status=status, voices_analysed=voices_analysed)
    if analysis:
        blockers.add(Blocker(None, None, analysis))
    if attested is not True:
        blockers.add(Blocker(None, None, "not_attested"))
    people: dict[int, PersonConsent] = {}
    for appearance in appearances:
        person_id = appearance.person_id if _needs_consent(appearance) else None
        if person_id is not None:
            consent = _consent_of(person_id, consents)
            people[person_id] = consent
            reason = _consent_reason(consent, at.date())
        else:
            reason = _appearance_reason(appearance)
        if reason:
            blockers.add(Blocker(appearance.appearance_id, person_id, reason))
    ordered = tuple(sorted(blockers, key=_blocker_key))
    return GateDecision(allowed=not ordered, blockers=ordered,
                        people=tuple(people[k] for k in sorted(people)))


def _analysis_reason(*, kind: str, status: str, voices_analysed: bool) -> str | None:
    """Why the analysis does not yet let the item through, or None when it has finished."""
    if status == "failed":
        return "analysis_failed"
    if status != "ready" or kind not in ("photo", "video", "audio"):
        return "not_analysed"
    if kind in ("audio", "video") and voices_analysed is not True:
        return "not_analysed"  # a video's sound is listened to as well as a recording's
    return None


def _needs_consent(appearance: AppearanceFacts) -> bool:
    """A known kind identified as a person: that person's consent decides."""
    return (appearance.kind in _KINDS and appearance.resolution == "identified"
            and appearance.person_id is not None)


def _appearance_reason(appearance: AppearanceFacts) -> str | None:
    """Why an appearance that is not a tagged person blocks, or None when a human cleared it."""
    if appearance.resolution in _NO_CONSENT_NEEDED.get(appearance.kind, ()):
        return None
    if appearance.suggested_person_id is not None and appearance.resolution == "unresolved":
        return "suggestion_unconfirmed"
    return "unresolved"  # no decision, an identified face without a person, or anything unknown


def _consent_of(person_id: int, consents: Mapping[int, PersonConsent]) -> PersonConsent:
    """The person's consent; nobody's entry (or another person's) counts as no answer."""
    consent = consents.get(person_id)
    if consent is None or consent.person_id != person_id:
        return PersonConsent(person_id, "none", (), None, False)
    return consent


def _consent_reason(consent: PersonConsent, day: date) -> str | None:
    """Why this consent does not allow publication on `day`, or None when it does."""
    if consent.left is not False:
        return "person_left"
    if consent.state == "granted":
        if consent.valid_until is not None and consent.valid_until < day:
            return "expired"
        return None if consent.record_ids else "no_consent"  # a grant without proof is no grant
    if consent.state in _REFUSING_STATES:
        return consent.state
    return "no_consent"


def _blocker_key(blocker: Blocker) -> tuple[int, int, int, int, str]:
    """Media-wide blockers first, then by appearance and person; None sorts before numbers."""
    return (blocker.appearance_id is not None, blocker.appearance_id or 0,
            blocker.person_id is not None, blocker.person_id or 0, blocker.reason)
