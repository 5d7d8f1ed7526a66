"""Turning submitted HTML forms into the same validated shapes the API uses."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from werkzeug.datastructures import MultiDict

from ..api.errors import validation_fields

PERSON_FORM_FIELDS = ("external_id", "given_name", "family_name", "birth_date", "role", "email",
                      "group", "language")
GUARDIAN_ROWS = 2
M = TypeVar("M", bound=BaseModel)


def _value(form: MultiDict[str, str], name: str) -> str | None:
    """A form value, with empty inputs meaning 'not given'."""
    value = form.get(name, "").strip()
    return value or None


def person_document(form: MultiDict[str, str], *, with_guardians: bool) -> dict[str, Any]:
    """The JSON-like document a person form describes."""
    document: dict[str, Any] = {name: _value(form, name) for name in PERSON_FORM_FIELDS}
    if document["language"] is None:
        del document["language"]  # a language cannot be cleared; absent means unchanged
    if with_guardians:
        document["guardians"] = [
            {"name": _value(form, f"guardian{i}_name") or "",
             "email": _value(form, f"guardian{i}_email") or "",
             "relation": _value(form, f"guardian{i}_relation")}
            for i in range(1, GUARDIAN_ROWS + 1)
            if _value(form, f"guardian{i}_name") or _value(form, f"guardian{i}_email")
        ]
    return document


def form_field_name(location: str) -> str:
    """The form input for an error location: guardians.0.email is input guardian1_email."""
    parts = location.split(".")
    if len(parts) == 3 and parts[0] == "guardians" and parts[1].isdigit():
        return f"guardian{int(parts[1]) + 1}_{parts[2]}"
    return location


def validate_form(
    model: type[M], document: dict[str, Any]
) -> tuple[M | None, dict[str, str]]:
    """The validated model, or the field errors to show beside the inputs."""
    try:
        return model.model_validate(document), {}
    except ValidationError as exc:
        return None, {form_field_name(k): v for k, v in validation_fields(exc).items()}
