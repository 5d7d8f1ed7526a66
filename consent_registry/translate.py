"""Translation for code that also runs outside requests (imports from the command line, jobs)."""

from __future__ import annotations

from flask import has_request_context
from flask_babel import gettext


def _(message: str, **values: object) -> str:
    """The message in the request's language; as written (English) outside a request."""
    if has_request_context():
        return gettext(message, **values)
    return message % values if values else message
