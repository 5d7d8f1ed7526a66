"""Bearer-token authentication for the API; the API never looks at session cookies."""

from __future__ import annotations

from flask import g, request

from ..auth.tokens import user_for_token


def authenticate_bearer() -> None:
    """Put the user behind a valid `Authorization: Bearer` token on g.api_user, or nobody."""
    g.api_user = None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        g.api_user = user_for_token(token.strip())
