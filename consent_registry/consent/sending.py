"""Background jobs that send consent e-mails: requests, confirmations, reminders, turning 16.

Sending is safe to repeat: every recipient is claimed in the database before its message goes
out, so two workers never send the same request to the same decider, and a worker that is lost
leaves at most one message in doubt, which is reported rather than sent again.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from ..audit import SYSTEM, record
from ..db import db, utcnow
from ..jobs import crontab, enqueue, enqueue_in, periodic_task, task
from ..mail import Mail, MailError, PermanentMailError, TransientMailError, get_mailer
from ..people.age import AGE_OF_SELF_DECISION, age_on
from ..people.models import Guardian, Person
from .links import DeciderRef
from .mails import confirmation_mail, request_mail, turning_sixteen_mail
from .models import ConsentRecipient, Notice
from .service import effective_all, is_decider

# A claim older than this belongs to a worker that died while sending.
STALE_CLAIM = timedelta(minutes=15)
MAX_BACKOFF = timedelta(hours=1)


def backoff(attempts: int) -> timedelta:
    """How long to wait before trying a recipient again: 30 s, doubling, at most an hour."""
    return min(timedelta(seconds=30 * 2 ** max(0, attempts - 1)), MAX_BACKOFF)


def _claim_next(request_id: int, now: datetime) -> ConsentRecipient | None:
    """Atomically take one due recipient of a request for sending, or None when none is left."""
    while True:
        candidate = db.session.execute(
            sa.select(ConsentRecipient.id).where(
                ConsentRecipient.request_id == request_id,
                ConsentRecipient.delivery == "pending",
                sa.or_(ConsentRecipient.next_attempt_at.is_(None),
                       ConsentRecipient.next_attempt_at <= now),
            ).order_by(ConsentRecipient.id).limit(1)
        ).scalar_one_or_none()
        if candidate is None:
            db.session.commit()  # end the read: on SQLite even a read holds the write lock
            return None
        claimed = db.session.execute(
            sa.update(ConsentRecipient)
            .where(ConsentRecipient.id == candidate, ConsentRecipient.delivery == "pending")
            .values(delivery="sending", claimed_at=now)
        ).rowcount
        db.session.commit()
        if claimed:
            return db.session.get(ConsentRecipient, candidate)


def _pace(started: float) -> None:
    """Keep to the configured number of messages per second."""
    rate = current_app.config["MAIL_RATE_PER_SECOND"]
    if rate > 0:
        time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - started)))


def _give_back(recipient: ConsentRecipient, error: MailError, now: datetime) -> timedelta:
    """A transient failure: the recipient waits for a later attempt; returns how long."""
    recipient.attempts += 1
    wait = backoff(recipient.attempts)
    recipient.delivery = "pending"
    recipient.claimed_at = None
    recipient.next_attempt_at = now + wait
    recipient.last_error = str(error)[:300]
    record("consent_mail:deferred", actor=SYSTEM, subject_type="consent_request",
           subject_id=recipient.request_id,
           details={"recipient_id": recipient.id, "attempts": recipient.attempts})
    db.session.commit()
    return wait


def _still_asked(recipient: ConsentRecipient) -> bool:
    """Whether the person is still active and the recipient still decides for them."""
    person = recipient.person
    return person.status == "active" and is_decider(
        person, kind=recipient.decider_kind, guardian_id=recipient.guardian_id, on=utcnow().date())


@task()
def send_request_mails(request_id: int) -> None:
    """Send a request's pending messages over one connection; reschedule itself on trouble."""
    retry_in: timedelta | None = None
    try:
        with get_mailer().session() as session:
            while (recipient := _claim_next(request_id, utcnow())) is not None:
                if not _still_asked(recipient):
                    # Left, or turned 16, since the request was made: the link would be dead.
                    recipient.delivery = "skipped"
                    recipient.last_error = "no longer asked: the person left or the decider changed"
                    db.session.commit()
                    continue
                started = time.monotonic()
                try:
                    message_id = session.send(request_mail(recipient))
                except TransientMailError as exc:
                    wait = _give_back(recipient, exc, utcnow())
                    if exc.smtp_code is not None:
                        # The server answered "later" for this one: go on with the rest.
                        retry_in = min(retry_in or wait, wait)
                        continue
                    # The connection itself failed: stop, and come back when the server may be up.
                    enqueue_in(wait.total_seconds(), send_request_mails, request_id)
                    return
                except PermanentMailError as exc:
                    recipient.delivery, recipient.last_error = "failed", str(exc)[:300]
                    record("consent_mail:failed", actor=SYSTEM, subject_type="consent_request",
                           subject_id=request_id, details={"recipient_id": recipient.id})
                else:
                    recipient.delivery, recipient.sent_at = "sent", utcnow()
                    recipient.message_id = message_id
                    record("consent_mail:sent", actor=SYSTEM, subject_type="consent_request",
                           subject_id=request_id, details={"recipient_id": recipient.id,
                                                           "person_id": recipient.person_id})
                db.session.commit()
                _pace(started)
    except TransientMailError:
        # The server could not be reached at all: nothing was claimed; try again later.
        db.session.rollback()
        enqueue_in(backoff(1).total_seconds(), send_request_mails, request_id)
        return
    if retry_in is not None:
        enqueue_in(retry_in.total_seconds(), send_request_mails, request_id)


def send_one(mail: Mail) -> None:
    """Send a single message now (confirmations, manage links)."""
    with get_mailer().session() as session:
        session.send(mail)


# Single messages are retried every 5 minutes for a day, so an SMTP outage loses none of them.
SINGLE_MAIL_RETRIES = {"retries": 288, "retry_delay": 300}


@task(**SINGLE_MAIL_RETRIES)
def send_confirmation(decider: str, person_id: int, decisions: dict[str, str]) -> None:
    """Confirm decisions by e-mail, with the withdraw and manage links; retried while SMTP is down."""
    ref = DeciderRef.decode(decider)
    person = db.session.get(Person, person_id)
    owner = db.session.get(Guardian if ref.kind == "guardian" else Person, ref.id)
    if person is None or owner is None or not owner.email:
        return
    send_one(confirmation_mail(to=owner.email, language=owner.language, ref=ref, person=person,
                               decisions=decisions))
    record("consent_mail:confirmation", actor=SYSTEM, subject_type="person", subject_id=person_id,
           details={"decider": decider, "channels": sorted(decisions)})
    db.session.commit()


@task(**SINGLE_MAIL_RETRIES)
def send_mail(mail_fields: dict[str, object], action: str, subject_type: str, subject_id: int) -> None:
    """Send a prepared message and audit it; retried while SMTP is down."""
    send_one(Mail(**mail_fields))  # type: ignore[arg-type]
    record(action, actor=SYSTEM, subject_type=subject_type, subject_id=subject_id)
    db.session.commit()


def reminders_due(now: datetime) -> list[ConsentRecipient]:
    """Recipients who got a request, have not answered, and are due a reminder while the link works."""
    cfg = current_app.config
    every, link_life = timedelta(days=cfg["REMINDER_AFTER_DAYS"]), timedelta(days=cfg["CONSENT_LINK_DAYS"])
    rows = db.session.execute(sa.select(ConsentRecipient).where(
        ConsentRecipient.delivery == "sent", ConsentRecipient.answered_at.is_(None),
        ConsentRecipient.reminders_sent < cfg["MAX_REMINDERS"],
    )).scalars()
    return [
        r for r in rows
        if r.sent_at and now - (r.last_reminded_at or r.sent_at) >= every
        and now < r.sent_at + link_life
        and r.person.status == "active"
        and is_decider(r.person, kind=r.decider_kind, guardian_id=r.guardian_id, on=now.date())
    ]


def send_reminders(now: datetime | None = None) -> int:
    """Remind non-responders; returns how many reminders went out."""
    moment, sent = now or utcnow(), 0
    due = reminders_due(moment)
    if not due:
        return 0
    with get_mailer().session() as session:
        for recipient in due:
            try:
                session.send(request_mail(recipient, reminder=True))
            except PermanentMailError as exc:
                # This address refuses mail now; the others are still reminded.
                recipient.last_error = str(exc)[:300]
                record("consent_mail:failed", actor=SYSTEM, subject_type="consent_request",
                       subject_id=recipient.request_id,
                       details={"recipient_id": recipient.id, "reminder": True})
                db.session.commit()
                continue
            except TransientMailError:
                # The server is unavailable: whoever was not reminded is still due at the next run.
                db.session.rollback()
                break
            recipient.reminders_sent += 1
            recipient.last_reminded_at = moment
            record("consent_mail:reminder", actor=SYSTEM, subject_type="consent_request",
                   subject_id=recipient.request_id, details={"recipient_id": recipient.id})
            db.session.commit()
            sent += 1
    return sent


def sixteenth_birthday(birth_date: date) -> date:
    """The first day on which someone born then is 16."""
    day = birth_date
    try:
        day = birth_date.replace(year=birth_date.year + AGE_OF_SELF_DECISION)
    except ValueError:  # 29 February in a year without one: 16 on 1 March
        day = date(birth_date.year + AGE_OF_SELF_DECISION, 3, 1)
    return day


def turned_sixteen(today: date, *, within_days: int = 7) -> list[Person]:
    """Active pupils whose 16th birthday was in the last days and who were not told yet."""
    told = sa.select(Notice.person_id).where(Notice.kind == "turned16")
    pupils = db.session.execute(sa.select(Person).where(
        Person.role == "pupil", Person.status == "active", Person.id.not_in(told),
    )).scalars()
    return [p for p in pupils
            if 0 <= (today - sixteenth_birthday(p.birth_date)).days < within_days
            and age_on(p.birth_date, today) >= AGE_OF_SELF_DECISION]


def send_turning_sixteen(today: date | None = None) -> int:
    """Tell pupils who turned 16 that they decide now, with their consents and manage link."""
    day, sent = today or utcnow().date(), 0
    for pupil in turned_sixteen(day):
        db.session.add(Notice(person_id=pupil.id, kind="turned16"))
        if not pupil.email:
            record("notice:turned16_no_address", actor=SYSTEM, subject_type="person",
                   subject_id=pupil.id)
            db.session.commit()
            continue
        states = {c: e.state for c, e in effective_all(pupil).items()}
        db.session.flush()  # the notice row first: a second run must not mail again
        mail = turning_sixteen_mail(pupil, states)
        db.session.commit()
        enqueue(send_mail, mail_fields=queued_mail(mail), action="notice:turned16",
                subject_type="person", subject_id=pupil.id)
        sent += 1
    return sent


def queued_mail(mail: Mail) -> dict[str, object]:
    """A message as plain data for the queue."""
    return {"to": mail.to, "subject": mail.subject, "text": mail.text, "html": mail.html,
            "language": mail.language, "headers": dict(mail.headers),
            "sender_name": mail.sender_name}


def sweep(now: datetime | None = None) -> None:
    """Release claims of dead workers (as failed: never sent twice) and restart due requests."""
    moment = now or utcnow()
    stale = db.session.execute(sa.select(ConsentRecipient).where(
        ConsentRecipient.delivery == "sending", ConsentRecipient.claimed_at < moment - STALE_CLAIM,
    )).scalars().all()
    for recipient in stale:
        recipient.delivery = "failed"
        recipient.last_error = "interrupted while sending; not sent again to avoid a duplicate"
        record("consent_mail:interrupted", actor=SYSTEM, subject_type="consent_request",
               subject_id=recipient.request_id, details={"recipient_id": recipient.id})
    db.session.commit()
    due = db.session.execute(sa.select(ConsentRecipient.request_id).where(
        ConsentRecipient.delivery == "pending",
        sa.or_(ConsentRecipient.next_attempt_at.is_(None), ConsentRecipient.next_attempt_at <= moment),
    ).distinct()).scalars().all()
    for request_id in due:
        enqueue(send_request_mails, request_id)


@periodic_task(crontab(minute="*"))
def sweep_every_minute() -> None:
    """Keep sending going after crashes and outages."""
    sweep()


@periodic_task(crontab(hour="8", minute="0", tz="Europe/Amsterdam"))
def daily_consent_mail() -> None:
    """Reminders and turning-16 messages, once a day."""
    send_reminders()
    send_turning_sixteen()
