"""Pure rules: failed-login throttling, age on a date, and password rules."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from consent_registry.auth.passwords import password_problems
from consent_registry.auth.throttle import ThrottlePolicy, locked_until
from consent_registry.people.age import age_on, decides_for_self

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POLICY = ThrottlePolicy(max_failures=3, window=timedelta(minutes=15), lockout=timedelta(minutes=15))


def _ago(minutes: float, ok: bool = False) -> tuple[datetime, bool]:
    """An attempt some minutes before NOW."""
    return NOW - timedelta(minutes=minutes), ok


@pytest.mark.parametrize(("attempts", "resets", "expected"), [
    ([], True, None),
    ([_ago(3), _ago(2)], True, None),
    ([_ago(3), _ago(2), _ago(1)], True, NOW + timedelta(minutes=14)),
    ([_ago(30), _ago(20), _ago(1)], True, None),  # old failures fall out of the window
    ([_ago(3), _ago(2), _ago(1.5, ok=True), _ago(1)], True, None),  # a success resets an account
    ([_ago(3), _ago(2), _ago(1.5, ok=True), _ago(1)], False, NOW + timedelta(minutes=14)),
    ([_ago(16), _ago(15.5), _ago(15.2)], True, None),  # lockout over
    ([_ago(1), _ago(3), _ago(2)], True, NOW + timedelta(minutes=14)),  # order does not matter
])
def test_locked_until(attempts: list, resets: bool, expected: datetime | None) -> None:
    """A key is locked after max failures within the window, until lockout after the last one."""
    assert locked_until(attempts, now=NOW, policy=POLICY, success_resets=resets) == expected


@pytest.mark.parametrize(("born", "on", "age"), [
    (date(2010, 5, 17), date(2026, 5, 16), 15),
    (date(2010, 5, 17), date(2026, 5, 17), 16),
    (date(2010, 5, 17), date(2026, 12, 31), 16),
    (date(2010, 12, 31), date(2026, 1, 1), 15),
    (date(2008, 2, 29), date(2024, 2, 28), 15),
    (date(2008, 2, 29), date(2024, 2, 29), 16),
    (date(2008, 2, 29), date(2025, 2, 28), 16),
    (date(2009, 2, 28), date(2025, 2, 28), 16),
    (date(2010, 2, 28), date(2010, 2, 28), 0),
])
def test_age_on(born: date, on: date, age: int) -> None:
    """Whole years completed on a date, leap days included."""
    assert age_on(born, on) == age


def test_leap_day_birthdays() -> None:
    """Without a 29 February the birthday has passed on 1 March, not 28 February; 16 itself always
    falls in a leap year (until 2100), so the 16th birthday is on 29 February."""
    born = date(2012, 2, 29)
    assert not decides_for_self(born, date(2027, 2, 28))  # 15 in a year without a leap day
    assert not decides_for_self(born, date(2028, 2, 28))
    assert decides_for_self(born, date(2028, 2, 29))
    assert age_on(date(2008, 2, 29), date(2025, 2, 28)) == 16
    assert age_on(date(2009, 2, 28), date(2025, 3, 1)) == 16


def test_age_before_birth_is_an_error() -> None:
    """There is no age before being born."""
    with pytest.raises(ValueError):
        age_on(date(2020, 1, 2), date(2020, 1, 1))


@pytest.mark.parametrize(("password", "problems"), [
    ("short", ["too_short"]),
    ("jan@school.nl", ["like_email"]),
    ("jan", ["too_short", "like_email", "too_simple"]),
    ("aaaaaaaaaaaaaaaa", ["too_simple"]),
    ("jan.de.vries@school.nl", ["like_email"]),
    ("correct horse battery staple", []),
])
def test_password_problems(password: str, problems: list[str]) -> None:
    """Length, likeness to the e-mail address and variety are checked."""
    email = "jan@school.nl" if password != "jan.de.vries@school.nl" else password
    assert password_problems(password, email=email) == problems
