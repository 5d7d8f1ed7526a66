"""Age on a given date: the rule that says who decides about consent."""

from __future__ import annotations

from datetime import date

AGE_OF_SELF_DECISION = 16


def age_on(birth_date: date, on: date) -> int:
    """Whole years a person born on `birth_date` has completed on `on`.

    Someone born on 29 February becomes a year older on 1 March in years without one: the
    conservative choice, since a guardian keeps deciding until the birthday has surely passed.
    """
    if on < birth_date:
        raise ValueError("date is before the birth date")
    had_birthday = (on.month, on.day) >= (birth_date.month, birth_date.day)
    return on.year - birth_date.year - (0 if had_birthday else 1)


def decides_for_self(birth_date: date, on: date) -> bool:
    """Whether a pupil decides about their own consent on that date (16 or older)."""
    return age_on(birth_date, on) >= AGE_OF_SELF_DECISION
