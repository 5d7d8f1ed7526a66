"""Nothing live is deleted out from under its proof; destructive actions ask first (issue 12.3).

Deleting an item that is queued or live on a channel (alone or in an album) is refused with 409
naming the publications, by the API and the page, until they are taken down; the slot's foreign
key refuses it even when a publication is asked for after the check. Every destructive action
asks on a page of its own, with a button styled apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from test_publishing import events, get, tagged_photo
from test_publishing_albums import album_request

from consent_registry.db import db
from consent_registry.media.models import Media
from consent_registry.publishing import slots

from api_helpers import api_caller, conforms
from conftest import csrf_token

PAGES_IN_ENGLISH = True
PUBLISH = {"channel": "facebook", "attest": True}
STYLE = Path(__file__).resolve().parents[1] / "consent_registry" / "static" / "style.css"


def media_ids() -> list[int]:
    """The ids of the items still stored."""
    db.session.expire_all()
    return list(db.session.execute(sa.select(Media.id).order_by(Media.id)).scalars())


def test_deleting_a_live_item_is_refused_until_it_is_taken_down(
        app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """409 still_published naming the live post; nothing deleted; after the takedown: 204."""
    media, _person = tagged_photo(app)
    media_id = media.id
    api = api_caller(app, tokens, "communications")
    published = api("POST", f"/media/{media_id}/publish", json=PUBLISH).get_json()
    refused = conforms(api("DELETE", f"/media/{media_id}"))
    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert error["code"] == "still_published"
    assert [(p["id"], p["state"], p["post_id"]) for p in error["publications"]] == [
        (published["publication_id"], "live", published["post_id"])]
    assert media_ids() == [media_id] and events("media:delete") == []
    assert conforms(api("DELETE", f"/publications/{published['publication_id']}")).status_code == 202
    assert get(published["publication_id"]).state == "taken_down"
    assert conforms(api("DELETE", f"/media/{media_id}")).status_code == 204
    assert media_ids() == [] and get(published["publication_id"]).media_id is None  # proof kept


def test_a_photo_of_a_queued_album_is_not_deleted(app: Flask, tokens: dict[str, str],
                                                  graph: Any) -> None:
    """An album holds each of its photos: the queued album is named."""
    first, _ada = tagged_photo(app)
    second, _bob = tagged_photo(app, seed=2)
    album = album_request([first, second])
    refused = conforms(api_caller(app, tokens, "admin")("DELETE", f"/media/{second.id}"))
    assert refused.status_code == 409
    assert [p["id"] for p in refused.get_json()["error"]["publications"]] == [album.id]
    assert len(media_ids()) == 2


def test_the_database_refuses_a_delete_that_passed_the_check(
        app: Flask, tokens: dict[str, str], graph: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A publication asked for after the check (a race): the slot's foreign key keeps the item."""
    media, _person = tagged_photo(app)
    api = api_caller(app, tokens, "communications")
    assert api("POST", f"/media/{media.id}/publish", json=PUBLISH).status_code == 201
    original = slots.active_publications
    monkeypatch.setattr(slots, "active_publications", lambda *a, **k: [])
    refused = api("DELETE", f"/media/{media.id}")
    monkeypatch.setattr(slots, "active_publications", original)
    assert refused.status_code == 409, refused.get_json()
    assert refused.get_json()["error"]["code"] == "still_published"
    assert media_ids() == [media.id] and events("media:delete") == []


def test_the_page_refuses_to_delete_a_live_item_and_names_its_publications(
        app: Flask, logged_in, tokens: dict[str, str], graph: Any) -> None:
    """The confirmation page shows why not (no button); a confirmed POST anyway answers 409."""
    media, _person = tagged_photo(app)
    published = api_caller(app, tokens, "admin")(
        "POST", f"/media/{media.id}/publish", json=PUBLISH).get_json()
    client = logged_in("communications")
    asked = client.get(f"/media/{media.id}/delete")
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'id="confirm-refused"' in page
    assert 'id="confirm-form"' not in page
    assert f"/publications/{published['publication_id']}" in page
    assert f"https://www.facebook.com/{published['post_id']}" in page
    token = csrf_token(client, f"/media/{media.id}")
    response = client.post(f"/media/{media.id}/delete",
                           data={"csrf_token": token, "confirmed": "yes"})
    assert response.status_code == 409
    assert f"/publications/{published['publication_id']}" in response.get_data(as_text=True)
    assert media_ids() == [media.id]


def test_voice_matching_off_asks_on_a_page_of_its_own(app: Flask, logged_in) -> None:
    """Switching voice matching off shows what is lost first; only the page's button switches."""
    from consent_registry.biometrics import service

    admin = logged_in("admin")
    token = csrf_token(admin, "/settings/voice-matching")
    assert admin.post("/settings/voice-matching", data={
        "enabled": "1", "dpia_reference": "DPIA-2026-1", "csrf_token": token}).status_code == 303
    asked = admin.post("/settings/voice-matching", data={"enabled": "0", "csrf_token": token})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and service.voice_matching_enabled()
    assert 'class="danger"' in page and "deletes every reference voice" in page
    done = admin.post("/settings/voice-matching", data={
        "enabled": "0", "confirm": "1", "confirmed": "yes", "csrf_token": token})
    assert done.status_code == 303 and not service.voice_matching_enabled()


def test_the_danger_style_sets_destructive_buttons_apart() -> None:
    """A distinct style for destructive buttons, not the main action's colours."""
    css = STYLE.read_text()
    assert "button.danger" in css and ".button.danger" in css
    rule = css[css.index("button.danger"):]
    assert "var(--bad)" in rule[:rule.index("}")]
