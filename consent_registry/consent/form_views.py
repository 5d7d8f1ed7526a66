"""Printing consent forms for a request's deciders who cannot be reached by e-mail.

A printed form carries a live answer link: whoever holds it can answer for the person. So only
the roles that may already record paper answers print them, by a POST with a CSRF token (a link
on another site cannot make a browser print forms), and every print is an audit event naming the
recipients.
"""

from __future__ import annotations

from flask import abort, render_template, request
from flask_babel import force_locale
from flask_login import current_user
from markupsafe import Markup

from ..audit import Actor, record
from ..auth.access import allow
from ..db import db, utcnow
from ..school import school_names
from .forms import printable_form
from .models import ConsentRecipient, ConsentRequest
from .reach import still_asked, unreachable_recipients
from .views import RECORDERS, _form_id, bp

PRINTERS = RECORDERS  # those who may record a paper answer may hand out the form for it
# The page holds live answer links: no copy in a browser or proxy cache, no Referer leaving it.
NOT_KEPT = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _request_or_404(request_id: int) -> ConsentRequest:
    """A consent request by id, or 404."""
    request_ = db.session.get(ConsentRequest, request_id) if request_id < 2**31 else None
    if request_ is None:
        abort(404)
    return request_


def _chosen_recipients(request_: ConsentRequest) -> list[ConsentRecipient]:
    """The recipients the form asked for: the ids posted, or every unreachable one."""
    by_id = {r.id: r for r in request_.recipients}
    raw = request.form.getlist("recipient_id")
    if not raw:
        wanted = [u.recipient_id for u in unreachable_recipients(request_.recipients)]
        return [by_id[i] for i in wanted if i is not None]
    ids = [_form_id(value) for value in raw]
    if any(i not in by_id for i in ids):
        abort(404)  # not a recipient of this request
    chosen = [by_id[i] for i in dict.fromkeys(ids) if i is not None]
    today = utcnow().date()
    if not all(still_asked(r, on=today) for r in chosen):
        abort(409)  # answered, left, or no longer the decider: the link would open nothing
    return chosen


def _render_form(recipient: ConsentRecipient) -> Markup:
    """One form, written in the recipient's language like their e-mail would be."""
    form = printable_form(recipient)
    with force_locale(form.language):
        return Markup(render_template("consent/_printable_form.html", form=form,  # noqa: S704
                                      school=school_names().school_name))


@bp.post("/consent-requests/<int:request_id>/forms")
@allow(*PRINTERS)
def print_forms(request_id: int) -> tuple[str, int, dict[str, str]]:
    """Printable forms: one recipient's, or all who cannot be reached, in one document."""
    request_ = _request_or_404(request_id)
    chosen = _chosen_recipients(request_)
    forms = [_render_form(r) for r in chosen]
    if not chosen:
        return render_template("consent/printable_forms.html", request_=request_, forms=[],
                               recipients=[]), 200, NOT_KEPT
    record("consent_form:print", actor=Actor("user", current_user.id),
           subject_type="consent_request", subject_id=request_.id,
           details={"recipient_ids": [r.id for r in chosen],
                    # named as people too, so each printed live link shows in that person's file
                    "person_ids": sorted({r.person_id for r in chosen})})
    db.session.commit()
    return render_template("consent/printable_forms.html", request_=request_, forms=forms,
                           recipients=chosen), 200, NOT_KEPT
