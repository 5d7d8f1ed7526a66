"""The publish form on the media page, the publications list and a publication's page."""

from __future__ import annotations

from typing import Any

from flask import Flask
from test_publishing import events, get, tagged_photo

from consent_registry.db import db
from consent_registry.publishing.models import Publication

from conftest import csrf_token

# The assertions below read English; the site defaults to Dutch.
PAGES_IN_ENGLISH = True


def test_the_media_page_has_an_unticked_attestation(app: Flask, logged_in) -> None:
    """Publishers see the form with the checkbox unticked; staff and the DPO do not see it."""
    media, _person = tagged_photo(app)
    page = logged_in("communications").get(f"/media/{media.id}").get_data(as_text=True)
    assert "I have checked that every recognisable person is tagged" in page
    checkbox = page.split('id="publish-attest"')[0].rsplit("<input", 1)[1] + page.split(
        'id="publish-attest"')[1].split(">", 1)[0]
    assert "checked" not in checkbox
    for role in ("staff", "dpo"):
        assert "publish-attest" not in logged_in(role).get(f"/media/{media.id}").get_data(as_text=True)


def test_publishing_without_attesting_shows_the_blockers(app: Flask, logged_in, graph: Any) -> None:
    """The box left unticked: 409 page naming the reason; nothing published."""
    media, _person = tagged_photo(app, consent=None)
    client = logged_in("communications")
    token = csrf_token(client, f"/media/{media.id}")
    response = client.post(f"/publications/media/{media.id}",
                           data={"csrf_token": token, "channel": "facebook", "caption": "Hi"})
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "did not confirm" in html and "Ada Jansen" in html and "#appearance-" in html
    assert db.session.query(Publication).count() == 0 and graph.posts == {}


def test_publishing_from_the_page_shows_progress_and_proof(app: Flask, logged_in,
                                                           graph: Any) -> None:
    """Ticked: redirected to the publication, live with its post id; the proof lists the person."""
    media, person = tagged_photo(app)
    client = logged_in("communications")
    token = csrf_token(client, f"/media/{media.id}")
    response = client.post(f"/publications/media/{media.id}", data={
        "csrf_token": token, "channel": "facebook", "caption": "Sports day", "attest": "yes"})
    assert response.status_code == 302
    location = response.headers["Location"]
    publication_id = int(location.rstrip("/").rsplit("/", 1)[1])
    page = client.get(location).get_data(as_text=True)
    publication = get(publication_id)
    assert publication.state == "live" and publication.post_id in page
    record_id = publication.decision["people"][0]["consent_record_ids"][0]
    assert person.full_name in page and f"#{record_id}" in page
    dpo_page = logged_in("dpo").get(location).get_data(as_text=True)
    assert "Proof of consent" in dpo_page and "Take down" not in dpo_page
    listing = logged_in("staff").get("/publications/?state=live").get_data(as_text=True)
    assert f"#{publication_id}" in listing


def test_take_down_from_the_page(app: Flask, logged_in, graph: Any) -> None:
    """The button asks for a takedown; the post is deleted."""
    media, _person = tagged_photo(app)
    client = logged_in("admin")
    token = csrf_token(client, f"/media/{media.id}")
    response = client.post(f"/publications/media/{media.id}", data={
        "csrf_token": token, "channel": "facebook", "attest": "yes"})
    publication_id = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    post_id = get(publication_id).post_id
    page = client.get(f"/publications/{publication_id}").get_data(as_text=True)
    assert f'href="/publications/{publication_id}/takedown"' in page  # a link to ask, not a form
    asked = client.get(f"/publications/{publication_id}/takedown").get_data(as_text=True)
    assert 'class="danger"' in asked and 'name="confirmed" value="yes"' in asked
    response = client.post(f"/publications/{publication_id}/takedown", data={"csrf_token": token})
    assert response.status_code == 303  # unconfirmed: back to the question, nothing taken down
    assert get(publication_id).state == "live" and graph.deleted == []
    response = client.post(f"/publications/{publication_id}/takedown",
                           data={"csrf_token": token, "confirmed": "yes"})
    assert response.status_code == 302
    assert get(publication_id).state == "taken_down" and post_id in graph.deleted
    assert events("publication:takedown_requested")[-1].details["reason"] == "by_staff"


def test_unknown_publications_and_media_are_404(app: Flask, logged_in) -> None:
    """Detail, download and publish of unknown ids."""
    client = logged_in("admin")
    assert client.get("/publications/99999").status_code == 404
    assert client.get("/publications/99999/download").status_code == 404
    token = csrf_token(client, "/publications/")
    assert client.post("/publications/media/99999", data={"csrf_token": token}).status_code == 404
