"""Signed links in e-mails: they carry only an id, each kind with its own salt and lifetime."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ..db import utcnow
from .paper_links import PaperLinkError, looks_like_paper_token, recipient_id_from_paper

ANSWER_SALT = "consent-answer"
MANAGE_SALT = "consent-manage"
WITHDRAW_SALT = "consent-withdraw"
DAY = 24 * 3600


class LinkError(Exception):
    """A link that is tampered with or too old; `expired` tells which."""

    def __init__(self, *, expired: bool) -> None:
        """Remember whether the link was only too old."""
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


def _serializer(salt: str) -> URLSafeTimedSerializer:
    """A serializer for one kind of link."""
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)


def _load(token: str, salt: str, days: int) -> object:
    """The payload of a token, or LinkError."""
    try:
        return _serializer(salt).loads(token, max_age=days * DAY)
    except SignatureExpired:
        raise LinkError(expired=True) from None
    except BadSignature:
        raise LinkError(expired=False) from None


def answer_token(recipient_id: int) -> str:
    """The token of a recipient's personal answer link."""
    return _serializer(ANSWER_SALT).dumps(recipient_id)


def recipient_id_from(token: str) -> int:
    """The recipient an answer link was made for (an e-mail's, or a printed form's short one)."""
    if looks_like_paper_token(token):
        try:
            return recipient_id_from_paper(token, today=utcnow().date(),
                                           days=current_app.config["CONSENT_LINK_DAYS"])
        except PaperLinkError as exc:
            raise LinkError(expired=exc.expired) from None
    payload = _load(token, ANSWER_SALT, current_app.config["CONSENT_LINK_DAYS"])
    if not isinstance(payload, int):
        raise LinkError(expired=False)
    return payload


@dataclass(frozen=True, slots=True)
class DeciderRef:
    """Who a manage or withdraw link belongs to: a guardian, or a person deciding for themselves."""

    kind: str  # "guardian" or "person"
    id: int

    def encode(self) -> str:
        """Compact form for a token."""
        return f"{self.kind[0]}{self.id}"

    @classmethod
    def decode(cls, value: object) -> DeciderRef:
        """Read the compact form; LinkError when it is not one."""
        if not isinstance(value, str) or value[:1] not in ("g", "p") or not value[1:].isdigit():
            raise LinkError(expired=False)
        return cls("guardian" if value[0] == "g" else "person", int(value[1:]))


def manage_token(ref: DeciderRef) -> str:
    """The token of a decider's "manage my consents" link."""
    return _serializer(MANAGE_SALT).dumps(ref.encode())


def decider_from_manage(token: str) -> DeciderRef:
    """The decider a manage link belongs to."""
    return DeciderRef.decode(_load(token, MANAGE_SALT, current_app.config["MANAGE_LINK_DAYS"]))


def withdraw_token(ref: DeciderRef, person_id: int) -> str:
    """The token of a one-step withdraw link for one person's consents."""
    return _serializer(WITHDRAW_SALT).dumps([ref.encode(), person_id])


def withdraw_target(token: str) -> tuple[DeciderRef, int]:
    """The decider and person a withdraw link is about."""
    payload = _load(token, WITHDRAW_SALT, current_app.config["MANAGE_LINK_DAYS"])
    if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[1], int)):
        raise LinkError(expired=False)
    return DeciderRef.decode(payload[0]), payload[1]


def external_url(endpoint: str, **values: object) -> str:
    """An absolute link on the configured public address, for e-mails."""
    # Built without a request, so jobs can write links too; the host comes from PUBLIC_URL.
    path = current_app.url_map.bind("localhost").build(endpoint, values)
    return current_app.config["PUBLIC_URL"].rstrip("/") + path
