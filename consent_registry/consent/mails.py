"""The e-mails of the consent process, rendered in the recipient's language."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flask import current_app, render_template
from flask_babel import force_locale
from flask_babel import gettext as _

from ..db import utcnow
from ..mail import Mail
from ..people.models import Person
from ..school import school_names
from .links import (
    DeciderRef,
    answer_token,
    external_url,
    manage_token,
    withdraw_token,
)
from .models import ConsentRecipient, ConsentRequest
from .texts import text_for


def _language(language: str | None) -> str:
    """A language we write in; Dutch otherwise."""
    return language if language in ("nl", "en") else "nl"


def _render(template: str, language: str, subject: Callable[[], str], to: str,
            headers: dict[str, str] | None = None, **context: object) -> Mail:
    """Render the subject and the text and HTML bodies of one mail in the language."""
    with force_locale(language):
        names = school_names()
        context = {**context, "school": names.school_name}
        return Mail(
            to=to,
            subject=subject(),
            text=render_template(f"mail/{template}.txt", **context),
            html=render_template(f"mail/{template}.html", **context),
            language=language,
            headers=headers or {},
            sender_name=names.sender_name,
        )


def decider_ref(recipient: ConsentRecipient) -> DeciderRef:
    """Who the recipient is, for manage and withdraw links."""
    if recipient.guardian_id is not None:
        return DeciderRef("guardian", recipient.guardian_id)
    return DeciderRef("person", recipient.person_id)


def _channel_titles(channels: list[str], language: str) -> list[str]:
    """The titles of the channels asked about."""
    return [text_for(channel, language)[0] for channel in channels]


def request_mail(recipient: ConsentRecipient, *, reminder: bool = False,
                 preview: bool = False) -> Mail:
    """The personal request (or a reminder of it) with the answer link.

    A preview for staff carries dead example links: a real token would let them answer for a parent.
    """
    request: ConsentRequest = recipient.request
    person: Person = recipient.person
    language = _language(recipient.language)
    # The link is signed when the mail is written, so it lasts that long from now.
    expires = utcnow().date() + timedelta(days=current_app.config["CONSENT_LINK_DAYS"])
    def subject() -> str:
        """The subject in the mail's language."""
        if reminder:
            return _("Reminder: consent requested for %(name)s", name=person.given_name)
        return _("Consent requested for %(name)s", name=person.given_name)

    return _render(
        "request", language, subject, recipient.email or "",
        headers={"X-Consent-Request": str(request.id)},
        name=person.given_name, full_name=person.full_name, reminder=reminder,
        for_self=recipient.decider_kind != "guardian", note=request.note or "",
        channels=_channel_titles(request.channels, language),
        answer_url=external_url("consent_public.answer",
                                token="preview" if preview else answer_token(recipient.id)),
        manage_url=external_url("consent_public.manage",
                                token="preview" if preview else manage_token(decider_ref(recipient))),
        expires=expires,
    )


def confirmation_mail(*, to: str, language: str, ref: DeciderRef, person: Person,
                      decisions: dict[str, str]) -> Mail:
    """What was decided, with a withdraw link and the manage link."""
    language = _language(language)
    return _render(
        "confirmation", language,
        lambda: _("Your answer about %(name)s has been recorded", name=person.given_name),
        to, name=person.given_name, full_name=person.full_name,
        decisions=[(text_for(c, language)[0], d) for c, d in decisions.items()],
        withdraw_url=external_url("consent_public.withdraw",
                                  token=withdraw_token(ref, person.id)),
        manage_url=external_url("consent_public.manage", token=manage_token(ref)),
    )


def turning_sixteen_mail(person: Person, states: dict[str, str]) -> Mail:
    """To a pupil who turns 16: from now on you decide yourself."""
    language = _language(person.language)
    return _render(
        "turning16", language,
        lambda: _("From today you decide about your photos, %(name)s", name=person.given_name),
        person.email or "", name=person.given_name,
        states=[(text_for(c, language)[0], s) for c, s in states.items()],
        manage_url=external_url("consent_public.manage",
                                token=manage_token(DeciderRef("person", person.id))),
    )


def manage_link_mail(email: str, ref: DeciderRef, language: str) -> Mail:
    """A fresh manage link, for someone who asked for one on the site."""
    language = _language(language)
    return _render(
        "manage_link", language, lambda: _("Your link to manage consents"), email,
        manage_url=external_url("consent_public.manage", token=manage_token(ref)),
    )
