"""Verifying the audit chain on demand and every day: alerting admins and the DPO when it breaks,
and mailing its head to the DPO when it holds, so a head is kept where the database's writers
cannot reach it (`flask audit verify --expect HASH:LENGTH` checks it later)."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from flask import current_app, render_template
from flask_babel import force_locale

from ..audit import SYSTEM, Actor, AuditEvent, ChainReport, record, verify
from ..auth.models import User
from ..consent.links import external_url
from ..consent.sending import queued_mail, send_mail
from ..db import db
from ..jobs import crontab, enqueue, periodic_task
from ..mail import Mail
from ..school import school_names
from ..translate import _

ALERTED_ROLES = ("admin", "dpo")
WITNESS_ROLES = ("dpo",)


def run_verification(actor: Actor) -> ChainReport:
    """Verify the chain now and keep the outcome as an `audit:verified` event (the caller commits)."""
    report = verify()
    record("audit:verified", actor=actor, details={
        "ok": report.ok, "checked": report.checked,
        "broken_event_id": report.broken_event_id, "reason": report.reason,
        "head": report.head if report.ok else None,
    })
    return report


def recent_verifications(limit: int = 10) -> list[AuditEvent]:
    """The latest verification runs, newest first (by anyone, or the daily job)."""
    return list(db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.action == "audit:verified")
        .order_by(AuditEvent.id.desc()).limit(limit)
    ).scalars())


def alert_recipients(*, roles: tuple[str, ...] = ALERTED_ROLES) -> list[User]:
    """Active users of these roles (admins and DPOs by default) with an e-mail address."""
    return list(db.session.execute(
        sa.select(User).where(User.role.in_(roles), User.active.is_(True), User.email != "")
        .order_by(User.id)
    ).scalars())


def alert_mail(user: User, report: ChainReport) -> Mail:
    """The alert for one recipient, in the service's default language."""
    return _chain_mail(user, report,
                       subject=lambda: _("The audit log of the consent registry is broken"),
                       template="dpo/audit_alert")


def head_mail(user: User, report: ChainReport) -> Mail:
    """The verified chain head for one DPO to keep, in the service's default language."""
    return _chain_mail(user, report,
                       subject=lambda: _("Audit log of the consent registry: today's chain head"),
                       template="dpo/audit_head")


def _chain_mail(user: User, report: ChainReport, *, subject: Callable[[], str],
                template: str) -> Mail:
    """One mail about the chain to one staff member: text and HTML from `template`.txt/.html.

    The subject is a callable so that it is translated inside the mail's language.
    """
    language = current_app.config["DEFAULT_LOCALE"]
    names = school_names()  # the names the admin chose, as the consent mails use them
    context = {"name": user.name or user.email, "report": report,
               "verify_url": external_url("dpo.audit_verify"),
               "school": names.school_name}
    with force_locale(language):
        return Mail(
            to=user.email,
            sender_name=names.sender_name,
            subject=subject(),
            text=render_template(f"{template}.txt", **context),
            html=render_template(f"{template}.html", **context),
            language=language,
        )


def verify_and_alert() -> ChainReport:
    """Verify, record the outcome and commit; then mail every admin and DPO when the chain is
    broken, or every DPO the verified head when it holds."""
    report = run_verification(SYSTEM)
    if report.ok:
        mails = [(user.id, head_mail(user, report), "audit:head_mailed")
                 for user in alert_recipients(roles=WITNESS_ROLES)]
    else:
        mails = [(user.id, alert_mail(user, report), "audit:alert_mailed")
                 for user in alert_recipients()]
    db.session.commit()
    for user_id, mail, action in mails:
        enqueue(send_mail, queued_mail(mail), action, "user", user_id)
    return report


@periodic_task(crontab(hour="6", minute="15", tz="Europe/Amsterdam"))
def daily_audit_verify() -> None:
    """Once a day: verify the audit chain; alert when it is broken, mail the DPO its head when not."""
    verify_and_alert()
