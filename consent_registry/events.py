"""Domain events: announced inside the caller's transaction, acted on at once, in a fixed order.

One event exists so far, `ConsentMayHaveEnded`: something that decides a person's effective
consent changed (a decision was recorded; a guardian was removed, added or replaced; the birth
date, role, status or leaving date changed). The register and the consent service announce it; the
packages that must act when a consent ends subscribe to it in their own modules:

  order 10  biometrics          deletes reference encodings the person may no longer keep
  order 20  publishing.takedown  takes down what shows the person on a channel they left

Subscribers run synchronously in the announcer's transaction, lowest order first, so whatever they
change commits or rolls back with the change that caused it, in the same request: nobody waits
for the hourly sweep. Announcing with no subscriber is a wiring error and raises, because an
event nobody hears would read as "nothing ended" (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .people.models import Person


@dataclass(frozen=True, slots=True)
class ConsentMayHaveEnded:
    """The person's consent may have ended for these purposes (None: every purpose) at `at`."""

    person: Person
    at: datetime
    purposes: frozenset[str] | None = None

    def concerns(self, purpose: str) -> bool:
        """Whether this purpose (a channel, or biometric) may be affected."""
        return self.purposes is None or purpose in self.purposes


Subscriber = Callable[[ConsentMayHaveEnded], None]
# name -> (order, subscriber); keyed by name so importing a module twice subscribes it once.
_subscribers: dict[str, tuple[int, Subscriber]] = {}


def subscribe(*, name: str, order: int) -> Callable[[Subscriber], Subscriber]:
    """Decorator: run this function, named and ordered, whenever consent may have ended."""
    def register(function: Subscriber) -> Subscriber:
        """Record the subscriber; a second subscriber with the same order is a wiring error."""
        clash = [other for other, (o, _f) in _subscribers.items() if o == order and other != name]
        if clash:
            raise RuntimeError(f"subscribers {name!r} and {clash[0]!r} share order {order}")
        _subscribers[name] = (order, function)
        return function
    return register


def subscribers() -> list[str]:
    """The subscribers' names, in the order they run."""
    return [name for name, _entry in sorted(_subscribers.items(), key=lambda item: item[1][0])]


def consent_may_have_ended(person: Person, *, at: datetime,
                           purposes: frozenset[str] | None = None) -> None:
    """Announce that the person's consent may have ended; every subscriber acts now, in order."""
    if not _subscribers:
        raise RuntimeError("nobody subscribes to ConsentMayHaveEnded: takedowns would never start")
    event = ConsentMayHaveEnded(person=person, at=at, purposes=purposes)
    for _order, function in sorted(_subscribers.values(), key=lambda entry: entry[0]):
        function(event)
