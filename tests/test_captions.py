"""A caption longer than a channel takes is refused with the limit named, never cut short."""

from __future__ import annotations

import html
from typing import Any

from flask import Flask
from test_publishing import tagged_photo

from consent_registry.db import db
from consent_registry.publishing.models import Publication
from consent_registry.publishing.service import CAPTION_MAX_LENGTH

from api_helpers import api_caller
from conftest import csrf_token

# The assertions below read English; the site defaults to Dutch.
PAGES_IN_ENGLISH = True
LONG = ("Sports day at the school. " * 240)[:6000]


def test_the_publish_form_does_not_cut_captions_short(app: Flask, logged_in) -> None:
    """The browser must not silently truncate a pasted caption (maxlength did: 6,000 became 1,999)."""
    media, _person = tagged_photo(app)
    page = logged_in("communications").get(f"/media/{media.id}").get_data(as_text=True)
    textarea = page.split('id="publish-caption"', 1)[1].split(">", 1)[0]
    assert "maxlength" not in textarea


def test_a_long_caption_is_refused_with_the_limit_and_the_form_keeps_it(
        app: Flask, logged_in, graph: Any) -> None:
    """422 naming the limit and the channel; the form comes back holding all 6,000 characters."""
    media, _person = tagged_photo(app)
    client = logged_in("communications")
    token = csrf_token(client, f"/media/{media.id}")
    response = client.post(f"/publications/media/{media.id}", data={
        "csrf_token": token, "channel": "facebook", "caption": LONG, "attest": "yes"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert (f"The caption has 6000 characters; The school&#39;s Facebook page takes at most "
            f"{CAPTION_MAX_LENGTH}.") in page
    typed = page.split('id="publish-caption"', 1)[1].split(">", 1)[1].split("</textarea>", 1)[0]
    assert html.unescape(typed) == LONG
    assert 'action="/publications/media/' in page  # a form to send it again, shortened
    assert db.session.query(Publication).count() == 0 and graph.posts == {}


def test_the_api_answers_422_naming_the_limit(app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """Over the limit: 422 with the caption's field naming the number; at the limit: published."""
    media, _person = tagged_photo(app)
    api = api_caller(app, tokens, "communications")
    response = api("POST", f"/media/{media.id}/publish",
                   json={"channel": "facebook", "caption": LONG, "attest": True})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert str(CAPTION_MAX_LENGTH) in error["fields"]["caption"]
    assert db.session.query(Publication).count() == 0
    fits = "x" * CAPTION_MAX_LENGTH
    response = api("POST", f"/media/{media.id}/publish",
                   json={"channel": "facebook", "caption": fits, "attest": True})
    assert response.status_code == 201
    assert db.session.get(Publication, response.get_json()["publication_id"]).caption == fits
