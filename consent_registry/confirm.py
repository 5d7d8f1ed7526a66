"""Confirmation pages for destructive actions: each asks on a page of its own, without JavaScript.

The action's button leads to a page saying what will be lost, with a POST form (CSRF-protected)
carrying `confirmed=yes` and a button styled apart (`danger`). A POST without it comes back to
that page, so a stray form, a script or a double click never destroys anything unasked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from flask import render_template, request

CONFIRMED_FIELD = "confirmed"


def confirmed() -> bool:
    """Whether the request comes from a confirmation page's button."""
    return request.form.get(CONFIRMED_FIELD) == "yes"


def confirmation_page(*, title: str, explanation: Sequence[str], action: str, button: str,
                      cancel: str, fields: Iterable[tuple[str, str]] = (),
                      holders: Sequence[Any] = (), refusal: str | None = None,
                      status: int = 200) -> tuple[str, int]:
    """The page that asks before a destructive action; with `holders`, why it cannot be done now."""
    return render_template("confirm.html", title=title, explanation=list(explanation),
                           action=action, button=button, cancel=cancel, fields=list(fields),
                           holders=list(holders), refusal=refusal,
                           confirmed_field=CONFIRMED_FIELD), status
