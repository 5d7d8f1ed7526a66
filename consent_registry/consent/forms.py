"""Printable consent forms for the deciders e-mail cannot reach.

Each form carries the request's text, a tick box per channel, a signature line, and the decider's
personal answer link (signed like the e-mail's, to the same answer page, but short enough to type:
consent/paper_links.py) written out and as a QR code. The QR code is inline SVG made by segno
in-process: nothing is fetched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import segno
from flask import current_app
from markupsafe import Markup

from ..db import utcnow
from ..people.models import Person
from .links import external_url
from .models import ConsentRecipient, ConsentRequest
from .paper_links import paper_token
from .reach import LINKABLE, reason_for
from .rules import default_valid_until
from .texts import text_for

# Medium error correction survives a crease or a smudge on paper; the code stays small.
QR_ERROR = "m"
QR_SCALE = 3


def answer_link(recipient_id: int, *, today: date) -> str:
    """A recipient's absolute answer link for paper: the e-mail's answer page, a short token."""
    return external_url("consent_public.answer", token=paper_token(recipient_id, today=today))


def qr_svg(url: str) -> Markup:
    """An inline SVG QR code of the URL (no XML declaration, so it embeds in HTML)."""
    code = segno.make(url, error=QR_ERROR, micro=False)
    svg = code.svg_inline(scale=QR_SCALE, dark="#000", light="#fff", title=url)
    return Markup(svg)  # noqa: S704  (segno writes only numbers and the escaped title)


@dataclass(frozen=True, slots=True)
class PrintableForm:
    """Everything one printed form shows, in the decider's language."""

    recipient_id: int
    request: ConsentRequest
    person: Person
    language: str
    for_self: bool
    decider_name: str | None
    texts: dict[str, tuple[str, str]]
    valid_until: date | None
    link: str | None  # None when nobody who may answer is known (no guardian in the register)
    link_expires: date | None
    qr: Markup | None
    reason: str | None


def printable_form(recipient: ConsentRecipient, *, today: date | None = None) -> PrintableForm:
    """The form for one recipient; a link only when the answer page would accept their answer."""
    day = today or utcnow().date()
    language = recipient.language if recipient.language in ("nl", "en") else "nl"
    reason = reason_for(decider_kind=recipient.decider_kind,
                        has_guardian=recipient.guardian_id is not None, email=recipient.email,
                        delivery=recipient.delivery)
    has_link = reason is None or reason in LINKABLE
    link = answer_link(recipient.id, today=day) if has_link else None
    return PrintableForm(
        recipient_id=recipient.id, request=recipient.request, person=recipient.person,
        language=language, for_self=recipient.decider_kind != "guardian",
        decider_name=recipient.guardian.display_name if recipient.guardian else None,
        texts={c: text_for(c, language) for c in recipient.request.channels},
        valid_until=default_valid_until(decided_on=day,
                                        rule=current_app.config["CONSENT_VALIDITY"]),
        link=link,
        link_expires=day + timedelta(days=current_app.config["CONSENT_LINK_DAYS"]) if link else None,
        qr=qr_svg(link) if link else None,
        reason=reason,
    )
