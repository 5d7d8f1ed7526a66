"""Takedowns: when consent for a channel ends, what shows the person there comes down.

A decision that leaves a person's effective consent for a channel anything but granted (withdrawn,
refused, expired, none, or the person left) puts every live, queued or publishing publication on
that channel showing the person in `takedown_pending`, in the decision's own transaction (this
module subscribes to `events.ConsentMayHaveEnded`, which decisions and changes to the register
announce: guardians, birth date, role, leaving). Facebook
posts are deleted by `takedown_job`, retried with backoff until Facebook confirms (each retry
audited); exports stay pending as a task for the communications officer, who removes the file by
hand and marks it done. Consents that lapse with time are found by an hourly task.
"""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa

from ..audit import SYSTEM, Actor, record
from ..consent.rules import Effective
from ..consent.service import channels, effective_for
from ..db import db, utcnow
from ..events import ConsentMayHaveEnded, subscribe
from ..jobs import crontab, enqueue, enqueue_in, periodic_task, task
from ..people.models import Person
from ..translate import _
from . import jobs as publishing_jobs
from .jobs import backoff, enqueue_after_commit, error_kind, error_text
from .models import Publication, PublicationPerson

log = logging.getLogger(__name__)

TAKEDOWN_REASONS = ("withdrawn", "refused", "expired", "no_consent", "person_left", "by_staff", "erased")
# What a takedown reaches: on the channel, or on its way there.
TAKE_DOWN_STATES = ("live", "queued", "publishing")


class TakedownError(ValueError):
    """A takedown that cannot be asked for or confirmed in the publication's state."""

    def __init__(self, code: str, message: str) -> None:
        """Keep the code for programs and the message for people."""
        super().__init__(message)
        self.code = code
        self.message = message


def takedown_reason(effective: Effective) -> str | None:
    """Why an effective consent requires a takedown, or None when it is granted."""
    if effective.reason == "person_left":
        return "person_left"
    if effective.state == "granted":
        return None
    return "no_consent" if effective.state == "none" else effective.state


def request_takedown(publication: Publication, *, reason: str, actor: Actor,
                     at: datetime | None = None, person_id: int | None = None) -> bool:
    """Put a publication in takedown (audited, in the caller's transaction); False if nothing to do.

    Facebook posts get a takedown job once the transaction commits. An export not yet delivered is
    simply cancelled; a live export stays pending until staff confirm they removed it.
    """
    if publication.state not in TAKE_DOWN_STATES:
        return False
    moment = at or utcnow()
    previous = publication.state
    publication.takedown_reason = reason
    publication.takedown_requested_at = moment
    details = {"reason": reason, "channel": publication.channel, "previous_state": previous,
               "person_id": person_id}
    if publication.connector == "export" and previous != "live":
        publication.state, publication.taken_down_at = "taken_down", moment
        record("publication:taken_down", actor=actor, subject_type="publication",
               subject_id=publication.id, details={**details, "cancelled": True})
        return True
    publication.state = "takedown_pending"
    record("publication:takedown_requested", actor=actor, subject_type="publication",
           subject_id=publication.id, details=details)
    if publication.connector == "facebook":
        enqueue_after_commit(takedown_job, publication.id)
    return True


def publications_showing(person_id: int, channel: str) -> list[Publication]:
    """The person's publications on a channel that a takedown reaches, oldest first."""
    return list(db.session.execute(
        sa.select(Publication).join(PublicationPerson)
        .where(PublicationPerson.person_id == person_id, Publication.channel == channel,
               Publication.state.in_(TAKE_DOWN_STATES))
        .order_by(Publication.id)).scalars())


def takedowns_for_consent_change(person: Person, channel: str, at: datetime) -> int:
    """After a decision: take down the person's publications on the channel unless consent holds."""
    if channel not in channels():
        return 0  # biometric consent: not a channel
    reason = takedown_reason(effective_for(person, channel, at))
    if reason is None:
        return 0
    return sum(request_takedown(publication, reason=reason, actor=SYSTEM, at=at, person_id=person.id)
               for publication in publications_showing(person.id, channel))


@subscribe(name="publishing.takedown", order=20)
def takedowns_when_consent_may_have_ended(event: ConsentMayHaveEnded) -> int:
    """Re-evaluate each channel the person is shown on and take down where consent no longer holds."""
    person, at = event.person, event.at
    shown_on = db.session.execute(
        sa.select(Publication.channel).join(PublicationPerson)
        .where(PublicationPerson.person_id == person.id,
               Publication.state.in_(TAKE_DOWN_STATES)).distinct()).scalars().all()
    # Only channels with something up are evaluated: an import touching every pupil stays cheap.
    return sum(takedowns_for_consent_change(person, channel, at)
               for channel in sorted(shown_on) if event.concerns(channel))


def takedowns_for_lapsed(at: datetime) -> int:
    """Request the takedown of publications whose people's consent lapsed with time; how many."""
    publications = db.session.execute(
        sa.select(Publication).where(Publication.state.in_(TAKE_DOWN_STATES))
        .order_by(Publication.id)).scalars().all()
    reasons: dict[tuple[int, str], str | None] = {}
    count = 0
    for publication in publications:
        for shown in publication.people:
            key = (shown.person_id, publication.channel)
            if key not in reasons:
                person = db.session.get(Person, shown.person_id)
                reasons[key] = ("person_left" if person is None else
                                takedown_reason(effective_for(person, publication.channel, at)))
            if reasons[key] is not None:
                count += request_takedown(publication, reason=reasons[key] or "expired",
                                          actor=SYSTEM, at=at, person_id=shown.person_id)
                break
    return count


@periodic_task(crontab(minute="23"))
def takedowns_for_lapsed_hourly() -> None:
    """Take down what shows people whose consent expired (or who left) since the last run."""
    if count := takedowns_for_lapsed(utcnow()):
        log.info("requested %d takedowns for lapsed consents", count)
    db.session.commit()


def takedown_on_request(publication: Publication, *, actor: Actor) -> Publication:
    """Staff ask for a takedown (reason by_staff); refused when nothing is up or it is under way."""
    if publication.state in ("takedown_pending", "taken_down"):
        return publication  # asked before: the same answer
    if not request_takedown(publication, reason="by_staff", actor=actor):
        raise TakedownError("not_live", _("This publication is not on its channel."))
    return publication


def confirm_removed_by_hand(publication: Publication, *, actor: Actor, user_id: int) -> None:
    """Staff confirm they removed an export from its channel: taken down (audited)."""
    if publication.connector != "export" or publication.state != "takedown_pending":
        raise TakedownError("not_pending", _("This publication has no takedown waiting for staff."))
    publication.state = "taken_down"
    publication.taken_down_at = utcnow()
    publication.taken_down_by = user_id
    record("publication:taken_down", actor=actor, subject_type="publication",
           subject_id=publication.id,
           details={"reason": publication.takedown_reason, "by_hand": True})


@task()
def takedown_job(publication_id: int) -> None:
    """Delete a Facebook post (and its uploaded photos); retried with backoff until it succeeds."""
    from .facebook import GraphError

    publication = db.session.get(Publication, publication_id)
    if publication is None or publication.state != "takedown_pending" or publication.connector != "facebook":
        db.session.commit()
        return
    post_id = publication.post_id
    remote = dict(publication.remote or {})
    targets = [*([post_id] if post_id else []),
               *(str(i) for i in remote.get("photo_ids") or () if str(i) != post_id)]
    publication.takedown_attempts += 1
    attempt = publication.takedown_attempts
    db.session.commit()  # no transaction while Facebook answers
    try:
        client = publishing_jobs.graph_client() if targets else None
        for object_id in targets:
            client.delete(object_id)
    except GraphError as exc:
        db.session.rollback()
        kind = error_kind(exc)
        delay = backoff(attempt, exc.retry_after)
        db.session.execute(sa.update(Publication).where(Publication.id == publication_id)
                           .values(last_error=error_text(kind, exc)))
        record("publication:takedown_retry", actor=SYSTEM, subject_type="publication",
               subject_id=publication_id,
               details={"attempt": attempt, "code": exc.code, "kind": kind, "retry_in": delay})
        db.session.commit()
        enqueue_in(delay, takedown_job, publication_id)
        return
    same_post = (Publication.post_id == post_id) if post_id else Publication.post_id.is_(None)
    done = db.session.execute(
        sa.update(Publication)
        .where(Publication.id == publication_id, Publication.state == "takedown_pending", same_post)
        .values(state="taken_down", taken_down_at=utcnow(), last_error=None)).rowcount
    if done:
        record("publication:taken_down", actor=SYSTEM, subject_type="publication",
               subject_id=publication_id,
               details={"post_id": post_id, "deleted": targets, "attempt": attempt})
    db.session.commit()
    if not done:  # a post appeared meanwhile: delete that one too
        enqueue(takedown_job, publication_id)
