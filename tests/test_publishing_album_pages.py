"""The album form on the media list: tick ready photos, publish them together as one post."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from test_publishing import events, get, tagged_photo
from test_tagging import make_photo

from consent_registry.db import db
from consent_registry.media.models import Media
from consent_registry.publishing.models import Publication

from conftest import csrf_token

ATTEST = "I have checked that every recognisable person is tagged"


# The assertions below read English; the site defaults to Dutch.
PAGES_IN_ENGLISH = True


def titled(media: Media, title: str) -> Media:
    """The item with a title of its own, so a page can be seen to name it."""
    media.title = title
    db.session.commit()
    return media


def post_album(client: Any, media_ids: list[int], **fields: str) -> Any:
    """Post the album form as the media list sends it (the CSRF token read from that page)."""
    token = csrf_token(client, "/media/")
    data: dict[str, Any] = {"csrf_token": token, "media_ids": [str(i) for i in media_ids],
                            "channel": "facebook", "caption": "", **fields}
    return client.post("/publications/album", data=data)


def test_the_list_offers_ready_photos_to_publishers_only(app: Flask, logged_in) -> None:
    """A checkbox per ready photo, the attestation unticked, Facebook only; nothing for staff/DPO."""
    ready, _ada = tagged_photo(app)
    waiting = make_photo(app, seed=3, status="queued")
    page = logged_in("communications").get("/media/").get_data(as_text=True)
    assert 'action="/publications/album"' in page
    assert f'name="media_ids" value="{ready.id}"' in page
    assert f'value="{waiting.id}"' not in page
    assert ATTEST in page
    attest = page.split('id="album-attest"')[0].rsplit("<input", 1)[1] + page.split(
        'id="album-attest"')[1].split(">", 1)[0]
    assert "checked" not in attest
    select = page.split('id="album-channel"')[1].split("</select>", 1)[0]
    assert 'value="facebook"' in select and 'value="website"' not in select
    for role in ("staff", "dpo"):
        other = logged_in(role).get("/media/")
        html = other.get_data(as_text=True)
        assert other.status_code == 200 and f"/media/{ready.id}" in html
        assert "media_ids" not in html and "/publications/album" not in html


def test_an_album_goes_out_as_one_post(app: Flask, logged_in, graph: Any) -> None:
    """Two ticked photos, attested: redirected to the publication, live as one Facebook post."""
    first, ada = tagged_photo(app)
    second, bob = tagged_photo(app, seed=2)
    client = logged_in("communications")
    response = post_album(client, [first.id, second.id], caption="School trip", attest="yes")
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    publication_id = int(location.rstrip("/").rsplit("/", 1)[1])
    publication = get(publication_id)
    assert publication.state == "live" and publication.attested
    assert [i.media_id for i in publication.items] == [first.id, second.id]
    assert {p.person_id for p in publication.people} == {ada.id, bob.id}
    assert len(graph.posts) == 1
    post = graph.posts[publication.post_id]
    assert post["message"] == "School trip" and len(post["photo_ids"]) == 2
    page = client.get(location).get_data(as_text=True)
    assert publication.post_id in page and "Publishing has started" in page
    assert events("publication:create")[-1].details["media_ids"] == [first.id, second.id]


def test_an_unconsented_photo_blocks_the_album(app: Flask, logged_in, graph: Any) -> None:
    """409: the blocked page names the photo, the reason and the person; nothing published."""
    allowed, _ada = tagged_photo(app)
    blocked, bob = tagged_photo(app, consent=None, seed=2)
    titled(blocked, "Unconsented trip photo")
    response = post_album(logged_in("admin"), [allowed.id, blocked.id], attest="yes")
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "blocks this album" in html
    assert "Unconsented trip photo" in html and f"/media/{blocked.id}" in html
    assert "no consent" in html and bob.full_name in html
    assert f'/media/{allowed.id}"' not in html and f"/media/{allowed.id}?" not in html
    assert events("gate:blocked")[-1].subject_id == str(blocked.id)
    assert db.session.query(Publication).count() == 0 and graph.posts == {}


def test_an_unticked_attestation_blocks_the_album(app: Flask, logged_in, graph: Any) -> None:
    """The box left unticked: 409 naming not_attested for the photos; nothing published."""
    first, _ada = tagged_photo(app)
    second, _bob = tagged_photo(app, seed=2)
    response = post_album(logged_in("communications"), [first.id, second.id])
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "did not confirm that every recognisable person is tagged" in html
    assert f"/media/{first.id}" in html and f"/media/{second.id}" in html
    reasons = {tuple(e.details["reasons"]) for e in events("gate:blocked")}
    assert reasons == {("not_attested",)}
    assert db.session.query(Publication).count() == 0 and graph.posts == {}


@pytest.mark.parametrize("count", [0, 1])
def test_fewer_than_two_photos_are_refused(app: Flask, logged_in, graph: Any, count: int) -> None:
    """422 with the service's message; nothing created."""
    media, _ada = tagged_photo(app)
    response = post_album(logged_in("admin"), [media.id][:count], attest="yes")
    assert response.status_code == 422
    assert "An album has 2 to 10 photos." in response.get_data(as_text=True)
    assert db.session.query(Publication).count() == 0 and graph.posts == {}


def test_export_channels_and_unknown_items_are_refused(app: Flask, logged_in) -> None:
    """An export channel (posted by hand) and an id that is no item: 422 with a message."""
    first, _ada = tagged_photo(app, channel="website")
    second, _bob = tagged_photo(app, channel="website", seed=2)
    client = logged_in("communications")
    response = post_album(client, [first.id, second.id], channel="website", attest="yes")
    assert response.status_code == 422
    assert "Albums can only be published on Facebook" in response.get_data(as_text=True)
    response = post_album(client, [first.id, 99999], attest="yes")
    assert response.status_code == 422
    assert "No media item with id 99999." in response.get_data(as_text=True)
    token = csrf_token(client, "/media/")
    response = client.post("/publications/album", data={
        "csrf_token": token, "media_ids": [str(first.id), "x"], "channel": "facebook",
        "attest": "yes"})
    assert response.status_code == 422
    assert "Choose the photos of the album from the list." in response.get_data(as_text=True)
    assert db.session.query(Publication).count() == 0


def test_without_a_csrf_token_nothing_is_published(app: Flask, logged_in, graph: Any) -> None:
    """400 without the token; nothing created."""
    first, _ada = tagged_photo(app)
    second, _bob = tagged_photo(app, seed=2)
    response = logged_in("admin").post("/publications/album", data={
        "media_ids": [str(first.id), str(second.id)], "channel": "facebook", "attest": "yes"})
    assert response.status_code == 400
    assert db.session.query(Publication).count() == 0 and graph.posts == {}


@pytest.mark.parametrize("role", ["staff", "dpo"])
def test_staff_and_the_dpo_may_not_publish_albums(app: Flask, logged_in, graph: Any,
                                                  role: str) -> None:
    """403 for roles that do not publish, even with a valid token."""
    first, _ada = tagged_photo(app)
    second, _bob = tagged_photo(app, seed=2)
    response = post_album(logged_in(role), [first.id, second.id], attest="yes")
    assert response.status_code == 403
    assert db.session.query(Publication).count() == 0 and graph.posts == {}
