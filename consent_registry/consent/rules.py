"""Effective consent: which records count, who decides, and how long a grant holds. Pure: no I/O."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from consent_registry.people.age import AGE_OF_SELF_DECISION, decides_for_self

DECISIONS = ("granted", "refused", "withdrawn")
STATES = ("granted", "refused", "withdrawn", "expired", "none")
DECIDER_KINDS = ("guardian", "pupil", "self")
ROLES = ("pupil", "staff")
PERSON_STATUSES = ("active", "left")

SCHOOL_YEAR_END = (7, 31)
_MONTHS_RULE = re.compile(r"months:([1-9][0-9]*)")


@dataclass(frozen=True, slots=True)
class Record:
    """One append-only consent record, reduced to what the rule needs."""

    id: int
    channel: str
    decision: str
    decider_kind: str
    guardian_id: int | None
    decided_at: datetime
    valid_from: date
    valid_until: date | None

    def __post_init__(self) -> None:
        """Reject records the rule could only misread."""
        if self.decision not in DECISIONS:
            raise ValueError(f"unknown decision {self.decision!r}")
        if self.decider_kind not in DECIDER_KINDS:
            raise ValueError(f"unknown decider kind {self.decider_kind!r}")
        if (self.guardian_id is not None) != (self.decider_kind == "guardian"):
            raise ValueError("guardian_id is set exactly when a guardian decided")
        if self.decided_at.utcoffset() is None:
            raise ValueError("decided_at must be timezone-aware")
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")


@dataclass(frozen=True, slots=True)
class PersonFacts:
    """What the rule needs to know about the person the consent is about."""

    role: str
    birth_date: date
    status: str
    left_on: date | None
    guardian_ids: frozenset[int]

    def __post_init__(self) -> None:
        """Reject roles and statuses the rule does not know."""
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")
        if self.status not in PERSON_STATUSES:
            raise ValueError(f"unknown status {self.status!r}")


@dataclass(frozen=True, slots=True)
class Policy:
    """School-wide choices the domain leaves configurable."""

    all_guardians_must_grant: bool = False


@dataclass(frozen=True, slots=True)
class Effective:
    """The answer for one person, channel and moment, with the records that decided it."""

    state: str
    record_ids: tuple[int, ...]
    valid_until: date | None
    reason: str

    def __post_init__(self) -> None:
        """Reject states outside STATES."""
        if self.state not in STATES:
            raise ValueError(f"unknown state {self.state!r}")


def decider_kind_at(*, person: PersonFacts, on: date) -> str:
    """Who decides for this person on that date: "guardian" under 16, "pupil" from 16, "self" for staff."""
    if person.role == "staff":
        return "self"
    return "pupil" if decides_for_self(person.birth_date, on) else "guardian"


def default_valid_until(*, decided_on: date, rule: str) -> date | None:
    """The last day a grant decided on `decided_on` holds under a validity rule; None means indefinite."""
    if rule == "school-year":
        end = date(decided_on.year, *SCHOOL_YEAR_END)
        return end if decided_on <= end else date(decided_on.year + 1, *SCHOOL_YEAR_END)
    if rule == "indefinite":
        return None
    match = _MONTHS_RULE.fullmatch(rule)
    if match is None:
        raise ValueError(f"unknown validity rule {rule!r}")
    return _add_months(decided_on, int(match.group(1)))


def effective_consent(
    *,
    person: PersonFacts,
    channel: str,
    at: datetime,
    records: Iterable[Record],
    policy: Policy = Policy(),
) -> Effective:
    """A person's effective consent for a channel at a moment; anything unproven answers "no"."""
    if at.utcoffset() is None:
        raise ValueError("at must be timezone-aware")
    day = at.date()
    if _has_left(person, day):
        return Effective("none", (), None, "person_left")
    relevant = sorted((r for r in records if r.channel == channel and r.decided_at <= at), key=_order)
    return _until_leaving(person, _decide(person=person, at=at, records=relevant, policy=policy))


def _decide(*, person: PersonFacts, at: datetime, records: Sequence[Record], policy: Policy) -> Effective:
    """The answer from the records that count, `records` being ordered oldest first."""
    day = at.date()
    kind = decider_kind_at(person=person, on=day)
    if kind == "self":
        own = [r for r in records if r.decider_kind == "self"]
        return _single(own[-1] if own else None, day=day, reason="self_decided")
    guardians = [r for r in records if r.decider_kind == "guardian" and r.guardian_id in person.guardian_ids]
    if kind == "guardian":
        return _guardians(guardians, current=person.guardian_ids, day=day, policy=policy)
    turned = _self_decision_date(person.birth_date)
    # Symmetric cut at the birthday: a pupil under 16 cannot consent, a guardian of a 16-year-old
    # no longer decides. Days are counted in the time zone of `at`, the only one the caller gave.
    own = [r for r in records if r.decider_kind == "pupil" and _local_day(r.decided_at, at) >= turned]
    if own:
        return _single(own[-1], day=day, reason="pupil_decided")
    earlier = [r for r in guardians if _local_day(r.decided_at, at) < turned]
    answer = _guardians(earlier, current=person.guardian_ids, day=day, policy=policy)
    # From 16 the missing answer is the pupil's own, whether or not guardians are registered.
    return replace(answer, reason="no_answer") if answer.reason == "no_guardians" else answer


def _single(latest: Record | None, *, day: date, reason: str) -> Effective:
    """The answer when one decider's latest record decides alone."""
    if latest is None:
        return Effective("none", (), None, "no_answer")
    standing = _standing(latest, day)
    ids = (latest.id,)
    if standing == "granted":
        return Effective("granted", ids, latest.valid_until, reason)
    if standing == "expired":
        return Effective("expired", ids, None, "expired")
    if standing == "pending":
        return Effective("none", ids, None, "not_yet_valid")
    return Effective(standing, ids, None, reason)


def _guardians(
    records: Sequence[Record], *, current: frozenset[int], day: date, policy: Policy
) -> Effective:
    """The answer from current guardians' records, each guardian's latest one counting."""
    if not current:
        return Effective("none", (), None, "no_guardians")
    latest: dict[int, Record] = {}
    for record in records:
        if record.guardian_id is not None:
            latest[record.guardian_id] = record
    by_standing: dict[str, list[Record]] = {}
    for record in latest.values():
        by_standing.setdefault(_standing(record, day), []).append(record)
    negatives = by_standing.get("refused", []) + by_standing.get("withdrawn", [])
    valid = by_standing.get("granted", [])
    expired = by_standing.get("expired", [])
    pending = by_standing.get("pending", [])
    if negatives:
        state = max(negatives, key=_order).decision
        reason = "guardian_refused" if state == "refused" else "guardian_withdrew"
        return Effective(state, _ids(negatives), None, reason)
    if policy.all_guardians_must_grant:
        if len(valid) == len(current):
            earliest = min((r.valid_until for r in valid if r.valid_until is not None), default=None)
            return Effective("granted", _ids(valid), earliest, "guardian_granted")
        if expired:
            return Effective("expired", _ids(expired), None, "expired")
        if valid:
            return Effective("none", _ids(valid), None, "all_guardians_required")
    else:
        if valid:
            ends = [r.valid_until for r in valid]
            until = None if None in ends else max(e for e in ends if e is not None)
            return Effective("granted", _ids(valid), until, "guardian_granted")
        if expired:
            return Effective("expired", _ids(expired), None, "expired")
    if pending:
        return Effective("none", _ids(pending), None, "not_yet_valid")
    return Effective("none", (), None, "no_answer")


def _standing(record: Record, day: date) -> str:
    """What one record says on a day: its decision, or for a grant "granted", "expired" or "pending"."""
    if record.decision != "granted":
        # Refusals and withdrawals take effect when decided and never lapse: failing closed.
        return record.decision
    if day < record.valid_from:
        return "pending"
    if record.valid_until is not None and day > record.valid_until:
        return "expired"
    return "granted"


def _has_left(person: PersonFacts, day: date) -> bool:
    """Whether the person has left the school on that day; a leaver without a date has left."""
    return person.status == "left" and (person.left_on is None or person.left_on <= day)


def _until_leaving(person: PersonFacts, answer: Effective) -> Effective:
    """A grant holds at most until the day before a known leaving date."""
    if answer.state != "granted" or person.status != "left" or person.left_on is None:
        return answer
    last = person.left_on - timedelta(days=1)
    until = last if answer.valid_until is None else min(answer.valid_until, last)
    return replace(answer, valid_until=until)


def _self_decision_date(birth_date: date) -> date:
    """The first date on which the person is 16: 1 March for a 29 February birthday in common years."""
    year = birth_date.year + AGE_OF_SELF_DECISION
    try:
        return birth_date.replace(year=year)
    except ValueError:
        return date(year, 3, 1)


def _add_months(start: date, months: int) -> date:
    """`start` plus whole calendar months, clamped to the last day of a shorter month."""
    index = start.year * 12 + start.month - 1 + months
    year, month = divmod(index, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(start.day, last_day))


def _local_day(moment: datetime, at: datetime) -> date:
    """The calendar day of `moment` in the time zone of `at`."""
    return moment.astimezone(at.tzinfo).date()


def _order(record: Record) -> tuple[datetime, int]:
    """Sort key: when the record was decided, then its id for records of the same instant."""
    return (record.decided_at, record.id)


def _ids(records: Iterable[Record]) -> tuple[int, ...]:
    """Record ids, ascending."""
    return tuple(sorted(r.id for r in records))
