"""API routes for consent records and consent requests."""

from __future__ import annotations

from flask import Response, jsonify, url_for
from flask_babel import gettext as _

from ..auth.access import ANY_ROLE, allow, current_principal
from ..consent.models import ConsentRecipient, ConsentRecord, ConsentRequest
from ..consent.reach import Unreachable, unreachable_recipients
from ..consent.requests import create_request, people_by_ids, progress
from ..consent.schemas import ConsentIn, ConsentRequestIn
from ..consent.sending import send_request_mails
from ..consent.service import ConsentError, effective_all, record_decision, records_of
from ..consent.views import recipient_state
from ..db import db
from ..jobs import enqueue
from . import bp
from .errors import ApiError, json_object, validated
from .people import _actor, _person_or_404

RECORDERS = ("admin", "staff")
REQUESTERS = ("admin", "staff", "communications")


def record_json(row: ConsentRecord) -> dict[str, object]:
    """A consent record as the API shows it."""
    return {
        "id": row.id, "person_id": row.person_id, "channel": row.channel,
        "decision": row.decision, "decided_by": (f"guardian:{row.guardian_id}"
                                                 if row.guardian_id else row.decider_kind),
        "method": row.method, "entered_by": row.entered_by, "text_sha256": row.text_sha256,
        "valid_from": row.valid_from.isoformat(),
        "valid_until": row.valid_until.isoformat() if row.valid_until else None,
        "decided_at": row.decided_at.isoformat(), "possibly_scanner": row.possibly_scanner,
        "note": row.note, "has_scan": row.scan_key is not None,
    }


def _consent_error(exc: ConsentError) -> ApiError:
    """A refused decision or request as a 422 naming the field."""
    return ApiError(422, exc.code, str(exc), {exc.field: str(exc)} if exc.field else None)


@bp.get("/people/<int:person_id>/consents")
@allow(*ANY_ROLE)
def get_consents(person_id: int) -> Response:
    """Effective consent per purpose now, and every record."""
    person = _person_or_404(person_id)
    effective = {
        purpose: {"state": e.state, "record_ids": list(e.record_ids),
                  "valid_until": e.valid_until.isoformat() if e.valid_until else None}
        for purpose, e in effective_all(person).items()
    }
    return jsonify({"effective": effective,
                    "history": [record_json(r) for r in records_of(person.id)]})


@bp.post("/people/<int:person_id>/consents")
@allow(*RECORDERS)
def post_consent(person_id: int) -> tuple[Response, int]:
    """Record a decision made on paper, in person or in an import."""
    person = _person_or_404(person_id)
    data = validated(ConsentIn, json_object())
    kind, _sep, guardian = data.decided_by.partition(":")
    user = current_principal()
    try:
        row = record_decision(
            person=person, channel=data.channel, decision=data.decision, decider_kind=kind,
            guardian_id=int(guardian) if guardian else None, method=data.method, actor=_actor(),
            entered_by=user.id if user else None, note=data.note,
        )
    except ConsentError as exc:
        db.session.rollback()
        raise _consent_error(exc) from None
    db.session.commit()
    return jsonify(record_json(row)), 201


def recipient_json(row: ConsentRecipient) -> dict[str, object]:
    """One recipient's progress."""
    return {"id": row.id, "person_id": row.person_id,
            "decider": f"guardian:{row.guardian_id}" if row.guardian_id else row.decider_kind,
            "delivery": row.delivery, "state": recipient_state(row), "attempts": row.attempts,
            "last_error": row.last_error, "reminders_sent": row.reminders_sent,
            "sent_at": row.sent_at.isoformat() if row.sent_at else None,
            "answered_at": row.answered_at.isoformat() if row.answered_at else None}


def unreachable_json(rows: list[Unreachable], recipients: list[ConsentRecipient]) -> list[dict]:
    """Who the request cannot reach by e-mail, with the reason as a code and in words."""
    guardian_of = {r.id: r.guardian_id for r in recipients}
    return [{"recipient_id": u.recipient_id, "person_id": u.person_id, "person_name": u.person_name,
             "decider": (f"guardian:{guardian_of[u.recipient_id]}"
                         if guardian_of.get(u.recipient_id) else u.decider_kind),
             "reason": u.reason, "message": u.reason_text} for u in rows]


@bp.post("/consent-requests")
@allow(*REQUESTERS)
def post_consent_request() -> tuple[Response, int, dict[str, str]]:
    """Create a request; its e-mails go out in the background (202)."""
    data = validated(ConsentRequestIn, json_object())
    user = current_principal()
    try:
        request_ = create_request(people=people_by_ids(data.person_ids), channels=data.channels,
                                  note=data.note, media_id=data.media_id, actor=_actor(),
                                  created_by=user.id if user else None)
    except ConsentError as exc:
        db.session.rollback()
        raise _consent_error(exc) from None
    db.session.commit()
    enqueue(send_request_mails, request_.id)
    location = url_for("api.get_consent_request", request_id=request_.id)
    unreachable = unreachable_json(unreachable_recipients(request_.recipients), request_.recipients)
    return (jsonify({"id": request_.id, "recipients": len(request_.recipients),
                     "unreachable": unreachable}), 202, {"Location": location})


@bp.get("/consent-requests/<int:request_id>")
@allow(*ANY_ROLE)
def get_consent_request(request_id: int) -> Response:
    """A request's progress and each recipient's state."""
    request_ = db.session.get(ConsentRequest, request_id) if 0 < request_id < 2**31 else None
    if request_ is None:
        raise ApiError(404, "not_found", _("No consent request with this id."))
    return jsonify({"id": request_.id, "channels": request_.channels, "note": request_.note,
                    "media_id": request_.media_id, "created_at": request_.created_at.isoformat(),
                    "progress": progress(request_),
                    "recipients": [recipient_json(r) for r in request_.recipients],
                    "unreachable": unreachable_json(unreachable_recipients(request_.recipients),
                                                    request_.recipients)})
