"""The publication gate as a pure function: a table of cases for every reason, and properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent_registry.publishing.gate import (
    REASONS,
    AppearanceFacts,
    Blocker,
    GateDecision,
    PersonConsent,
    evaluate,
)

AT = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
FUTURE, PAST = date(2025, 7, 31), date(2025, 4, 30)


def face(appearance_id: int, person_id: int | None = None, resolution: str | None = None, *,
         suggested: int | None = None, kind: str = "face") -> AppearanceFacts:
    """An appearance; identified when it has a person and no resolution is given."""
    if resolution is None:
        resolution = "identified" if person_id is not None else "unresolved"
    return AppearanceFacts(appearance_id, kind, person_id, suggested, resolution)


def consent(person_id: int, state: str = "granted", *, until: date | None = FUTURE,
            left: bool = False, ids: tuple[int, ...] | None = None) -> PersonConsent:
    """A person's effective consent."""
    if ids is None:
        ids = (100 + person_id,) if state != "none" else ()
    return PersonConsent(person_id, state, ids, until if state == "granted" else None, left)


def gate(appearances: list[AppearanceFacts] | tuple[AppearanceFacts, ...] = (),
         consents: list[PersonConsent] | tuple[PersonConsent, ...] = (), **changes: Any) -> GateDecision:
    """The gate with a ready, attested photo on facebook unless changed."""
    arguments: dict[str, Any] = {
        "kind": "photo", "status": "ready", "voices_analysed": False, "channel": "facebook",
        "at": AT, "attested": True}
    arguments.update(changes)
    return evaluate(appearances=list(appearances), consents={c.person_id: c for c in consents},
                    **arguments)


def reasons(decision: GateDecision) -> list[tuple[int | None, int | None, str]]:
    """The blockers as (appearance, person, reason)."""
    return [(b.appearance_id, b.person_id, b.reason) for b in decision.blockers]


# --- the table: every reason, and what does not block ----------------------------------------

CASES = [
    # (label, appearances, consents, changes, expected blockers)
    ("empty ready photo", [], [], {}, []),
    ("tagged and granted", [face(1, 7)], [consent(7)], {}, []),
    ("granted, indefinitely", [face(1, 7)], [consent(7, until=None)], {}, []),
    ("granted until today", [face(1, 7)], [consent(7, until=AT.date())], {}, []),
    ("not recognisable", [face(1, resolution="not_recognisable")], [], {}, []),
    ("blurred, even with a person who refused", [face(1, 7, "blur")], [consent(7, "refused")], {}, []),
    ("queued photo", [], [], {"status": "queued"}, [(None, None, "not_analysed")]),
    ("analysing video", [], [], {"kind": "video", "status": "analysing"},
     [(None, None, "not_analysed")]),
    ("unknown status", [], [], {"status": "paused"}, [(None, None, "not_analysed")]),
    ("unknown kind", [], [], {"kind": "hologram"}, [(None, None, "not_analysed")]),
    ("audio without voices", [], [], {"kind": "audio"}, [(None, None, "not_analysed")]),
    ("audio with voices", [], [], {"kind": "audio", "voices_analysed": True}, []),
    ("video without voices", [], [], {"kind": "video"}, [(None, None, "not_analysed")]),
    ("video with voices", [], [], {"kind": "video", "voices_analysed": True}, []),
    ("video with voices, a tagged face and voice granted", [face(1, 7), face(2, 7, kind="voice")],
     [consent(7)], {"kind": "video", "voices_analysed": True}, []),
    ("a photo claiming its voices were heard", [face(1, 7)], [consent(7)],
     {"voices_analysed": True}, []),
    ("audio with voices, analysis failed", [], [],
     {"kind": "audio", "voices_analysed": True, "status": "failed"},
     [(None, None, "analysis_failed")]),
    ("failed photo", [], [], {"status": "failed"}, [(None, None, "analysis_failed")]),
    ("unresolved face", [face(1)], [], {}, [(1, None, "unresolved")]),
    ("untagged voice", [face(2, kind="voice")], [], {"kind": "audio", "voices_analysed": True},
     [(2, None, "unresolved")]),
    ("tagged voice, granted", [face(2, 7, kind="voice")], [consent(7)],
     {"kind": "audio", "voices_analysed": True}, []),
    ("tagged voice, refused", [face(2, 7, kind="voice")], [consent(7, "refused")],
     {"kind": "audio", "voices_analysed": True}, [(2, 7, "refused")]),
    ("voice not recognisable", [face(2, kind="voice", resolution="not_recognisable")], [],
     {"kind": "audio", "voices_analysed": True}, []),
    ("a blurred voice is still heard", [face(2, 7, "blur", kind="voice")], [consent(7)],
     {"kind": "audio", "voices_analysed": True}, [(2, None, "unresolved")]),
    ("identified without a person", [face(1, None, "identified")], [], {}, [(1, None, "unresolved")]),
    ("unknown resolution", [face(1, 7, "maybe")], [consent(7)], {}, [(1, None, "unresolved")]),
    ("unknown appearance kind", [face(1, 7, "blur", kind="smell")], [], {},
     [(1, None, "unresolved")]),
    ("unknown appearance kind, identified as someone who granted",
     [face(1, 7, kind="smell")], [consent(7)], {}, [(1, None, "unresolved")]),
    ("suggestion", [face(1, suggested=7)], [consent(7)], {}, [(1, None, "suggestion_unconfirmed")]),
    ("no answer", [face(1, 7)], [consent(7, "none")], {}, [(1, 7, "no_consent")]),
    ("nobody asked about the person", [face(1, 7)], [], {}, [(1, 7, "no_consent")]),
    ("an entry for another person", [face(1, 7)],
     [], {"consents": {7: consent(8)}}, [(1, 7, "no_consent")]),
    ("unknown state", [face(1, 7)], [consent(7, "maybe")], {}, [(1, 7, "no_consent")]),
    ("a grant without records", [face(1, 7)], [consent(7, ids=())], {}, [(1, 7, "no_consent")]),
    ("refused", [face(1, 7)], [consent(7, "refused")], {}, [(1, 7, "refused")]),
    ("withdrawn", [face(1, 7)], [consent(7, "withdrawn")], {}, [(1, 7, "withdrawn")]),
    ("expired", [face(1, 7)], [consent(7, "expired")], {}, [(1, 7, "expired")]),
    ("granted but past its end", [face(1, 7)], [consent(7, until=PAST)], {}, [(1, 7, "expired")]),
    ("left, even with a grant", [face(1, 7)], [consent(7, left=True)], {}, [(1, 7, "person_left")]),
    ("not attested", [face(1, 7)], [consent(7)], {"attested": False}, [(None, None, "not_attested")]),
    ("everything at once", [face(3, 7), face(1), face(2, suggested=8), face(4, 8, "blur")],
     [consent(7, "withdrawn")], {"status": "failed", "attested": False},
     [(None, None, "analysis_failed"), (None, None, "not_attested"), (1, None, "unresolved"),
      (2, None, "suggestion_unconfirmed"), (3, 7, "withdrawn")]),
    ("the same person twice", [face(1, 7), face(2, 7)], [consent(7, "expired")], {},
     [(1, 7, "expired"), (2, 7, "expired")]),
]


@pytest.mark.parametrize(("appearances", "consents", "changes", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_table(appearances: list[AppearanceFacts], consents: list[PersonConsent],
               changes: dict[str, Any], expected: list[tuple[int | None, int | None, str]]) -> None:
    """Each case answers exactly these blockers, and allows only when there are none."""
    if "consents" in changes:
        decision = evaluate(kind="photo", status="ready", voices_analysed=False,
                            appearances=appearances, channel="facebook", at=AT, attested=True,
                            **changes)
    else:
        decision = gate(appearances, consents, **changes)
    assert reasons(decision) == expected
    assert decision.allowed is (expected == [])


def test_the_table_covers_every_reason() -> None:
    """No reason goes untested."""
    assert {reason for *_, expected in CASES for *_, reason in expected} == set(REASONS)


def test_unknown_channel_and_naive_moment_are_errors() -> None:
    """The gate cannot answer for a channel it does not know, nor for a moment without a zone."""
    with pytest.raises(ValueError, match="channel"):
        gate(channel="biometric")
    with pytest.raises(ValueError, match="channel"):
        gate(channel="")
    with pytest.raises(ValueError, match="channel"):
        gate(channel="facebook", known_channels=("website",))
    assert gate(channel="intranet", known_channels=("intranet",)).allowed
    with pytest.raises(ValueError, match="timezone"):
        gate(at=AT.replace(tzinfo=None))


def test_people_and_json() -> None:
    """People are everyone identified (not blurred), by id, with the records that decide."""
    decision = gate([face(3, 9), face(1, 7), face(2, 8, "blur"), face(4, 7)],
                    [consent(9, until=None), consent(7), consent(8)])
    assert decision.allowed and [p.person_id for p in decision.people] == [7, 9]
    assert decision.as_json() == {
        "allowed": True, "blockers": [],
        "people": [
            {"person_id": 7, "state": "granted", "consent_record_ids": [107],
             "valid_until": "2025-07-31", "left": False},
            {"person_id": 9, "state": "granted", "consent_record_ids": [109], "valid_until": None,
             "left": False},
        ]}
    missing = gate([face(1, 7)])
    assert missing.as_json() == {
        "allowed": False,
        "blockers": [{"appearance_id": 1, "person_id": 7, "reason": "no_consent"}],
        "people": [{"person_id": 7, "state": "none", "consent_record_ids": [], "valid_until": None,
                    "left": False}]}
    assert Blocker(None, None, "not_attested").as_json()["appearance_id"] is None


# --- properties ------------------------------------------------------------------------------

PEOPLE = st.integers(min_value=1, max_value=6)
RESOLUTIONS = st.sampled_from(["unresolved", "identified", "not_recognisable", "blur", "odd"])
STATES = st.sampled_from(["granted", "refused", "withdrawn", "expired", "none", "odd"])


@st.composite
def appearances(draw: st.DrawFn, min_size: int = 0) -> list[AppearanceFacts]:
    """Appearances with distinct ids."""
    ids = draw(st.lists(st.integers(min_value=1, max_value=1000), min_size=min_size, max_size=8,
                        unique=True))
    return [AppearanceFacts(i, draw(st.sampled_from(["face", "voice"])),
                            draw(st.none() | PEOPLE), draw(st.none() | PEOPLE), draw(RESOLUTIONS))
            for i in ids]


@st.composite
def consents(draw: st.DrawFn) -> dict[int, PersonConsent]:
    """Some people's consents, mostly granted so that allowed answers occur."""
    result = {}
    for person_id in draw(st.sets(PEOPLE)):
        state = draw(st.sampled_from(["granted"] * 4) | STATES)
        until = draw(st.none() | st.sampled_from([FUTURE, PAST, AT.date()]))
        left = draw(st.sampled_from([False] * 5 + [True]))
        result[person_id] = PersonConsent(person_id, state, (person_id,), until, left)
    return result


@st.composite
def situations(draw: st.DrawFn) -> dict[str, Any]:
    """Every input to the gate."""
    return {
        "kind": draw(st.sampled_from(["photo", "video", "audio"])),
        "status": draw(st.sampled_from(["ready"] * 4 + ["queued", "analysing", "failed"])),
        "voices_analysed": draw(st.booleans()),
        "appearances": draw(appearances()),
        "consents": draw(consents()),
        "channel": draw(st.sampled_from(["facebook", "website", "newsletter", "schoolguide"])),
        "at": AT,
        "attested": draw(st.sampled_from([True] * 3 + [False])),
    }


def unconsented(draw: st.DrawFn, taken: set[int], consents_: dict[int, PersonConsent]
                ) -> AppearanceFacts:
    """An appearance nobody has cleared: untagged, suggested, or a person without a valid grant."""
    appearance_id = draw(st.integers(min_value=1001, max_value=2000).filter(lambda i: i not in taken))
    person = draw(PEOPLE)
    options = [AppearanceFacts(appearance_id, "face", None, None, "unresolved"),
               AppearanceFacts(appearance_id, "voice", None, person, "unresolved")]
    current = consents_.get(person)
    if current is None or current.state != "granted":
        options.append(AppearanceFacts(appearance_id, "face", person, None, "identified"))
    return draw(st.sampled_from(options))


@settings(max_examples=300, deadline=None)
@given(situation=situations(), data=st.data())
def test_adding_an_unconsented_appearance_never_allows(situation: dict[str, Any],
                                                       data: st.DataObject) -> None:
    """Adding an appearance without consent keeps every blocker and never allows."""
    before = evaluate(**situation)
    taken = {a.appearance_id for a in situation["appearances"]}
    extra = unconsented(data.draw, taken, situation["consents"])
    after = evaluate(**{**situation, "appearances": [*situation["appearances"], extra]})
    assert not after.allowed
    assert set(before.blockers) <= set(after.blockers)


@settings(max_examples=300, deadline=None)
@given(situation=situations(), data=st.data())
def test_adding_any_appearance_never_turns_a_block_into_an_allow(situation: dict[str, Any],
                                                                 data: st.DataObject) -> None:
    """Whatever is added, a blocked item stays blocked."""
    before = evaluate(**situation)
    taken = {a.appearance_id for a in situation["appearances"]}
    extra = data.draw(appearances(min_size=1).map(
        lambda found: [replace(a, appearance_id=a.appearance_id + 5000) for a in found
                       if a.appearance_id + 5000 not in taken]))
    after = evaluate(**{**situation, "appearances": [*situation["appearances"], *extra]})
    if not before.allowed:
        assert not after.allowed


@settings(max_examples=300, deadline=None)
@given(situation=situations(), data=st.data())
def test_removing_a_consent_never_allows(situation: dict[str, Any], data: st.DataObject) -> None:
    """A grant turned into any other state (or gone) never turns a block into an allow."""
    granted = [p for p, c in situation["consents"].items() if c.state == "granted"]
    if not granted:
        return
    person_id = data.draw(st.sampled_from(granted))
    before = evaluate(**situation)
    changed = dict(situation["consents"])
    new_state = data.draw(st.sampled_from(["refused", "withdrawn", "expired", "none", "gone"]))
    if new_state == "gone":
        del changed[person_id]
    else:
        changed[person_id] = replace(changed[person_id], state=new_state)
    after = evaluate(**{**situation, "consents": changed})
    if not before.allowed:
        assert not after.allowed
    assert {b for b in before.blockers if b.person_id != person_id} <= set(after.blockers)
    tagged = any(a.person_id == person_id and a.resolution == "identified"
                 for a in situation["appearances"])
    if tagged:
        assert not after.allowed


@settings(max_examples=300, deadline=None)
@given(situation=situations(), data=st.data())
def test_order_of_appearances_never_matters(situation: dict[str, Any], data: st.DataObject) -> None:
    """Any permutation answers the same decision: allowed, blockers and people alike."""
    shuffled = data.draw(st.permutations(situation["appearances"]))
    before = evaluate(**situation)
    after = evaluate(**{**situation, "appearances": list(shuffled)})
    assert after == before
    assert before.allowed == (before.blockers == ())
    assert all(b.reason in REASONS for b in before.blockers)
