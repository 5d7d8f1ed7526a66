"""Calling the JSON API in tests, and checking every answer against its OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Flask
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from werkzeug.test import TestResponse

from consent_registry.api.openapi import openapi_document

from conftest import bearer

SPEC = OpenAPI.from_dict(openapi_document())
Api = Callable[..., TestResponse]


def conforms(response: TestResponse, *, check_request: bool = True) -> TestResponse:
    """Assert the response (and, for valid calls, the request) matches the OpenAPI document."""
    sent = response.request
    assert sent is not None
    body = getattr(response, "sent_body", b"")
    request = MockRequest(
        "http://localhost", sent.method.lower(), sent.path, args=dict(sent.args),
        headers=dict(sent.headers), data=body,
        content_type=sent.headers.get("Content-Type", "application/json"),
    )
    if check_request:
        SPEC.validate_request(request)
    SPEC.validate_response(request, MockResponse(
        response.get_data(), status_code=response.status_code,
        content_type=response.headers.get("Content-Type", ""),
    ))
    return response


def api_caller(app: Flask, tokens: dict[str, str], default_role: str) -> Api:
    """A function that calls /api/v1 with a role's token, keeping the body for `conforms`."""
    client = app.test_client()

    def call(method: str, path: str, role: str = default_role, **kwargs: Any) -> TestResponse:
        """Send one request; JSON bodies are sent as written."""
        if "json" in kwargs:
            kwargs["data"] = json.dumps(kwargs.pop("json")).encode()
            kwargs["content_type"] = "application/json"
        headers = {**bearer(tokens[role]), **kwargs.pop("headers", {})}
        response = client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)
        response.sent_body = kwargs.get("data", b"")  # type: ignore[attr-defined]
        return response
    return call
