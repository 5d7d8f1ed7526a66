"""API routes for tagging: decide who an appearance is, add missed faces, list a person's media."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import sqlalchemy as sa
from flask import Response, jsonify, url_for
from flask_babel import gettext as _
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from ..auth.access import ANY_ROLE, allow
from ..db import db
from ..media.faces import Box
from ..media.models import MAX_ID, Appearance, Media
from ..media.schemas import AppearanceOut, MediaKind, MediaStatus, appearance_out
from ..media.tagging import (
    TaggingError,
    accept_suggestion,
    add_appearance,
    reject_suggestion,
    require_ready,
    set_resolution,
    tag_person,
)
from ..people.models import Person
from ..people.schemas import Strict
from ..people.service import get_person
from . import bp
from .errors import ApiError, int_arg, json_object, page_size, validated
from .media import media_or_404
from .people import _actor, _person_or_404

TAGGERS = ("admin", "communications")


def _whole_number(value: Any) -> Any:
    """10.0 as 10: JSON Schema's integer includes integer-valued floats; other values unchanged."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Strict: "7" and true are refused, as before; 7.0 is the number 7 and accepted.
Id = Annotated[StrictInt, BeforeValidator(_whole_number), Field(ge=1)]
Pixels = Annotated[StrictInt, BeforeValidator(_whole_number), Field(ge=0, le=1_000_000)]
Seconds = Annotated[float, Field(strict=True, ge=0, le=1_000_000, allow_inf_nan=False)]


def _no_default(schema: dict[str, Any]) -> None:
    """Absent is not null: the document must not claim a default the field's type refuses."""
    schema.pop("default", None)


class AppearancePatch(Strict):
    """Exactly one decision: who it is, the suggestion confirmed or rejected, or a resolution."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1,
                                                                 "maxProperties": 1})

    person_id: Id = Field(  # type: ignore[assignment]
        default=None, description="This appearance is this person", json_schema_extra=_no_default)
    accept_suggestion: StrictBool = Field(  # type: ignore[assignment]
        default=None, json_schema_extra=_no_default,
        description="true confirms the suggested person, false rejects the suggestion")
    resolution: Literal["unresolved", "not_recognisable", "blur"] = Field(  # type: ignore[assignment]
        default=None, json_schema_extra=_no_default,
        description="unresolved forgets the person; blur keeps who it is")

    @model_validator(mode="after")
    def _exactly_one(self) -> AppearancePatch:
        """One decision per request, so its meaning (and its audit event) is never ambiguous."""
        if len(self.model_fields_set) != 1:
            raise ValueError(_("Send exactly one of person_id, accept_suggestion and resolution."))
        return self


class BoxIn(Strict):
    """A box in display pixels (after orientation)."""

    x: Pixels
    y: Pixels
    w: Pixels
    h: Pixels


class AppearanceCreate(Strict):
    """A face the detector missed (box), or a person present but not detected (no box)."""

    box: BoxIn | None = None
    person_id: Id | None = None
    segments: Annotated[list[Annotated[list[Seconds], Field(min_length=2, max_length=2)]],
                        Field(max_length=1000)] | None = Field(
        default=None, description="[start_s, end_s] pairs, for videos and recordings")


class PersonMediaAppearance(BaseModel):
    """One appearance of the person in an item."""

    id: int
    kind: Literal["face", "voice"]
    resolution: Literal["unresolved", "identified", "not_recognisable", "blur"]


class PersonMediaItem(BaseModel):
    """An item the person appears in."""

    id: int
    kind: MediaKind
    status: MediaStatus
    title: str | None
    appearances: list[PersonMediaAppearance]


class PersonMediaPage(BaseModel):
    """The items a person appears in, newest first."""

    person_id: int
    items: list[PersonMediaItem]
    page: int
    per_page: int
    total: int



def _appearance_or_404(media: Media, appearance_id: int) -> Appearance:
    """The item's appearance; another item's is as unknown as a missing one."""
    appearance = db.session.get(Appearance, appearance_id) if 0 < appearance_id <= MAX_ID else None
    if appearance is None or appearance.media_id != media.id:
        raise ApiError(404, "not_found", _("This item has no appearance with this id."))
    return appearance


def _person_or_422(person_id: int) -> Person:
    """The person to tag, or a 422 naming the field."""
    person = get_person(person_id) if person_id <= MAX_ID else None
    if person is None:
        raise ApiError(422, "invalid", _("Some fields are invalid."),
                       {"person_id": _("No person with this id.")})
    return person


def _api_error(exc: TaggingError) -> ApiError:
    """A refused decision in the API's shape."""
    return ApiError(exc.status, exc.code, exc.message, {exc.field: exc.message} if exc.field else None)


def _appearance_json(appearance: Appearance) -> dict[str, Any]:
    """An appearance, JSON-ready."""
    return appearance_out(appearance).model_dump(mode="json")


@bp.get("/media/<int:media_id>/appearances/<int:appearance_id>")
@allow(*ANY_ROLE)
def get_appearance(media_id: int, appearance_id: int) -> Response:
    """One appearance of an item."""
    return jsonify(_appearance_json(_appearance_or_404(media_or_404(media_id), appearance_id)))


@bp.patch("/media/<int:media_id>/appearances/<int:appearance_id>")
@allow(*TAGGERS)
def patch_appearance(media_id: int, appearance_id: int) -> Response:
    """Tag a person, decide on the suggestion, or set the resolution."""
    appearance = _appearance_or_404(media_or_404(media_id), appearance_id)
    change = validated(AppearancePatch, json_object())
    actor = _actor()
    try:
        require_ready(appearance.media)
        if "person_id" in change.model_fields_set:
            tag_person(appearance, _person_or_422(change.person_id), actor)
        elif "accept_suggestion" in change.model_fields_set:
            (accept_suggestion if change.accept_suggestion else reject_suggestion)(appearance, actor)
        else:
            set_resolution(appearance, change.resolution, actor)
    except TaggingError as exc:
        raise _api_error(exc) from None
    db.session.commit()
    return jsonify(_appearance_json(appearance))


@bp.post("/media/<int:media_id>/appearances")
@allow(*TAGGERS)
def create_appearance(media_id: int) -> tuple[Response, int, dict[str, str]]:
    """Add a missed face (a box) or a person present but not detected (no box, a person)."""
    media = media_or_404(media_id)
    data = validated(AppearanceCreate, json_object())
    actor = _actor()
    try:
        require_ready(media)
        person = _person_or_422(data.person_id) if data.person_id is not None else None
        box = Box(data.box.x, data.box.y, data.box.w, data.box.h) if data.box else None
        appearance = add_appearance(media, box, person, actor, segments=data.segments)
    except TaggingError as exc:
        raise _api_error(exc) from None
    db.session.commit()
    location = url_for("api.get_appearance", media_id=media.id, appearance_id=appearance.id)
    return jsonify(_appearance_json(appearance)), 201, {"Location": location}


@bp.get("/people/<int:person_id>/media")
@allow(*ANY_ROLE)
def person_media(person_id: int) -> Response:
    """The items a person is tagged in, newest first, with those appearances."""
    person = _person_or_404(person_id)
    page, per_page = int_arg("page", default=1, maximum=100_000), page_size()
    ids = sa.select(Appearance.media_id).where(Appearance.person_id == person.id)
    query = sa.select(Media).where(Media.id.in_(ids))
    total = db.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = db.session.execute(query.order_by(Media.created_at.desc(), Media.id.desc())
                              .limit(per_page).offset((page - 1) * per_page)).scalars().all()
    items = [PersonMediaItem(
        id=m.id, kind=m.kind, status=m.status, title=m.title,  # type: ignore[arg-type]
        appearances=[PersonMediaAppearance(id=a.id, kind=a.kind, resolution=a.resolution)  # type: ignore[arg-type]
                     for a in m.appearances if a.person_id == person.id],
    ) for m in rows]
    return jsonify(PersonMediaPage(person_id=person.id, items=items, page=page, per_page=per_page,
                                   total=total).model_dump(mode="json"))


__all__ = ["AppearanceCreate", "AppearanceOut", "AppearancePatch", "PersonMediaPage"]
