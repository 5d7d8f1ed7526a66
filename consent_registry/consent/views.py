"""Staff pages about consent: a person's grid and history, paper forms, class overview, requests."""

from __future__ import annotations

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from ..audit import Actor, record
from ..auth.access import ANY_ROLE, allow
from ..db import db, utcnow
from ..jobs import enqueue
from ..people.models import Person
from ..people.service import get_person, groups
from ..people.views import person_or_404
from ..storage import get_storage, scan_type
from .mails import request_mail
from .models import ConsentRecipient, ConsentRecord, ConsentRequest
from .reach import unreachable_recipients
from .requests import active_people, create_request, people_by_ids, progress, without_valid_answer
from .sending import send_request_mails
from .service import (
    ConsentError,
    channels,
    deciders_of,
    effective_all,
    purposes,
    record_decision,
    records_of,
)
from .texts import text_for

bp = Blueprint("consent", __name__)
RECORDERS = ("admin", "staff")
REQUESTERS = ("admin", "staff", "communications")


def _actor() -> Actor:
    """The staff member acting."""
    return Actor("user", current_user.id)


def _titles() -> dict[str, str]:
    """Purpose titles in the page's language."""
    from flask_babel import get_locale

    language = str(get_locale() or "nl")
    return {p: text_for(p, language)[0] for p in purposes()}


def _person_page(person: Person, errors: dict[str, str] | None = None, status: int = 200,
                 ) -> tuple[str, int]:
    """The consent grid, history and paper form of one person."""
    return render_template(
        "consent/person.html", person=person, effective=effective_all(person),
        history=list(reversed(records_of(person.id))), titles=_titles(), purposes=purposes(),
        deciders=deciders_of(person, utcnow().date()), errors=errors or {},
        can_record=current_user.role in RECORDERS, can_request=current_user.role in REQUESTERS,
    ), status


@bp.get("/people/<int:person_id>/consents")
@allow(*ANY_ROLE)
def person_consents(person_id: int) -> tuple[str, int]:
    """A person's consent per channel at a glance, with the full history."""
    return _person_page(person_or_404(person_id))


def _form_id(raw: str) -> int | None:
    """An id typed into a form or query string, or None when no row can have it.

    Only ASCII digits: str.isdigit() also accepts "²", which int() refuses; and ids beyond the
    database's integer would overflow the query.
    """
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**31 else None


def _decided_by(value: str) -> tuple[str, int | None]:
    """Parse guardian:<id>, pupil or self."""
    guardian_id = _form_id(value.removeprefix("guardian:")) if value.startswith("guardian:") else None
    if guardian_id is not None:
        return "guardian", guardian_id
    if value in ("pupil", "self"):
        return value, None
    raise ConsentError("invalid", _("Choose who decided."), field="decided_by")


def _read_scan() -> tuple[str | None, str | None]:
    """Store an attached scan of the form after checking what it is; (key, type) or Nones."""
    upload = request.files.get("scan")
    if upload is None or not upload.filename:
        return None, None
    limit = current_app.config["MAX_SCAN_BYTES"]
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise ConsentError("too_large", _("The scan is larger than 10 MB."), field="scan")
    kind = scan_type(data)
    if kind is None:
        raise ConsentError("unsupported", _("The scan must be a PDF, JPEG or PNG file."), field="scan")
    return get_storage().put(data, prefix="scans"), kind


@bp.post("/people/<int:person_id>/consents")
@allow(*RECORDERS)
def record_paper(person_id: int) -> tuple[str, int] | Response:
    """Record a decision made on paper or in person, on the decider's behalf."""
    person = person_or_404(person_id)
    method = request.form.get("method", "paper")
    scan_key = None
    try:
        if method not in ("paper", "in-person"):
            raise ConsentError("invalid", _("Choose paper or in person."), field="method")
        kind, guardian_id = _decided_by(request.form.get("decided_by", ""))
        scan_key, kind_of_scan = _read_scan()
        record_decision(
            person=person, channel=request.form.get("channel", ""),
            decision=request.form.get("decision", ""), decider_kind=kind, guardian_id=guardian_id,
            method=method, actor=_actor(), entered_by=current_user.id,
            note=request.form.get("note", "").strip()[:500] or None,
            scan_key=scan_key, scan_type=kind_of_scan,
        )
    except ConsentError as exc:
        db.session.rollback()
        if scan_key:
            get_storage().delete(scan_key)  # no stored file without its record
        return _person_page(person, {exc.field or "form": str(exc)}, 422)
    db.session.commit()
    flash(_("The decision has been recorded."), "success")
    return redirect(url_for("consent.person_consents", person_id=person.id))


@bp.get("/people/<int:person_id>/consents/<int:record_id>/scan")
@allow("admin", "staff", "dpo")
def scan(person_id: int, record_id: int) -> Response:
    """The scanned paper form behind a record; viewing it is audited."""
    row = db.session.get(ConsentRecord, record_id) if record_id < 2**31 else None
    if row is None or row.person_id != person_id or not row.scan_key:
        abort(404)
    record("consent:scan_view", actor=_actor(), subject_type="person", subject_id=person_id,
           details={"record_id": row.id})
    db.session.commit()
    response = Response(get_storage().get(row.scan_key), mimetype=row.scan_type)
    response.headers["Content-Disposition"] = f"attachment; filename=form-{row.id}"
    return response


@bp.get("/consents")
@allow(*ANY_ROLE)
def overview() -> str:
    """Per class: who has answered what, and who has not answered."""
    group = request.args.get("group") or None
    only_missing = request.args.get("missing") == "1"
    people = active_people(group) if group else []
    rows = [(p, effective_all(p)) for p in people]
    if only_missing:
        publication = set(channels())  # biometric matching is a separate choice, not an omission
        rows = [(p, e) for p, e in rows
                if any(x.state in ("none", "expired") for c, x in e.items() if c in publication)]
    return render_template("consent/overview.html", rows=rows, group=group, groups=groups(),
                           purposes=purposes(), titles=_titles(), only_missing=only_missing)


def _chosen_people() -> list[Person]:
    """The people a request form picked: one person, a class, or everyone without an answer."""
    target = request.form.get("target", "")
    if target == "person":
        person_id = _form_id(request.form.get("person_id", ""))
        return people_by_ids([person_id]) if person_id else []
    if target == "group":
        return active_people(request.form.get("group") or "\0")
    if target == "missing":
        channel = request.form.get("missing_channel", "")
        if channel not in purposes():
            raise ConsentError("unknown_channel", _("Choose a channel."), field="missing_channel")
        return without_valid_answer(channel, request.form.get("group") or None)
    raise ConsentError("invalid", _("Choose whom to ask."), field="target")


@bp.get("/consent-requests/new")
@allow(*REQUESTERS)
def new_request() -> str:
    """The form to ask for consent."""
    person_id = _form_id(request.args.get("person_id", ""))
    person = get_person(person_id) if person_id else None
    return render_template("consent/request_form.html", purposes=purposes(), titles=_titles(),
                           groups=groups(), person=person, errors={}, values=request.args)


@bp.post("/consent-requests/new")
@allow(*REQUESTERS)
def request_preview_or_send() -> tuple[str, int] | Response:
    """Preview the e-mail (nothing is stored), or create the request and queue the mails."""
    chosen = request.form.getlist("channels")
    note = request.form.get("note", "").strip()[:400] or None
    try:
        people = _chosen_people()
        request_ = create_request(people=people, channels=chosen, note=note, actor=_actor(),
                                  created_by=current_user.id)
    except ConsentError as exc:
        db.session.rollback()
        return render_template("consent/request_form.html", purposes=purposes(), titles=_titles(),
                               groups=groups(), person=None, errors={exc.field or "form": str(exc)},
                               values=request.form), 422
    if request.form.get("confirm") != "1":
        sample = next((r for r in request_.recipients if r.email), None)
        preview = request_mail(sample, preview=True) if sample else None
        counts = progress(request_)
        unreachable = unreachable_recipients(request_.recipients)  # read before the rollback
        db.session.rollback()  # a preview stores nothing
        return render_template("consent/request_preview.html", preview=preview, counts=counts,
                               people=sum(p.status == "active" for p in people),
                               unreachable=unreachable, form=request.form), 200
    mailed = any(r.delivery == "pending" for r in request_.recipients)
    db.session.commit()
    enqueue(send_request_mails, request_.id)
    if mailed:
        flash(_("The request is being sent."), "success")
    else:
        flash(_("Nobody in this request can be e-mailed: print their forms below."), "info")
    anchor = None if mailed else "unreachable"
    return redirect(url_for("consent.request_detail", request_id=request_.id, _anchor=anchor))


@bp.get("/consent-requests")
@allow(*ANY_ROLE)
def requests_list() -> str:
    """Recent requests with their progress."""
    rows = db.session.execute(
        sa.select(ConsentRequest).order_by(ConsentRequest.id.desc()).limit(100)).scalars().all()
    return render_template("consent/requests.html", rows=[(r, progress(r)) for r in rows],
                           titles=_titles())


@bp.get("/consent-requests/<int:request_id>")
@allow(*ANY_ROLE)
def request_detail(request_id: int) -> str:
    """One request: progress and each recipient's state."""
    request_ = db.session.get(ConsentRequest, request_id) if request_id < 2**31 else None
    if request_ is None:
        abort(404)
    return render_template("consent/request_detail.html", request_=request_,
                           counts=progress(request_), titles=_titles(),
                           recipients=request_.recipients, state_of=recipient_state,
                           unreachable=unreachable_recipients(request_.recipients),
                           can_print=current_user.role in RECORDERS)


def recipient_state(recipient: ConsentRecipient) -> str:
    """sent, opened, answered, expired, or the delivery state before sending."""
    if recipient.answered_at:
        return "answered"
    if recipient.delivery != "sent":
        return recipient.delivery
    days = current_app.config["CONSENT_LINK_DAYS"]
    if recipient.sent_at and (utcnow() - recipient.sent_at).days >= days:
        return "expired"
    return "opened" if recipient.opened_at else "sent"


from . import form_views  # noqa: E402,F401  (the printable forms join this blueprint)
