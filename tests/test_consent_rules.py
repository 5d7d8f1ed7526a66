"""Pure rules for effective consent: who decides, which records count, and how long a grant holds."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent_registry.consent.rules import (
    DECIDER_KINDS,
    DECISIONS,
    STATES,
    Effective,
    PersonFacts,
    Policy,
    Record,
    decider_kind_at,
    default_valid_until,
    effective_consent,
)
from consent_registry.people.age import age_on

AT = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
TODAY = AT.date()
YESTERDAY = TODAY - timedelta(days=1)
TOMORROW = TODAY + timedelta(days=1)
WHEN = AT - timedelta(days=10)
FROM = date(2024, 9, 1)
SUMMER_25 = date(2025, 7, 31)
SUMMER_26 = date(2026, 7, 31)
ONE_SUFFICES = Policy()
ALL = Policy(all_guardians_must_grant=True)

CHILD_BORN = date(2015, 6, 1)
TEEN_BORN = date(2008, 9, 1)  # 16 on 2024-09-01, half a year before AT
TEEN_16 = datetime(2024, 9, 1, 0, 0, tzinfo=UTC)


def ago(days: float) -> datetime:
    """A moment `days` before AT."""
    return AT - timedelta(days=days)


def rec(
    id_: int,
    decision: str = "granted",
    *,
    by: str,
    guardian: int | None = None,
    when: datetime = WHEN,
    channel: str = "website",
    valid_from: date = FROM,
    valid_until: date | None = None,
) -> Record:
    """A record with defaults that make a grant valid at AT."""
    return Record(
        id=id_,
        channel=channel,
        decision=decision,
        decider_kind=by,
        guardian_id=guardian,
        decided_at=when,
        valid_from=valid_from,
        valid_until=valid_until,
    )


def g(id_: int, guardian: int, decision: str = "granted", **kwargs: Any) -> Record:
    """A record decided by a guardian."""
    return rec(id_, decision, by="guardian", guardian=guardian, **kwargs)


def p(id_: int, decision: str = "granted", **kwargs: Any) -> Record:
    """A record decided by the pupil."""
    return rec(id_, decision, by="pupil", **kwargs)


def s(id_: int, decision: str = "granted", **kwargs: Any) -> Record:
    """A record decided by a staff member for themself."""
    return rec(id_, decision, by="self", **kwargs)


def person(
    role: str = "pupil",
    *,
    born: date = CHILD_BORN,
    guardians: tuple[int, ...] = (1, 2),
    status: str = "active",
    left_on: date | None = None,
) -> PersonFacts:
    """A person; by default a nine-year-old pupil with guardians 1 and 2."""
    return PersonFacts(
        role=role, birth_date=born, status=status, left_on=left_on, guardian_ids=frozenset(guardians)
    )


def answer(
    state: str, ids: tuple[int, ...] = (), until: date | None = None, reason: str = "no_answer"
) -> Effective:
    """An expected answer."""
    return Effective(state=state, record_ids=ids, valid_until=until, reason=reason)


CHILD = person()
TEEN = person(born=TEEN_BORN)
STAFF = person("staff", born=date(1980, 1, 1), guardians=())


def check(
    who: PersonFacts,
    records: list[Record],
    expected: Effective,
    policy: Policy = ONE_SUFFICES,
    at: datetime = AT,
) -> None:
    """The answer is as expected, whatever order the records arrive in (and from a one-shot iterator)."""
    shuffles = (random.Random(seed).sample(records, len(records)) for seed in range(4))
    orders = [records, records[::-1], *shuffles]
    for order in orders:
        got = effective_consent(person=who, channel="website", at=at, records=iter(order), policy=policy)
        assert got == expected


# --- general filters: channel, time, order ---------------------------------------------------

FILTER_CASES = [
    pytest.param(CHILD, [], answer("none"), id="no-records"),
    pytest.param(STAFF, [], answer("none"), id="no-records-staff"),
    pytest.param(CHILD, [g(1, 1, channel="facebook")], answer("none"), id="other-channel-ignored"),
    pytest.param(
        CHILD,
        [g(1, 1, channel="facebook"), g(2, 2, "refused", channel="newsletter"), g(3, 1)],
        answer("granted", (3,), None, "guardian_granted"),
        id="other-channels-do-not-interfere",
    ),
    pytest.param(CHILD, [g(1, 1, when=AT)], answer("granted", (1,), None, "guardian_granted"),
                 id="decided-at-equals-at-counts"),
    pytest.param(CHILD, [g(1, 1, when=AT + timedelta(microseconds=1))], answer("none"),
                 id="decided-after-at-ignored"),
    pytest.param(
        CHILD,
        [g(1, 1), g(2, 1, "refused", when=AT + timedelta(seconds=1))],
        answer("granted", (1,), None, "guardian_granted"),
        id="future-refusal-not-yet-effective",
    ),
    pytest.param(
        STAFF,
        [s(1, when=AT.astimezone(timezone(timedelta(hours=5))))],
        answer("granted", (1,), None, "self_decided"),
        id="same-instant-in-other-time-zone-counts",
    ),
    pytest.param(STAFF, [s(1, "refused"), s(2, "granted")], answer("granted", (2,), None, "self_decided"),
                 id="same-instant-higher-id-is-later"),
    pytest.param(STAFF, [s(1, "granted"), s(2, "refused")], answer("refused", (2,), None, "self_decided"),
                 id="same-instant-higher-id-is-later-2"),
    pytest.param(
        STAFF,
        [s(1, "granted", when=ago(1)), s(2, "refused", when=ago(2))],
        answer("granted", (1,), None, "self_decided"),
        id="decided-at-beats-id",
    ),
]


@pytest.mark.parametrize(("who", "records", "expected"), FILTER_CASES)
def test_filters_and_order(who: PersonFacts, records: list[Record], expected: Effective) -> None:
    """Only this channel's records decided by `at` count, ordered by (decided_at, id)."""
    check(who, records, expected)


# --- people who have left ----------------------------------------------------------------------

LEFT_CASES = [
    pytest.param(person(status="left", left_on=TODAY), [g(1, 1)], answer("none", (), None, "person_left"),
                 id="left-today"),
    pytest.param(person(status="left", left_on=YESTERDAY), [g(1, 1)],
                 answer("none", (), None, "person_left"), id="left-yesterday"),
    pytest.param(person(status="left", left_on=None), [g(1, 1)], answer("none", (), None, "person_left"),
                 id="left-without-date"),
    pytest.param(person("staff", status="left", left_on=YESTERDAY, guardians=()), [s(1)],
                 answer("none", (), None, "person_left"), id="staff-left"),
    pytest.param(person(born=TEEN_BORN, status="left", left_on=TODAY), [p(1, when=ago(1))],
                 answer("none", (), None, "person_left"), id="teen-left"),
    pytest.param(person(status="left", left_on=TOMORROW), [g(1, 1)],
                 answer("granted", (1,), TODAY, "guardian_granted"), id="leaving-tomorrow-grant-until-today"),
    pytest.param(person(status="left", left_on=date(2025, 6, 1)), [g(1, 1, valid_until=SUMMER_25)],
                 answer("granted", (1,), date(2025, 5, 31), "guardian_granted"),
                 id="leaving-before-grant-ends"),
    pytest.param(person(status="left", left_on=date(2025, 9, 1)), [g(1, 1, valid_until=SUMMER_25)],
                 answer("granted", (1,), SUMMER_25, "guardian_granted"), id="grant-ends-before-leaving"),
    pytest.param(person(status="left", left_on=TOMORROW), [g(1, 1, "refused")],
                 answer("refused", (1,), None, "guardian_refused"), id="leaving-tomorrow-refusal"),
    pytest.param(person(status="active", left_on=YESTERDAY), [g(1, 1)],
                 answer("granted", (1,), None, "guardian_granted"), id="active-with-stale-left-on"),
]


@pytest.mark.parametrize(("who", "records", "expected"), LEFT_CASES)
def test_people_who_left(who: PersonFacts, records: list[Record], expected: Effective) -> None:
    """A leaver has no consent (fail closed); a known leaving date ends a grant the day before."""
    check(who, records, expected)


# --- staff -------------------------------------------------------------------------------------

STAFF_CASES = [
    pytest.param([s(1)], answer("granted", (1,), None, "self_decided"), id="granted-indefinitely"),
    pytest.param([s(1, valid_until=SUMMER_25)], answer("granted", (1,), SUMMER_25, "self_decided"),
                 id="granted-until"),
    pytest.param([s(1, "refused")], answer("refused", (1,), None, "self_decided"), id="refused"),
    pytest.param([s(1, "withdrawn")], answer("withdrawn", (1,), None, "self_decided"), id="withdrawn"),
    pytest.param([s(1, when=ago(5)), s(2, "withdrawn", when=ago(1))],
                 answer("withdrawn", (2,), None, "self_decided"), id="grant-then-withdrawal"),
    pytest.param([s(1, "withdrawn", when=ago(5)), s(2, when=ago(1))],
                 answer("granted", (2,), None, "self_decided"), id="withdrawal-then-new-grant"),
    pytest.param([s(1, "refused", when=ago(5)), s(2, when=ago(1))],
                 answer("granted", (2,), None, "self_decided"), id="refusal-then-grant"),
    pytest.param([g(1, 1), p(2)], answer("none"), id="guardian-and-pupil-records-ignored"),
    pytest.param([s(1, when=ago(5)), g(2, 1, "refused", when=ago(1)), p(3, "withdrawn", when=ago(1))],
                 answer("granted", (1,), None, "self_decided"), id="others-cannot-override"),
    pytest.param([s(1, valid_until=TODAY)], answer("granted", (1,), TODAY, "self_decided"),
                 id="valid-until-today"),
    pytest.param([s(1, valid_until=YESTERDAY)], answer("expired", (1,), None, "expired"),
                 id="valid-until-yesterday"),
    pytest.param([s(1, valid_from=TODAY)], answer("granted", (1,), None, "self_decided"),
                 id="valid-from-today"),
    pytest.param([s(1, valid_from=TOMORROW)], answer("none", (1,), None, "not_yet_valid"),
                 id="valid-from-tomorrow"),
    pytest.param([s(1, when=ago(5)), s(2, when=ago(1), valid_from=TOMORROW)],
                 answer("none", (2,), None, "not_yet_valid"), id="latest-grant-not-yet-valid-supersedes"),
    pytest.param([s(1, valid_until=YESTERDAY, when=ago(5)), s(2, "refused", when=ago(1))],
                 answer("refused", (2,), None, "self_decided"), id="expired-then-refused"),
    pytest.param([s(1, "refused", valid_from=TOMORROW, valid_until=TOMORROW)],
                 answer("refused", (1,), None, "self_decided"), id="refusal-ignores-validity"),
    pytest.param([s(1, "withdrawn", valid_from=date(2020, 1, 1), valid_until=date(2020, 1, 1))],
                 answer("withdrawn", (1,), None, "self_decided"), id="withdrawal-never-expires"),
]


@pytest.mark.parametrize(("records", "expected"), STAFF_CASES)
def test_staff(records: list[Record], expected: Effective) -> None:
    """Staff decide for themselves; their latest own record decides."""
    check(STAFF, records, expected)


# --- pupils under 16, one grant suffices --------------------------------------------------------

CHILD_CASES = [
    pytest.param([g(1, 1)], answer("granted", (1,), None, "guardian_granted"), id="one-guardian-grants"),
    pytest.param([g(1, 1, valid_until=SUMMER_25), g(2, 2, valid_until=SUMMER_26)],
                 answer("granted", (1, 2), SUMMER_26, "guardian_granted"), id="both-grant-latest-end"),
    pytest.param([g(1, 1, valid_until=SUMMER_25), g(2, 2)],
                 answer("granted", (1, 2), None, "guardian_granted"), id="both-grant-one-indefinite"),
    pytest.param([g(1, 1), g(2, 2, "refused")], answer("refused", (2,), None, "guardian_refused"),
                 id="refusal-wins"),
    pytest.param([g(1, 1, when=ago(1)), g(2, 2, "refused", when=ago(5))],
                 answer("refused", (2,), None, "guardian_refused"), id="older-refusal-still-wins"),
    pytest.param([g(1, 1), g(2, 2, "withdrawn")], answer("withdrawn", (2,), None, "guardian_withdrew"),
                 id="withdrawal-wins"),
    pytest.param([g(1, 1, "refused", when=ago(1)), g(2, 2, "withdrawn", when=ago(5))],
                 answer("refused", (1, 2), None, "guardian_refused"), id="latest-negative-refused"),
    pytest.param([g(1, 1, "refused", when=ago(5)), g(2, 2, "withdrawn", when=ago(1))],
                 answer("withdrawn", (1, 2), None, "guardian_withdrew"), id="latest-negative-withdrawn"),
    pytest.param([g(1, 1, "withdrawn"), g(2, 2, "refused")],
                 answer("refused", (1, 2), None, "guardian_refused"), id="negatives-same-instant-by-id"),
    pytest.param([g(1, 1, when=ago(5)), g(2, 1, "withdrawn", when=ago(1))],
                 answer("withdrawn", (2,), None, "guardian_withdrew"), id="guardian-withdraws-own-grant"),
    pytest.param([g(1, 1, "refused", when=ago(5)), g(2, 1, when=ago(1))],
                 answer("granted", (2,), None, "guardian_granted"), id="guardian-grants-after-refusing"),
    pytest.param([g(1, 1, "refused", when=ago(5)), g(2, 1, when=ago(3)), g(3, 2, when=ago(1))],
                 answer("granted", (2, 3), None, "guardian_granted"), id="only-latest-per-guardian"),
    pytest.param([g(1, 3)], answer("none"), id="removed-guardian-grant-ignored"),
    pytest.param([g(1, 1), g(2, 3, "refused")], answer("granted", (1,), None, "guardian_granted"),
                 id="removed-guardian-refusal-ignored"),
    pytest.param([p(1)], answer("none"), id="pupil-record-ignored"),
    pytest.param([g(1, 1, when=ago(5)), p(2, "withdrawn", when=ago(1))],
                 answer("granted", (1,), None, "guardian_granted"), id="pupil-withdrawal-ignored"),
    pytest.param([s(1)], answer("none"), id="self-record-ignored"),
    pytest.param([g(1, 1, valid_until=YESTERDAY)], answer("expired", (1,), None, "expired"), id="expired"),
    pytest.param([g(1, 1, valid_until=TODAY)], answer("granted", (1,), TODAY, "guardian_granted"),
                 id="valid-until-today"),
    pytest.param([g(1, 1, valid_until=YESTERDAY), g(2, 2, valid_until=SUMMER_25)],
                 answer("granted", (2,), SUMMER_25, "guardian_granted"), id="valid-beats-expired"),
    pytest.param([g(1, 1, valid_until=YESTERDAY), g(2, 2, valid_until=YESTERDAY)],
                 answer("expired", (1, 2), None, "expired"), id="both-expired"),
    pytest.param([g(1, 1, valid_until=YESTERDAY), g(2, 2, "refused")],
                 answer("refused", (2,), None, "guardian_refused"), id="refusal-beats-expired"),
    pytest.param([g(1, 1, valid_until=YESTERDAY), g(2, 2, valid_from=TOMORROW)],
                 answer("expired", (1,), None, "expired"), id="expired-beats-not-yet-valid"),
    pytest.param([g(1, 1, valid_from=TOMORROW)], answer("none", (1,), None, "not_yet_valid"),
                 id="not-yet-valid"),
    pytest.param([g(1, 1, valid_from=TODAY)], answer("granted", (1,), None, "guardian_granted"),
                 id="valid-from-today"),
    pytest.param([g(1, 1, when=ago(5)), g(2, 1, when=ago(1), valid_from=TOMORROW)],
                 answer("none", (2,), None, "not_yet_valid"), id="latest-grant-not-yet-valid-supersedes"),
    pytest.param([g(1, 1, valid_from=TOMORROW), g(2, 2)],
                 answer("granted", (2,), None, "guardian_granted"), id="valid-beats-not-yet-valid"),
]


@pytest.mark.parametrize(("records", "expected"), CHILD_CASES)
def test_child_one_grant_suffices(records: list[Record], expected: Effective) -> None:
    """Under 16 current guardians decide: one grant suffices, any refusal or withdrawal wins."""
    check(CHILD, records, expected)


def test_child_without_guardians() -> None:
    """A pupil under 16 without current guardians has nobody who can consent."""
    check(person(guardians=()), [], answer("none", (), None, "no_guardians"))
    check(person(guardians=()), [g(1, 1), p(2)], answer("none", (), None, "no_guardians"))
    check(person(guardians=()), [g(1, 1)], answer("none", (), None, "no_guardians"), ALL)


# --- pupils under 16, all guardians must grant -------------------------------------------------

ALL_CASES = [
    pytest.param([g(1, 1, valid_until=SUMMER_26), g(2, 2, valid_until=SUMMER_25)],
                 answer("granted", (1, 2), SUMMER_25, "guardian_granted"), id="both-grant-earliest-end"),
    pytest.param([g(1, 1), g(2, 2, valid_until=SUMMER_26)],
                 answer("granted", (1, 2), SUMMER_26, "guardian_granted"), id="one-indefinite"),
    pytest.param([g(1, 1), g(2, 2)], answer("granted", (1, 2), None, "guardian_granted"),
                 id="both-indefinite"),
    pytest.param([g(1, 1)], answer("none", (1,), None, "all_guardians_required"), id="one-missing"),
    pytest.param([g(1, 1), g(2, 3)], answer("none", (1,), None, "all_guardians_required"),
                 id="removed-guardian-does-not-complete"),
    pytest.param([g(1, 1), g(2, 2, "refused")], answer("refused", (2,), None, "guardian_refused"),
                 id="refusal-wins"),
    pytest.param([g(1, 1, "withdrawn", when=ago(1)), g(2, 2, "refused", when=ago(2))],
                 answer("withdrawn", (1, 2), None, "guardian_withdrew"), id="latest-negative-decides"),
    pytest.param([g(1, 1), g(2, 2, valid_until=YESTERDAY)], answer("expired", (2,), None, "expired"),
                 id="one-expired"),
    pytest.param([g(1, 1, valid_until=YESTERDAY)], answer("expired", (1,), None, "expired"),
                 id="expired-other-missing"),
    pytest.param([g(1, 1, valid_until=YESTERDAY), g(2, 2, "withdrawn")],
                 answer("withdrawn", (2,), None, "guardian_withdrew"), id="withdrawal-beats-expired"),
    pytest.param([g(1, 1), g(2, 2, valid_from=TOMORROW)],
                 answer("none", (1,), None, "all_guardians_required"), id="other-not-yet-valid"),
    pytest.param([g(1, 1, valid_from=TOMORROW)], answer("none", (1,), None, "not_yet_valid"),
                 id="only-not-yet-valid"),
    pytest.param([g(1, 1), p(2)], answer("none", (1,), None, "all_guardians_required"),
                 id="pupil-cannot-complete"),
    pytest.param([], answer("none"), id="no-answer"),
]


@pytest.mark.parametrize(("records", "expected"), ALL_CASES)
def test_child_all_guardians_must_grant(records: list[Record], expected: Effective) -> None:
    """With the stricter policy every current guardian must hold a valid grant."""
    check(CHILD, records, expected, ALL)


def test_all_guardians_with_a_single_guardian() -> None:
    """With one current guardian, that guardian's grant is everyone's."""
    check(person(guardians=(1,)), [g(1, 1, valid_until=SUMMER_25)],
          answer("granted", (1,), SUMMER_25, "guardian_granted"), ALL)


# --- pupils of 16 and older ---------------------------------------------------------------------

BEFORE_16 = TEEN_16 - timedelta(minutes=1)

TEEN_CASES = [
    pytest.param([p(1)], Policy(), answer("granted", (1,), None, "pupil_decided"), id="pupil-grants"),
    pytest.param([g(1, 1, "refused", when=BEFORE_16), g(2, 2, "refused", when=BEFORE_16), p(3)], Policy(),
                 answer("granted", (3,), None, "pupil_decided"), id="pupil-grant-overrides-guardians"),
    pytest.param([g(1, 1, when=BEFORE_16), p(2, "refused")], Policy(),
                 answer("refused", (2,), None, "pupil_decided"), id="pupil-refusal-overrides-guardian"),
    pytest.param([p(1, when=ago(5)), p(2, "withdrawn", when=ago(1))], Policy(),
                 answer("withdrawn", (2,), None, "pupil_decided"), id="pupil-withdraws"),
    pytest.param([p(1, "withdrawn", when=ago(5)), p(2, when=ago(1), valid_until=SUMMER_25)], Policy(),
                 answer("granted", (2,), SUMMER_25, "pupil_decided"), id="pupil-grants-again"),
    pytest.param([g(1, 1, when=BEFORE_16), p(2, valid_until=YESTERDAY)], Policy(),
                 answer("expired", (2,), None, "expired"), id="pupil-grant-expired-no-fallback"),
    pytest.param([g(1, 1, when=BEFORE_16), p(2, valid_from=TOMORROW)], Policy(),
                 answer("none", (2,), None, "not_yet_valid"), id="pupil-grant-not-yet-valid-no-fallback"),
    pytest.param([g(1, 1, when=BEFORE_16, valid_until=SUMMER_25)], Policy(),
                 answer("granted", (1,), SUMMER_25, "guardian_granted"), id="guardian-grant-carries-over"),
    pytest.param([g(1, 1, when=BEFORE_16, valid_until=YESTERDAY)], Policy(),
                 answer("expired", (1,), None, "expired"), id="carried-grant-expires"),
    pytest.param([g(1, 1, when=BEFORE_16), g(2, 2, "withdrawn", when=BEFORE_16)], Policy(),
                 answer("withdrawn", (2,), None, "guardian_withdrew"), id="guardian-withdrawal-carries-over"),
    pytest.param([g(1, 1, when=TEEN_16)], Policy(), answer("none"), id="guardian-grant-on-birthday-ignored"),
    pytest.param([g(1, 1, when=BEFORE_16), g(2, 2, "refused", when=TEEN_16)], Policy(),
                 answer("granted", (1,), None, "guardian_granted"), id="guardian-refusal-after-16-ignored"),
    pytest.param([g(1, 1, when=BEFORE_16), g(2, 1, "withdrawn", when=ago(1))], Policy(),
                 answer("granted", (1,), None, "guardian_granted"), id="guardian-cannot-withdraw-after-16"),
    pytest.param([g(1, 3, when=BEFORE_16)], Policy(), answer("none"), id="removed-guardian-grant-ignored"),
    pytest.param([g(1, 1, when=BEFORE_16), p(2, "refused", when=BEFORE_16)], Policy(),
                 answer("granted", (1,), None, "guardian_granted"), id="pupil-record-before-16-ignored"),
    pytest.param([g(1, 1, when=BEFORE_16), p(2, "refused", when=AT + timedelta(seconds=1))], Policy(),
                 answer("granted", (1,), None, "guardian_granted"), id="pupil-record-after-at-ignored"),
    pytest.param([s(1)], Policy(), answer("none"), id="self-record-ignored"),
    pytest.param([g(1, 1, when=BEFORE_16)], ALL, answer("none", (1,), None, "all_guardians_required"),
                 id="all-policy-carried-grant-incomplete"),
    pytest.param([g(1, 1, when=BEFORE_16), g(2, 2, when=TEEN_16)], ALL,
                 answer("none", (1,), None, "all_guardians_required"), id="all-policy-late-grant-ignored"),
    pytest.param([g(1, 1, when=BEFORE_16, valid_until=SUMMER_26), g(2, 2, when=BEFORE_16,
                  valid_until=SUMMER_25)], ALL,
                 answer("granted", (1, 2), SUMMER_25, "guardian_granted"), id="all-policy-carried-grants"),
    pytest.param([g(1, 1, when=BEFORE_16)], ALL, answer("none", (1,), None, "all_guardians_required"),
                 id="all-policy-pupil-silent"),
    pytest.param([g(1, 1, when=BEFORE_16), p(2)], ALL, answer("granted", (2,), None, "pupil_decided"),
                 id="all-policy-pupil-decides-alone"),
]


@pytest.mark.parametrize(("records", "policy", "expected"), TEEN_CASES)
def test_pupil_of_16_or_older(records: list[Record], policy: Policy, expected: Effective) -> None:
    """From 16 the pupil decides alone; until then, guardian answers from before the birthday hold."""
    check(TEEN, records, expected, policy)


def test_pupil_of_16_without_guardians() -> None:
    """From 16 a missing answer is the pupil's own, so no guardians is just no answer."""
    check(person(born=TEEN_BORN, guardians=()), [], answer("none"))
    check(person(born=TEEN_BORN, guardians=()), [p(1)], answer("granted", (1,), None, "pupil_decided"))


def _midnight(day: date) -> datetime:
    """The first instant of a day in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


BIRTHDAYS = [
    pytest.param(date(2009, 3, 10), date(2025, 3, 10), id="ordinary"),
    pytest.param(date(2008, 2, 29), date(2024, 2, 29), id="29-feb-leap-16th"),
    pytest.param(date(2084, 2, 29), date(2100, 3, 1), id="29-feb-common-16th"),
]


@pytest.mark.parametrize(("born", "birthday"), BIRTHDAYS)
def test_the_exact_16th_birthday(born: date, birthday: date) -> None:
    """The decider switches on the first day age_on says 16, also for a 29 February birthday."""
    eve = birthday - timedelta(days=1)
    assert age_on(born, eve) == 15 and age_on(born, birthday) == 16
    who = person(born=born)
    assert decider_kind_at(person=who, on=eve) == "guardian"
    assert decider_kind_at(person=who, on=birthday) == "pupil"

    granted_on = born + timedelta(days=365)
    grant = g(1, 1, when=_midnight(granted_on), valid_from=granted_on)
    eve_noon, birthday_noon = _midnight(eve) + timedelta(hours=12), _midnight(birthday) + timedelta(hours=12)
    granted = answer("granted", (1,), None, "guardian_granted")

    # The day before: a pupil's own refusal does not count yet.
    check(who, [grant, p(2, "refused", when=_midnight(eve))], granted, at=eve_noon)
    # On the birthday: it does, and decides alone.
    check(who, [grant, p(2, "refused", when=_midnight(birthday))],
          answer("refused", (2,), None, "pupil_decided"), at=birthday_noon)
    # A pupil's record from the day before stays void after the birthday.
    check(who, [grant, p(2, "refused", when=_midnight(eve))], granted, at=birthday_noon)
    # A guardian's refusal on the last day before 16 still counts after it.
    check(who, [grant, g(2, 2, "refused", when=_midnight(birthday) - timedelta(seconds=1))],
          answer("refused", (2,), None, "guardian_refused"), at=birthday_noon)
    # A guardian's refusal on the birthday itself no longer does.
    check(who, [grant, g(2, 2, "refused", when=_midnight(birthday))], granted, at=birthday_noon)


def test_days_are_counted_in_the_time_zone_of_at() -> None:
    """Whether a record was decided before the 16th birthday is judged on the calendar of `at`."""
    who = person(born=date(2009, 3, 10))
    late_evening_utc = datetime(2025, 3, 9, 22, 30, tzinfo=UTC)  # already 10 March in UTC+2
    records = [g(1, 1, when=datetime(2024, 1, 1, tzinfo=UTC)), p(2, "refused", when=late_evening_utc)]
    at_plus_two = datetime(2025, 3, 10, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    check(who, records, answer("refused", (2,), None, "pupil_decided"), at=at_plus_two)
    check(who, records, answer("granted", (1,), None, "guardian_granted"), at=at_plus_two.astimezone(UTC))


# --- decider_kind_at ----------------------------------------------------------------------------

@pytest.mark.parametrize(("who", "on", "kind"), [
    pytest.param(STAFF, TODAY, "self", id="staff"),
    pytest.param(person("staff", born=date(2010, 1, 1)), TODAY, "self", id="young-staff"),
    pytest.param(CHILD, TODAY, "guardian", id="child"),
    pytest.param(TEEN, TODAY, "pupil", id="teen"),
    pytest.param(TEEN, date(2024, 8, 31), "guardian", id="teen-day-before-16"),
    pytest.param(TEEN, date(2024, 9, 1), "pupil", id="teen-on-16th-birthday"),
])
def test_decider_kind_at(who: PersonFacts, on: date, kind: str) -> None:
    """Staff decide for themselves; pupils from their 16th birthday, guardians before it."""
    assert decider_kind_at(person=who, on=on) == kind


def test_no_decider_before_birth() -> None:
    """There is no decider, and no consent, before a pupil is born."""
    with pytest.raises(ValueError, match="before the birth"):
        decider_kind_at(person=CHILD, on=date(2015, 5, 31))
    with pytest.raises(ValueError, match="before the birth"):
        effective_consent(person=CHILD, channel="website", at=datetime(2015, 5, 31, tzinfo=UTC), records=[])


# --- default_valid_until ------------------------------------------------------------------------

@pytest.mark.parametrize(("decided_on", "rule", "expected"), [
    pytest.param(date(2025, 3, 10), "school-year", date(2025, 7, 31), id="school-year-spring"),
    pytest.param(date(2025, 7, 31), "school-year", date(2025, 7, 31), id="school-year-on-31-july"),
    pytest.param(date(2025, 8, 1), "school-year", date(2026, 7, 31), id="school-year-1-august"),
    pytest.param(date(2024, 12, 31), "school-year", date(2025, 7, 31), id="school-year-new-year"),
    pytest.param(date(2025, 1, 1), "school-year", date(2025, 7, 31), id="school-year-1-january"),
    pytest.param(date(2025, 3, 10), "indefinite", None, id="indefinite"),
    pytest.param(date(2025, 3, 15), "months:6", date(2025, 9, 15), id="months-plain"),
    pytest.param(date(2025, 1, 31), "months:1", date(2025, 2, 28), id="months-clamped-common-year"),
    pytest.param(date(2024, 1, 31), "months:1", date(2024, 2, 29), id="months-clamped-leap-year"),
    pytest.param(date(2025, 3, 31), "months:1", date(2025, 4, 30), id="months-clamped-30-day-month"),
    pytest.param(date(2025, 4, 30), "months:1", date(2025, 5, 30), id="months-30th-into-31-day-month"),
    pytest.param(date(2025, 1, 29), "months:2", date(2025, 3, 29), id="months-29th-skipping-february"),
    pytest.param(date(2024, 2, 29), "months:12", date(2025, 2, 28), id="months-from-29-feb"),
    pytest.param(date(2025, 11, 30), "months:3", date(2026, 2, 28), id="months-over-new-year"),
    pytest.param(date(2025, 12, 31), "months:13", date(2027, 1, 31), id="months-more-than-a-year"),
    pytest.param(date(2025, 12, 15), "months:1", date(2026, 1, 15), id="months-december"),
    pytest.param(date(2025, 3, 10), "months:120", date(2035, 3, 10), id="months-ten-years"),
])
def test_default_valid_until(decided_on: date, rule: str, expected: date | None) -> None:
    """Until 31 July, indefinitely, or N calendar months clamped to the month's end."""
    assert default_valid_until(decided_on=decided_on, rule=rule) == expected


@pytest.mark.parametrize("rule", [
    "", "School-year", "school_year", "school-year ", "Indefinite", "months", "months:", "months:0",
    "months:-1", "months:+1", "months:1.5", "months: 3", "months:x", "months:01", "weeks:2", "months:3:4",
])
def test_default_valid_until_rejects_unknown_rules(rule: str) -> None:
    """Anything but the three documented rules is an error, not a silent default."""
    with pytest.raises(ValueError, match="unknown validity rule"):
        default_valid_until(decided_on=TODAY, rule=rule)


# --- malformed input ----------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "message"), [
    pytest.param({"decision": "maybe"}, "unknown decision", id="decision"),
    pytest.param({"decider_kind": "teacher", "guardian_id": None}, "unknown decider kind", id="kind"),
    pytest.param({"guardian_id": None}, "guardian_id", id="guardian-without-id"),
    pytest.param({"decider_kind": "pupil"}, "guardian_id", id="pupil-with-guardian-id"),
    pytest.param({"decided_at": datetime(2025, 1, 1)}, "timezone-aware", id="naive-decided-at"),
    pytest.param({"valid_until": date(2024, 8, 31)}, "before valid_from", id="ends-before-start"),
])
def test_malformed_records_are_rejected(changes: dict[str, object], message: str) -> None:
    """A record the rule could misread is refused when it is built."""
    fields: dict[str, object] = {
        "id": 1, "channel": "website", "decision": "granted", "decider_kind": "guardian", "guardian_id": 1,
        "decided_at": WHEN, "valid_from": FROM, "valid_until": None,
    }
    with pytest.raises(ValueError, match=message):
        Record(**(fields | changes))


def test_malformed_people_and_moments_are_rejected() -> None:
    """Unknown roles or statuses, and a moment without a time zone, are errors."""
    with pytest.raises(ValueError, match="unknown role"):
        person("parent")
    with pytest.raises(ValueError, match="unknown status"):
        person(status="gone")
    with pytest.raises(ValueError, match="unknown state"):
        answer("maybe")
    with pytest.raises(ValueError, match="timezone-aware"):
        effective_consent(person=CHILD, channel="website", at=AT.replace(tzinfo=None), records=[])


def test_valid_one_day_grant() -> None:
    """A grant valid for a single day holds on that day only."""
    one_day = [s(1, valid_from=TODAY, valid_until=TODAY)]
    check(STAFF, one_day, answer("granted", (1,), TODAY, "self_decided"))
    check(STAFF, one_day, answer("none", (1,), None, "not_yet_valid"), at=AT - timedelta(days=1))
    check(STAFF, one_day, answer("expired", (1,), None, "expired"), at=AT + timedelta(days=1))


# --- properties ---------------------------------------------------------------------------------

BASE = datetime(2023, 1, 1, tzinfo=UTC)
GUARDIAN_POOL = (1, 2, 3)
Scenario = tuple[PersonFacts, datetime, list[Record]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A person, a moment and records around it: coarse times (so ties happen), mixed deciders.

    Birth dates put the 16th birthday within about two years of the moment, and most records are
    on the channel asked about, by current guardians, so that every branch is reached often.
    """
    at = BASE + timedelta(days=draw(st.integers(0, 1000)), hours=draw(st.sampled_from((0, 6, 12))))
    who = PersonFacts(
        role=draw(st.sampled_from(("pupil", "pupil", "pupil", "staff"))),
        birth_date=at.date() - timedelta(days=16 * 365 + draw(st.integers(-800, 800))),
        status=draw(st.sampled_from(("active",) * 7 + ("left",))),
        left_on=draw(st.none() | st.just(at.date() + timedelta(days=draw(st.integers(-30, 30))))),
        guardian_ids=frozenset(draw(st.sampled_from(((1,), (1, 2), (1, 2), (2, 3), (1, 2, 3), ())))),
    )
    count = draw(st.integers(0, 8))
    records = []
    for id_ in draw(st.lists(st.integers(1, 50), min_size=count, max_size=count, unique=True)):
        kind = draw(st.sampled_from(("guardian", *DECIDER_KINDS)))
        decided_at = at - timedelta(days=draw(st.integers(-3, 500)), hours=draw(st.sampled_from((0, 6, 12))))
        valid_from = decided_at.date() + timedelta(days=draw(st.integers(-30, 10)))
        length = draw(st.none() | st.integers(0, 600))
        records.append(Record(
            id=id_,
            channel=draw(st.sampled_from(("website",) * 3 + ("facebook",))),
            decision=draw(st.sampled_from(DECISIONS)),
            decider_kind=kind,
            guardian_id=draw(st.sampled_from((*GUARDIAN_POOL, 4))) if kind == "guardian" else None,
            decided_at=decided_at,
            valid_from=valid_from,
            valid_until=None if length is None else valid_from + timedelta(days=length),
        ))
    return who, at, records


policies = st.builds(Policy, all_guardians_must_grant=st.booleans())
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)


def _consent(who: PersonFacts, at: datetime, records: list[Record], policy: Policy) -> Effective:
    """effective_consent for the website channel."""
    return effective_consent(person=who, channel="website", at=at, records=records, policy=policy)


@PROPERTY_SETTINGS
@given(scenario=scenarios(), policy=policies, data=st.data())
def test_order_of_records_never_matters(
    scenario: Scenario, policy: Policy, data: st.DataObject
) -> None:
    """The answer depends on the records, not on the order they are given in."""
    who, at, records = scenario
    shuffled = data.draw(st.permutations(records))
    assert _consent(who, at, records, policy) == _consent(who, at, shuffled, policy)


@PROPERTY_SETTINGS
@given(scenario=scenarios(), policy=policies, data=st.data())
def test_a_latest_refusal_or_withdrawal_never_grants(
    scenario: Scenario, policy: Policy, data: st.DataObject
) -> None:
    """A refusal or withdrawal by whoever may decide, as the latest record, always turns consent off."""
    who, at, records = scenario
    before = _consent(who, at, records, policy)
    earlier = [r.decided_at for r in records if r.decided_at <= at]
    floor = max(earlier, default=at - timedelta(days=30))
    decided_at = floor + (at - floor) * data.draw(st.sampled_from((0, 0.5, 1)))
    kind = decider_kind_at(person=who, on=decided_at.astimezone(at.tzinfo).date())
    if kind == "guardian" and not who.guardian_ids:
        assert before.state != "granted"
        return
    negative = Record(
        id=max((r.id for r in records), default=0) + 1,
        channel="website",
        decision=data.draw(st.sampled_from(("refused", "withdrawn"))),
        decider_kind=kind,
        guardian_id=data.draw(st.sampled_from(sorted(who.guardian_ids))) if kind == "guardian" else None,
        decided_at=decided_at,
        valid_from=data.draw(st.dates(date(2022, 1, 1), date(2027, 1, 1))),
        valid_until=None,
    )
    after = _consent(who, at, [*records, negative], policy)
    assert after.state != "granted"
    if after.reason != "person_left":
        assert after.state == negative.decision and negative.id in after.record_ids


@PROPERTY_SETTINGS
@given(scenario=scenarios(), policy=policies)
def test_answers_are_backed_by_the_records(
    scenario: Scenario, policy: Policy
) -> None:
    """A grant is backed by granting records valid today; ids are sorted, unique and real."""
    who, at, records = scenario
    result = _consent(who, at, records, policy)
    by_id = {r.id: r for r in records}
    assert result.state in STATES
    assert list(result.record_ids) == sorted(set(result.record_ids))
    assert all(i in by_id and by_id[i].channel == "website" and by_id[i].decided_at <= at
               for i in result.record_ids)
    if result.state == "granted":
        assert result.record_ids
        day = at.date()
        for i in result.record_ids:
            grant = by_id[i]
            assert grant.decision == "granted"
            assert grant.valid_from <= day and (grant.valid_until is None or day <= grant.valid_until)
        assert result.valid_until is None or result.valid_until >= day
    else:
        assert result.valid_until is None
    if result.state in ("refused", "withdrawn"):
        assert any(by_id[i].decision == result.state for i in result.record_ids)
    if result.state == "expired":
        assert all(by_id[i].valid_until is not None and by_id[i].valid_until < at.date()
                   for i in result.record_ids)


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_all_guardians_policy_is_never_more_permissive(
    scenario: Scenario
) -> None:
    """Whatever "all guardians must grant" allows, "one grant suffices" allows too."""
    who, at, records = scenario
    if _consent(who, at, records, ALL).state == "granted":
        assert _consent(who, at, records, Policy()).state == "granted"
