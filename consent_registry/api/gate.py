"""API route for the publication gate: the decision for an item and a channel, without publishing.

Reading the gate changes nothing and is not audited; only a blocked publish attempt is.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from flask import Response, jsonify, request
from flask_babel import gettext as _
from pydantic import BaseModel, Field

from ..auth.access import ANY_ROLE, allow
from ..consent.service import channels
from ..publishing.gate import REASONS
from ..publishing.gate_service import gate_for
from . import bp
from .errors import ApiError
from .media import media_or_404

GateReason = Literal[REASONS]  # type: ignore[valid-type]


class GateBlocker(BaseModel):
    """One reason the item may not be published; which appearance and person, when it has one."""

    appearance_id: int | None
    person_id: int | None
    reason: GateReason = Field(description="not_analysed, analysis_failed, unresolved, "
                                           "suggestion_unconfirmed, no_consent, refused, withdrawn, "
                                           "expired, person_left or not_attested")


class GatePerson(BaseModel):
    """A tagged person's effective consent for the channel, with the records that decide it."""

    person_id: int
    state: Literal["granted", "refused", "withdrawn", "expired", "none"]
    consent_record_ids: list[int]
    valid_until: date | None
    left: bool


class GateDecisionOut(BaseModel):
    """The gate's decision: allowed only when nothing blocks."""

    allowed: bool
    blockers: list[GateBlocker]
    people: list[GatePerson]



def _channel_arg() -> str:
    """The channel query argument, or a 400 naming it."""
    channel = request.args.get("channel", "")
    if channel not in channels():
        message = _("Choose one of: %(choices)s.", choices=", ".join(channels()))
        raise ApiError(400, "bad_request", _("Invalid query parameter."), {"channel": message})
    return channel


def _attest_arg() -> bool:
    """The attest query argument (true or false, false when absent), or a 400 naming it."""
    raw = request.args.get("attest", "false")
    if raw not in ("true", "false"):
        raise ApiError(400, "bad_request", _("Invalid query parameter."),
                       {"attest": _("Must be true or false.")})
    return raw == "true"


@bp.get("/media/<int:media_id>/gate")
@allow(*ANY_ROLE)
def media_gate(media_id: int) -> Response:
    """Whether the item may be published on the channel now, and what blocks it."""
    media = media_or_404(media_id)
    decision = gate_for(media, _channel_arg(), attested=_attest_arg())
    return jsonify(GateDecisionOut.model_validate(decision.as_json()).model_dump(mode="json"))


__all__ = ["GateBlocker", "GateDecisionOut", "GatePerson"]
