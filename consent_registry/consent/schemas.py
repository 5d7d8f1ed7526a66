"""Shapes of consent data in the API, used to validate requests and to write the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from ..people.schemas import Strict


class ConsentIn(Strict):
    """A decision recorded on someone's behalf (paper form, import, in person)."""

    channel: str = Field(min_length=1, max_length=32)
    decision: Literal["granted", "refused", "withdrawn"]
    method: Literal["paper", "import", "in-person"]
    decided_by: str = Field(pattern=r"^(self|pupil|guardian:[0-9]{1,10})$",
                            description='"self" (staff), "pupil" (16 or older) or "guardian:<id>"')
    note: str | None = Field(default=None, max_length=500)


class ConsentRecordOut(BaseModel):
    """One append-only consent record."""

    id: int
    person_id: int
    channel: str
    decision: Literal["granted", "refused", "withdrawn"]
    decided_by: str
    method: Literal["email-link", "paper", "import", "in-person"]
    entered_by: int | None
    text_sha256: str
    valid_from: str
    valid_until: str | None
    decided_at: str
    possibly_scanner: bool
    note: str | None
    has_scan: bool


class EffectiveOut(BaseModel):
    """The effective consent for one channel now, and the records that decided it."""

    state: Literal["granted", "refused", "withdrawn", "expired", "none"]
    valid_until: str | None
    record_ids: list[int]


class ConsentsOut(BaseModel):
    """A person's effective consent per channel, and every record."""

    effective: dict[str, EffectiveOut]
    history: list[ConsentRecordOut]


# Ids are 32-bit integers in the database; larger ones cannot exist and would overflow the query.
DatabaseId = Annotated[int, Field(ge=1, le=2**31 - 1)]


class ConsentRequestIn(Strict):
    """Ask the deciders of these people about these channels."""

    person_ids: list[DatabaseId] = Field(min_length=1, max_length=5000)
    channels: list[str] = Field(min_length=1, max_length=10)
    note: str | None = Field(default=None, max_length=300)
    media_id: DatabaseId | None = None


class UnreachableOut(BaseModel):
    """A decider the request cannot reach by e-mail, and why (consent/reach.py)."""

    recipient_id: int
    person_id: int
    person_name: str
    decider: str = Field(description='"pupil", "self" or "guardian:<id>"; "guardian" when the '
                                     "pupil has no guardian in the register")
    reason: Literal["no_guardian", "no_guardian_address", "no_pupil_address", "no_staff_address",
                    "delivery_failed"]
    message: str


class ConsentRequestCreated(BaseModel):
    """A request accepted for sending; `unreachable` lists who no e-mail will reach."""

    id: int
    recipients: int
    unreachable: list[UnreachableOut]


class RecipientOut(BaseModel):
    """One decider asked about one person, and how far that got."""

    id: int
    person_id: int
    decider: str
    delivery: Literal["pending", "sending", "sent", "failed", "skipped"]
    state: Literal["pending", "sending", "sent", "failed", "skipped", "opened", "answered",
                   "expired"]
    attempts: int
    last_error: str | None
    reminders_sent: int
    sent_at: str | None
    answered_at: str | None


class ProgressOut(BaseModel):
    """Counts of recipients per state."""

    total: int
    pending: int
    sending: int
    sent: int
    failed: int
    skipped: int
    opened: int
    answered: int


class ConsentRequestOut(BaseModel):
    """A request's progress and every recipient's state."""

    id: int
    channels: list[str]
    note: str | None
    media_id: int | None
    created_at: str
    progress: ProgressOut
    recipients: list[RecipientOut]
    unreachable: list[UnreachableOut]
