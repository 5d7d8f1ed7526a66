"""The rule for throttling failed logins: pure, so it is tested without a database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """How many failures within a window lock a key out, and for how long."""

    max_failures: int
    window: timedelta
    lockout: timedelta


def locked_until(
    attempts: Iterable[tuple[datetime, bool]],
    *,
    now: datetime,
    policy: ThrottlePolicy,
    success_resets: bool,
) -> datetime | None:
    """The moment a key may try again, or None when it may try now.

    `attempts` are (moment, succeeded) pairs. For an account a success wipes earlier failures;
    for an address it does not, or an attacker could reset the count with an account of their own.
    """
    failures: list[datetime] = []
    for at, succeeded in sorted(attempts):
        if succeeded:
            if success_resets:
                failures.clear()
        else:
            failures.append(at)
    recent = [at for at in failures if now - policy.window < at <= now]
    if len(recent) < policy.max_failures:
        return None
    until = recent[-1] + policy.lockout
    return until if until > now else None
