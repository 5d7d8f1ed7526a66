"""The pages guardians, pupils and staff reach from e-mailed links: answer, withdraw, manage.

Opening a link only shows a page (mail scanners open links); every decision is a POST with a
CSRF token. A bad, expired or used link gets a friendly page that names nobody.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, render_template, request
from flask_babel import gettext as _

from ..audit import Actor, record
from ..auth.access import allow_public
from ..db import db, utcnow
from ..jobs import enqueue
from ..people.models import Guardian, Person
from ..people.service import WITH_GUARDIANS
from .links import (
    DeciderRef,
    LinkError,
    decider_from_manage,
    manage_token,
    recipient_id_from,
    withdraw_target,
    withdraw_token,
)
from .mails import manage_link_mail
from .models import ConsentRecipient
from .paper_links import looks_like_paper_token
from .rules import default_valid_until
from .sending import queued_mail, send_confirmation, send_mail
from .service import (
    ConsentError,
    client_fingerprint,
    effective_all,
    is_decider,
    purposes,
    record_decision,
    records_of,
)
from .texts import text_for

bp = Blueprint("consent_public", __name__)
ANSWERS = ("granted", "refused")


@bp.after_request
def _strict_headers(response: Response) -> Response:
    """These pages leak nothing to other sites and load nothing from them."""
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _dead_link(kind: str, status: int) -> tuple[str, int]:
    """The friendly page for a link that cannot be used; it names nobody."""
    return render_template("consent/link_problem.html", kind=kind), status


def _actor_for(ref: DeciderRef) -> Actor:
    """The audit actor of someone acting through a link."""
    return Actor(ref.kind, ref.id)


def _ref_of(recipient: ConsentRecipient) -> DeciderRef:
    """Who a recipient is."""
    if recipient.guardian_id is not None:
        return DeciderRef("guardian", recipient.guardian_id)
    return DeciderRef("person", recipient.person_id)


def _recipient_or_problem(token: str) -> ConsentRecipient | tuple[str, int]:
    """The recipient a live, unused answer link belongs to, or the page explaining why not."""
    try:
        recipient = db.session.get(ConsentRecipient, recipient_id_from(token))
    except LinkError as exc:
        return _dead_link("expired" if exc.expired else "invalid", 410 if exc.expired else 404)
    if recipient is None:
        return _dead_link("invalid", 404)
    if recipient.answered_at is not None:
        return _dead_link("used", 410)
    person = recipient.person
    if person.status != "active" or not is_decider(
            person, kind=recipient.decider_kind, guardian_id=recipient.guardian_id,
            on=utcnow().date()):
        return _dead_link("no_longer", 410)
    return recipient


def _answer_page(recipient: ConsentRecipient, token: str, errors: dict[str, str] | None = None,
                 status: int = 200) -> tuple[str, int]:
    """The request page: what is asked, why, for how long, and one explicit choice per channel."""
    language = _page_language()
    return render_template(
        "consent/answer.html", recipient=recipient, person=recipient.person, token=token,
        request_=recipient.request, errors=errors or {},
        texts={c: text_for(c, language) for c in recipient.request.channels},
        valid_until=default_valid_until(decided_on=utcnow().date(),
                                        rule=current_app.config["CONSENT_VALIDITY"]),
        for_self=recipient.decider_kind != "guardian",
    ), status


def _page_language() -> str:
    """The language the page is shown in."""
    from flask_babel import get_locale

    return str(get_locale() or "nl")


@bp.get("/c/<token>")
@allow_public
def answer(token: str) -> tuple[str, int]:
    """Show the request; opening decides nothing, it only notes that the link was opened."""
    found = _recipient_or_problem(token)
    if not isinstance(found, ConsentRecipient):
        return found
    if found.opened_at is None:
        found.opened_at = utcnow()
        # Whether the link came from a printed form, so the proof says how the decider was reached.
        record("consent_link:open", actor=_actor_for(_ref_of(found)), subject_type="consent_request",
               subject_id=found.request_id,
               details={"recipient_id": found.id, "printed": looks_like_paper_token(token)})
        db.session.commit()
    return _answer_page(found, token)


def _choices(asked: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The submitted choice per asked channel, and errors: every channel needs an explicit answer."""
    submitted = {k.removeprefix("choice_"): v for k, v in request.form.items()
                 if k.startswith("choice_")}
    errors = {c: _("This channel was not part of the request.") for c in submitted if c not in asked}
    choices = {c: submitted.get(c, "") for c in asked}
    errors.update({c: _("Choose yes or no.") for c, v in choices.items() if v not in ANSWERS})
    return choices, errors


@bp.post("/c/<token>")
@allow_public
def answer_submit(token: str) -> tuple[str, int]:
    """Record one decision per asked channel, confirm on the page and by e-mail."""
    found = _recipient_or_problem(token)
    if not isinstance(found, ConsentRecipient):
        return found
    choices, errors = _choices(found.request.channels)
    if errors:
        return _answer_page(found, token, errors, 422)
    ref, fingerprint = _ref_of(found), client_fingerprint(request.remote_addr,
                                                          request.user_agent.string)
    try:
        for channel, decision in choices.items():
            record_decision(person=found.person, channel=channel, decision=decision,
                            decider_kind=found.decider_kind, guardian_id=found.guardian_id,
                            method="email-link", actor=_actor_for(ref), language=_page_language(),
                            recipient=found, client_hash=fingerprint,
                            printed_link=looks_like_paper_token(token))
    except ConsentError:
        db.session.rollback()
        return _dead_link("no_longer", 410)
    found.answered_at = utcnow()
    db.session.commit()
    enqueue(send_confirmation, ref.encode(), found.person_id, choices)
    return render_template(
        "consent/confirmed.html", person=found.person, decisions=choices,
        titles={c: text_for(c, _page_language())[0] for c in choices},
        withdraw_token=withdraw_token(ref, found.person_id), manage_token=manage_token(ref),
    ), 200


def _own_grants(ref: DeciderRef, person: Person) -> list[str]:
    """Channels where this decider's latest answer for the person is a grant."""
    latest: dict[str, str] = {}
    for row in records_of(person.id):
        mine = (row.guardian_id == ref.id) if ref.kind == "guardian" else (
            row.guardian_id is None and row.person_id == ref.id)
        if mine:
            latest[row.channel] = row.decision
    return [c for c, d in latest.items() if d == "granted"]


def _decider_args(ref: DeciderRef, person: Person) -> tuple[str, int | None]:
    """The decider kind and guardian id a link's owner decides as, for this person today."""
    if ref.kind == "guardian":
        return "guardian", ref.id
    return ("self" if person.role == "staff" else "pupil"), None


def _withdraw_context(token: str) -> tuple[DeciderRef, Person] | tuple[str, int]:
    """The decider and person of a live withdraw link, or the page explaining why not."""
    try:
        ref, person_id = withdraw_target(token)
    except LinkError as exc:
        return _dead_link("expired" if exc.expired else "invalid", 410 if exc.expired else 404)
    person = db.session.get(Person, person_id)
    if person is None or person.status != "active":
        return _dead_link("invalid", 404)
    kind, guardian_id = _decider_args(ref, person)
    if ref.kind == "person" and ref.id != person.id:
        return _dead_link("invalid", 404)
    if not is_decider(person, kind=kind, guardian_id=guardian_id, on=utcnow().date()):
        return _dead_link("no_longer", 410)
    return ref, person


@bp.get("/w/<token>")
@allow_public
def withdraw(token: str) -> tuple[str, int]:
    """Show what would be withdrawn, with one button."""
    found = _withdraw_context(token)
    if isinstance(found[0], str):
        return found  # type: ignore[return-value]
    ref, person = found  # type: ignore[misc]
    granted = _own_grants(ref, person)
    titles = {c: text_for(c, _page_language())[0] for c in granted}
    return render_template("consent/withdraw.html", person=person, granted=granted, titles=titles,
                           token=token, done=False), 200


@bp.post("/w/<token>")
@allow_public
def withdraw_submit(token: str) -> tuple[str, int]:
    """Withdraw every consent this decider gave for the person, at once."""
    found = _withdraw_context(token)
    if isinstance(found[0], str):
        return found  # type: ignore[return-value]
    ref, person = found  # type: ignore[misc]
    kind, guardian_id = _decider_args(ref, person)
    granted = _own_grants(ref, person)
    for channel in granted:
        record_decision(person=person, channel=channel, decision="withdrawn", decider_kind=kind,
                        guardian_id=guardian_id, method="email-link", actor=_actor_for(ref),
                        language=_page_language(),
                        client_hash=client_fingerprint(request.remote_addr, request.user_agent.string))
    db.session.commit()
    titles = {c: text_for(c, _page_language())[0] for c in granted}
    return render_template("consent/withdraw.html", person=person, granted=granted, titles=titles,
                           token=token, done=True, manage=manage_token(ref)), 200


def _managed_people(ref: DeciderRef) -> list[Person]:
    """The people whose consents this link's owner may see: their children, or themselves."""
    if ref.kind == "person":
        person = db.session.get(Person, ref.id)
        return [person] if person is not None and person.status == "active" else []
    guardian = db.session.get(Guardian, ref.id)
    if guardian is None:
        return []
    ids = [link.person_id for link in guardian.child_links]
    return list(db.session.execute(
        sa.select(Person).where(Person.id.in_(ids), Person.status == "active")
        .options(WITH_GUARDIANS).order_by(Person.given_name)).scalars())


def _manage_page(ref: DeciderRef, token: str, status: int = 200,
                 errors: dict[str, str] | None = None, saved: bool = False) -> tuple[str, int]:
    """Every current decision for the owner's children or themselves, changeable where they decide."""
    today, language = utcnow().date(), _page_language()
    rows = []
    for person in _managed_people(ref):
        kind, guardian_id = _decider_args(ref, person)
        rows.append({
            "person": person,
            "decides": is_decider(person, kind=kind, guardian_id=guardian_id, on=today),
            "effective": effective_all(person),
            "own": _own_latest(ref, person),
        })
    return render_template("consent/manage.html", rows=rows, token=token, errors=errors or {},
                           purposes=purposes(), titles={p: text_for(p, language) for p in purposes()},
                           saved=saved), status


def _own_latest(ref: DeciderRef, person: Person) -> dict[str, str]:
    """This decider's latest answer per purpose for the person."""
    latest: dict[str, str] = {}
    for row in records_of(person.id):
        mine = (row.guardian_id == ref.id) if ref.kind == "guardian" else row.guardian_id is None
        if mine:
            latest[row.channel] = row.decision
    return latest


def _manage_ref(token: str) -> DeciderRef | tuple[str, int]:
    """The owner of a live manage link, or the page explaining why not."""
    try:
        return decider_from_manage(token)
    except LinkError as exc:
        return _dead_link("expired" if exc.expired else "invalid", 410 if exc.expired else 404)


@bp.get("/m/<token>")
@allow_public
def manage(token: str) -> tuple[str, int]:
    """See and change all current decisions."""
    ref = _manage_ref(token)
    return ref if not isinstance(ref, DeciderRef) else _manage_page(ref, token)


@bp.post("/m/<token>")
@allow_public
def manage_submit(token: str) -> tuple[str, int]:
    """Record the answers that changed; refuse people and purposes the owner does not decide."""
    ref = _manage_ref(token)
    if not isinstance(ref, DeciderRef):
        return ref
    people = {p.id: p for p in _managed_people(ref)}
    today, changes, errors = utcnow().date(), [], {}
    for key, value in request.form.items():
        if not key.startswith("d_") or not value:
            continue
        person_id, _sep, purpose = key.removeprefix("d_").partition("_")
        # ASCII digits only, and short: int() fails on "²" and on numbers of over 4300 digits.
        plain = person_id.isascii() and person_id.isdigit() and len(person_id) <= 18
        person = people.get(int(person_id)) if plain else None
        kind, guardian_id = _decider_args(ref, person) if person else ("", None)
        if (person is None or purpose not in purposes() or value not in (*ANSWERS, "withdrawn")
                or not is_decider(person, kind=kind, guardian_id=guardian_id, on=today)):
            errors[key] = _("You cannot decide this.")
            continue
        if _own_latest(ref, person).get(purpose) != value:
            changes.append((person, purpose, value, kind, guardian_id))
    if errors:
        return _manage_page(ref, token, 422, errors)
    fingerprint = client_fingerprint(request.remote_addr, request.user_agent.string)
    confirmations: dict[int, dict[str, str]] = {}
    for person, purpose, value, kind, guardian_id in changes:
        record_decision(person=person, channel=purpose, decision=value, decider_kind=kind,
                        guardian_id=guardian_id, method="email-link", actor=_actor_for(ref),
                        language=_page_language(), client_hash=fingerprint)
        confirmations.setdefault(person.id, {})[purpose] = value
    db.session.commit()
    for person_id, decisions in confirmations.items():
        enqueue(send_confirmation, ref.encode(), person_id, decisions)
    return _manage_page(ref, token, saved=True)


@bp.get("/m/")
@allow_public
def ask_manage_link() -> str:
    """Ask for a new manage link by e-mail address."""
    return render_template("consent/ask_link.html", sent=False)


@bp.post("/m/")
@allow_public
def ask_manage_link_submit() -> str:
    """Mail a manage link if the address is in the register; the answer is the same either way."""
    email = request.form.get("email", "").strip().lower()[:254]
    guardian = db.session.execute(sa.select(Guardian).where(Guardian.email == email)).scalar_one_or_none()
    person = None if guardian else db.session.execute(
        sa.select(Person).where(Person.email == email, Person.status == "active")).scalars().first()
    if guardian or person:
        ref = DeciderRef("guardian", guardian.id) if guardian else DeciderRef("person", person.id)
        mail = manage_link_mail(email, ref, (guardian or person).language)
        enqueue(send_mail, mail_fields=queued_mail(mail), action="consent_mail:manage_link",
                subject_type=ref.kind, subject_id=ref.id)
    return render_template("consent/ask_link.html", sent=True)
