"""The gate on an item's page: a channel chooser, who is in it and their consent, what blocks,
and one button that asks the deciders of the people still missing for consent by e-mail.

The page shows the gate as if the publisher attests (the attestation is given when publishing);
a refused request is a flash message, never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import flash, redirect, request, url_for
from flask_babel import get_locale, lazy_gettext, ngettext
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from ..audit import Actor
from ..auth.access import allow
from ..consent.models import ConsentRequest
from ..consent.reach import unreachable_deciders
from ..consent.requests import MAX_NOTE, create_request
from ..consent.sending import send_request_mails
from ..consent.service import ConsentError, channels
from ..consent.texts import text_for
from ..db import db, utcnow
from ..jobs import enqueue
from ..media.models import Media
from ..media.views import bp, media_or_404
from ..people.models import Person
from .gate import Blocker, GateDecision, PersonConsent
from .gate_service import gate_for, missing_people, tagged_people

# Who may ask for consent by e-mail: as on the consent pages (consent.views.REQUESTERS).
REQUESTERS = ("admin", "staff", "communications")

REASON_LABELS = {
    "not_analysed": lazy_gettext("The analysis has not finished."),
    "analysis_failed": lazy_gettext("The analysis failed."),
    "unresolved": lazy_gettext("Nobody has said who this is, or that it is not recognisable or "
                               "to be blurred."),
    "suggestion_unconfirmed": lazy_gettext("The suggested person has not been confirmed."),
    "no_consent": lazy_gettext("No consent for this channel."),
    "refused": lazy_gettext("Consent for this channel was refused."),
    "withdrawn": lazy_gettext("Consent for this channel was withdrawn."),
    "expired": lazy_gettext("Consent for this channel has expired."),
    "person_left": lazy_gettext("This person has left the school."),
    "not_attested": lazy_gettext("The publisher has not confirmed that every recognisable person "
                                 "is tagged."),
}


@dataclass(frozen=True, slots=True)
class GateRow:
    """One person in the checklist: who, their consent for the channel, whether it blocks."""

    person: Person
    consent: PersonConsent
    appearance_ids: tuple[int, ...]
    blocks: bool


@dataclass(frozen=True, slots=True)
class GateBlockerRow:
    """One blocker in words, with the panel it concerns (number and anchor) when there is one."""

    blocker: Blocker
    text: str
    number: int | None
    person: Person | None


def channel_titles() -> dict[str, str]:
    """Channel titles in the page's language."""
    language = str(get_locale() or "nl")
    return {c: text_for(c, language)[0] for c in channels()}


def chosen_channel(raw: str | None) -> tuple[str, bool]:
    """The channel asked for, or the first when none or an unknown one is asked; and whether known."""
    known = channels()
    if raw in known:
        return raw, True
    return known[0], not raw


def gate_rows(media: Media, decision: GateDecision) -> tuple[list[GateRow], list[GateBlockerRow]]:
    """The checklist (each tagged person) and the blockers, in words, in the page's order."""
    people = {p.id: p for p in tagged_people(media)}
    numbers = {a.id: n for n, a in enumerate(media.appearances, start=1)}
    blocking = {b.person_id for b in decision.blockers if b.person_id is not None}
    rows = [GateRow(people[c.person_id], c,
                    tuple(a.id for a in media.appearances
                          if a.person_id == c.person_id and a.resolution == "identified"),
                    c.person_id in blocking)
            for c in decision.people if c.person_id in people]
    blockers = [GateBlockerRow(b, str(REASON_LABELS.get(b.reason, b.reason)),
                               numbers.get(b.appearance_id or 0),
                               people.get(b.person_id or 0))
                for b in decision.blockers if b.reason != "not_attested"]
    return rows, blockers


def _latest_request(media: Media, channel: str) -> ConsentRequest | None:
    """The newest consent request made from this item's page for the channel."""
    rows = db.session.execute(
        sa.select(ConsentRequest).where(ConsentRequest.media_id == media.id)
        .order_by(ConsentRequest.id.desc()).limit(20)).scalars()
    return next((r for r in rows if channel in r.channels), None)


def gate_context(media: Media) -> dict[str, Any]:
    """The detail page's gate parts: channels, the chosen one, the checklist and the blockers."""
    channel, known = chosen_channel(request.args.get("channel"))
    decision = gate_for(media, channel, attested=True)
    rows, blockers = gate_rows(media, decision)
    asked = [r.person for r in rows if r.blocks and r.person.status == "active"]
    return {
        "gate_channels": channels(),
        "gate_titles": channel_titles(),
        "gate_channel": channel,
        "gate_channel_unknown": not known,
        "gate_decision": decision,
        "gate_people": rows,
        "gate_blockers": blockers,
        "gate_missing": sum(r.blocks and r.person.status == "active" for r in rows),
        "gate_can_request": current_user.role in REQUESTERS,
        "gate_note_max": MAX_NOTE,
        # Before anyone presses the button: whose deciders no e-mail would reach, and why.
        "gate_unreachable": unreachable_deciders(asked, on=utcnow().date()),
        "gate_last_request": _latest_request(media, channel) if asked else None,
    }


def _back(media: Media, channel: str | None) -> Response:
    """Back to the item's page, at the gate, for the channel."""
    return redirect(url_for("media.detail", media_id=media.id, channel=channel, _anchor="gate"))


@bp.post("/<int:media_id>/gate/request")
@allow(*REQUESTERS)
def request_missing_consent(media_id: int) -> Response:
    """Ask the deciders of everyone tagged whose consent for the channel is missing, by e-mail."""
    media = media_or_404(media_id)
    channel = request.form.get("channel", "")
    if channel not in channels():
        flash(_("Choose a channel."), "error")
        return _back(media, None)
    people = [p for p in missing_people(media, channel) if p.status == "active"]
    if not people:
        flash(_("Nobody in this item who can still be asked is missing consent for this channel."),
              "info")
        return _back(media, channel)
    note = request.form.get("note", "").strip()[:MAX_NOTE] or None
    try:
        request_ = create_request(people=people, channels=[channel], note=note,
                                  actor=Actor("user", current_user.id), created_by=current_user.id,
                                  media_id=media.id)
    except ConsentError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return _back(media, channel)
    mailed = sum(r.delivery == "pending" for r in request_.recipients)
    unreachable = len(request_.recipients) - mailed
    request_id = request_.id
    db.session.commit()
    enqueue(send_request_mails, request_id)
    message = ngettext("Consent asked for %(num)d person: ", "Consent asked for %(num)d people: ",
                       len(people)) + ngettext("%(num)d e-mail is being sent.",
                                               "%(num)d e-mails are being sent.", mailed)
    if unreachable:
        message += " " + ngettext("%(num)d decider has no e-mail address.",
                                  "%(num)d deciders have no e-mail address.", unreachable)
    flash(message, "success" if mailed else "error")
    return _back(media, channel)
