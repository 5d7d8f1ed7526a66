"""Who a consent request cannot reach by e-mail, and why.

A pupil of 16 who decides but has no address in the register, a pupil under 16 without a
guardian, a staff member without an address, or an address the mail server refused: each would
silently stay "no answer" (which means no). Staff see them, with the reason, before sending and on
the request's page, and print a paper form for each (consent/forms.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from flask_babel import lazy_gettext

from ..db import utcnow
from ..people.models import Person
from .models import ConsentRecipient
from .service import deciders_of, is_decider

REASONS = {
    "no_guardian": lazy_gettext("No guardian in the register: nobody can answer for this pupil."),
    "no_guardian_address": lazy_gettext("The guardian has no e-mail address in the register."),
    "no_pupil_address": lazy_gettext("The pupil decides (16 or older) but has no e-mail address "
                                     "in the register."),
    "no_staff_address": lazy_gettext("The staff member has no e-mail address in the register."),
    "delivery_failed": lazy_gettext("The e-mail could not be delivered."),
}
# Reasons for which the answer page works (someone who may decide is known): a printed form can
# carry the link. Without a guardian in the register, only a paper answer entered by staff after
# the guardian is added can count.
LINKABLE = frozenset({"no_guardian_address", "no_pupil_address", "no_staff_address",
                      "delivery_failed"})


@dataclass(frozen=True, slots=True)
class Unreachable:
    """One decider a request cannot reach by e-mail: about whom, who decides, and why."""

    person_id: int
    person_name: str
    group: str | None
    decider_kind: str  # "guardian", "pupil" or "self"
    decider_name: str | None  # a guardian's name (or address); None for the person themselves
    reason: str  # a key of REASONS
    recipient_id: int | None = None  # None before the request exists

    @property
    def reason_text(self) -> str:
        """The reason in the page's language."""
        return str(REASONS[self.reason])


def reason_for(*, decider_kind: str, has_guardian: bool, email: str | None,
               delivery: str | None = None) -> str | None:
    """Why a decider cannot be reached by e-mail, or None when an e-mail can reach them."""
    if delivery == "failed":
        return "delivery_failed"
    if email:
        return None
    if decider_kind == "guardian":
        return "no_guardian_address" if has_guardian else "no_guardian"
    return "no_pupil_address" if decider_kind == "pupil" else "no_staff_address"


def _sorted(rows: Iterable[Unreachable]) -> list[Unreachable]:
    """By class, then name, as a mentor goes through a list."""
    return sorted(rows, key=lambda u: (u.group or "", u.person_name.casefold(), u.person_id))


def still_asked(row: ConsentRecipient, *, on: date) -> bool:
    """Whether the recipient still has something to answer: unanswered, and still the decider."""
    if row.answered_at is not None or row.person.status != "active":
        return False
    if row.decider_kind == "guardian" and row.guardian_id is None:  # no guardian when asked
        return not row.person.guardian_links  # once a guardian is added, a new request asks them
    # A guardian of a pupil who has since turned 16 no longer decides: their link shows that.
    return is_decider(row.person, kind=row.decider_kind, guardian_id=row.guardian_id, on=on)


def unreachable_recipients(recipients: Iterable[ConsentRecipient], *,
                           on: date | None = None) -> list[Unreachable]:
    """The recipients of a request who cannot be reached by e-mail and still have to answer."""
    day = on or utcnow().date()
    found = []
    for row in recipients:
        reason = reason_for(decider_kind=row.decider_kind, has_guardian=row.guardian_id is not None,
                            email=row.email, delivery=row.delivery)
        if reason is None or not still_asked(row, on=day):
            continue
        found.append(Unreachable(
            person_id=row.person_id, person_name=row.person.full_name, group=row.person.group,
            decider_kind=row.decider_kind,
            decider_name=row.guardian.display_name if row.guardian else None,
            reason=reason, recipient_id=row.id,
        ))
    return _sorted(found)


def unreachable_deciders(people: Iterable[Person], *, on: date) -> list[Unreachable]:
    """Before a request exists: the deciders of these active people no e-mail would reach."""
    found = []
    for person in people:
        if person.status != "active":
            continue
        deciders = deciders_of(person, on)
        if not deciders:
            found.append(Unreachable(person.id, person.full_name, person.group, "guardian", None,
                                     "no_guardian"))
        for decider in deciders:
            reason = reason_for(decider_kind=decider.kind, has_guardian=decider.guardian is not None,
                                email=decider.email)
            if reason is not None:
                found.append(Unreachable(
                    person.id, person.full_name, person.group, decider.kind,
                    decider.guardian.display_name if decider.guardian else None, reason))
    return _sorted(found)
