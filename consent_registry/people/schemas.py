"""Validated shapes of people data, shared by the API, the web forms and the CSV import."""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from ..db import utcnow
from ..translate import _

EARLIEST_BIRTH_DATE = date(1900, 1, 1)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _clean_text(value: str) -> str:
    """Strip surrounding space and refuse control characters."""
    value = unicodedata.normalize("NFC", value).strip()
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError(_("Must not contain control characters."))
    return value


def normalise_email_address(value: str) -> str:
    """A syntactically valid e-mail address, lower-cased; raises ValueError otherwise."""
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise ValueError(_("Not a valid e-mail address.")) from None
    return result.normalized.lower()


def _iso_date(value: Any) -> Any:
    """Accept only YYYY-MM-DD strings (or dates), not numbers pydantic would read as timestamps."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError(_("Must be a date written as YYYY-MM-DD."))
    return value


def _plausible_birth_date(value: date) -> date:
    """Birth dates lie between 1900 and today."""
    if value > utcnow().date():
        raise ValueError(_("Must not be in the future."))
    if value < EARLIEST_BIRTH_DATE:
        raise ValueError(_("Must be 1900 or later."))
    return value


Text = Annotated[str, AfterValidator(_clean_text)]
Name = Annotated[str, AfterValidator(_clean_text), Field(min_length=1, max_length=100)]
FamilyName = Annotated[str, AfterValidator(_clean_text), Field(min_length=1, max_length=150)]
Email = Annotated[str, Field(max_length=254), AfterValidator(normalise_email_address)]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
BirthDate = Annotated[date, BeforeValidator(_iso_date), AfterValidator(_plausible_birth_date)]
ExternalId = Annotated[
    str, AfterValidator(_clean_text), Field(min_length=1, max_length=64)
]
Group = Annotated[str, AfterValidator(_clean_text), Field(max_length=40)]
Language = Literal["nl", "en"]


class Strict(BaseModel):
    """Base for input models: unknown fields are errors, strings are never coerced from numbers."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _distinct_guardians(guardians: list[GuardianIn]) -> list[GuardianIn]:
    """Refuse a list that names one guardian twice."""
    emails = [g.email for g in guardians]
    if len(emails) != len(set(emails)):
        raise ValueError(_("The same guardian is named twice."))
    return guardians


class GuardianIn(Strict):
    """A guardian as given with a pupil; left out, the name is unknown (some exports carry none)."""

    # None means "not given": a known guardian keeps their name, a new one has none ("") until
    # the school adds it. An empty string is still refused: a form field left blank is a mistake.
    name: Name | None = None
    email: Email
    relation: Annotated[Text, Field(max_length=40)] | None = None
    # The language of the e-mails to this guardian; left out, it stays as it is (Dutch when new).
    language: Language | None = None


class PersonCreate(Strict):
    """A new person for the register."""

    external_id: ExternalId
    given_name: Name
    family_name: FamilyName
    birth_date: BirthDate
    role: Literal["pupil", "staff"]
    email: Email | None = None
    group: Group | None = None
    language: Language = "nl"
    guardians: list[GuardianIn] = Field(default_factory=list, max_length=6)

    @field_validator("guardians")
    @classmethod
    def _guardians_fit_role(cls, guardians: list[GuardianIn], info: ValidationInfo) -> list:
        """Staff decide for themselves, so they have no guardians; nobody has one twice."""
        if info.data.get("role") == "staff" and guardians:
            raise ValueError(_("Staff members have no guardians."))
        return _distinct_guardians(guardians)


class PersonPatch(Strict):
    """A change to some of a person's fields; fields left out stay as they are."""

    # A field a person must have may be left out but not sent as null: the document says so too.
    external_id: ExternalId | SkipJsonSchema[None] = None
    given_name: Name | SkipJsonSchema[None] = None
    family_name: FamilyName | SkipJsonSchema[None] = None
    birth_date: BirthDate | SkipJsonSchema[None] = None
    role: Literal["pupil", "staff"] | SkipJsonSchema[None] = None
    email: Email | None = None
    group: Group | None = None
    language: Language | SkipJsonSchema[None] = None
    status: Literal["active", "left"] | SkipJsonSchema[None] = None
    left_on: IsoDate | None = None
    guardians: list[GuardianIn] | None = Field(default=None, max_length=6)

    @field_validator(
        "external_id", "given_name", "family_name", "birth_date", "role", "status", "language"
    )
    @classmethod
    def _not_cleared(cls, value: Any) -> Any:
        """Fields a person must have may be changed, not cleared (runs only when given)."""
        if value is None:
            raise ValueError(_("May be changed but not cleared."))
        return value

    @field_validator("guardians")
    @classmethod
    def _guardians_distinct(cls, guardians: list[GuardianIn] | None) -> list | None:
        """Nobody has the same guardian twice."""
        return None if guardians is None else _distinct_guardians(guardians)


class GuardianOut(BaseModel):
    """A guardian as the API shows it."""

    id: int
    name: str
    email: str
    relation: str | None
    language: Language


class PersonOut(BaseModel):
    """A person as the API shows it."""

    id: int
    external_id: str
    given_name: str
    family_name: str
    birth_date: date
    role: Literal["pupil", "staff"]
    email: str | None
    group: str | None
    language: Language
    status: Literal["active", "left"]
    left_on: date | None
    guardians: list[GuardianOut]
    created_at: str
    updated_at: str


class PersonPage(BaseModel):
    """One page of people."""

    items: list[PersonOut]
    page: int
    per_page: int
    total: int
