"""An item is published once per channel unless a human explicitly publishes it again (issue 12.2).

The API refuses a second publication with 409 already_published naming the first; `again: true`
publishes it again. The database's slots, not a check before the insert, make racing requests
produce one publication. An Idempotency-Key answers the same publication. Albums follow the same
rule per photo. The media page shows where the item is live before the publish form, and the
page's form creates nothing new when it is sent twice.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from test_publishing import decide, get, tagged_photo
from test_publishing_albums import album_request

from consent_registry.db import db
from consent_registry.publishing import service as publishing_service
from consent_registry.publishing import slots
from consent_registry.publishing.models import IdempotencyKey, Publication, PublicationSlot

from api_helpers import api_caller, conforms
from conftest import bearer

PAGES_IN_ENGLISH = True
PUBLISH = {"channel": "facebook", "caption": "Sports day", "attest": True}


def publications() -> list[Publication]:
    """Every publication, oldest first, re-read from the database."""
    db.session.expire_all()
    return list(db.session.execute(sa.select(Publication).order_by(Publication.id)).scalars())


def test_a_second_publish_on_the_channel_is_refused_naming_the_live_post(
        app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """409 already_published with id, channel, state, since and the post link; `again` posts."""
    media, _person = tagged_photo(app)
    api = api_caller(app, tokens, "communications")
    first = conforms(api("POST", f"/media/{media.id}/publish", json=PUBLISH))
    assert first.status_code == 201, first.get_json()
    first_id, post_id = first.get_json()["publication_id"], first.get_json()["post_id"]

    second = conforms(api("POST", f"/media/{media.id}/publish", json=PUBLISH))
    assert second.status_code == 409, second.get_json()
    error = second.get_json()["error"]
    assert error["code"] == "already_published"
    [holder] = error["publications"]
    assert (holder["id"], holder["channel"], holder["state"], holder["post_id"]) == (
        first_id, "facebook", "live", post_id)
    assert holder["post_url"] == f"https://www.facebook.com/{post_id}"
    assert holder["since"] == get(first_id).published_at.isoformat()
    assert list(graph.live_posts()) == [post_id] and len(publications()) == 1

    again = conforms(api("POST", f"/media/{media.id}/publish", json={**PUBLISH, "again": True}))
    assert again.status_code == 201, again.get_json()
    assert len(graph.live_posts()) == 2 and len(publications()) == 2
    # A third without `again` names both live publications.
    third = conforms(api("POST", f"/media/{media.id}/publish", json=PUBLISH)).get_json()
    assert [p["id"] for p in third["error"]["publications"]] == [
        first_id, again.get_json()["publication_id"]]


def test_another_channel_and_a_taken_down_post_need_no_again(
        app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """The rule is per channel; once the post is down the item may be published there again."""
    media, person = tagged_photo(app)
    decide(person, "website", "granted")
    api = api_caller(app, tokens, "admin")
    first = api("POST", f"/media/{media.id}/publish", json=PUBLISH).get_json()
    website = api("POST", f"/media/{media.id}/publish", json={**PUBLISH, "channel": "website"})
    assert website.status_code == 201, website.get_json()
    assert conforms(api("DELETE", f"/publications/{first['publication_id']}")).status_code == 202
    assert get(first["publication_id"]).state == "taken_down"
    again = api("POST", f"/media/{media.id}/publish", json=PUBLISH)
    assert again.status_code == 201, again.get_json()
    # The stale slot of the taken-down post made way: one slot per item and channel now.
    assert sorted((s.channel, s.number) for s in db.session.query(PublicationSlot)) == [
        ("facebook", 0), ("website", 0)]


def test_a_post_that_may_be_live_after_an_unanswered_last_step_keeps_its_place(
        app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """Failed 'uncertain' (Facebook did not answer the post): a plain publish is refused, as
    for a live post, until a person who checked the Page says `again`."""
    media, _person = tagged_photo(app)
    api = api_caller(app, tokens, "communications")
    graph.fail_next(r"/feed$", code=None, http_status=504)  # one photo is posted through /feed
    first = api("POST", f"/media/{media.id}/publish", json=PUBLISH).get_json()
    uncertain = get(first["publication_id"])
    assert uncertain.state == "failed" and uncertain.last_error.startswith("uncertain")

    second = conforms(api("POST", f"/media/{media.id}/publish", json=PUBLISH))
    assert second.status_code == 409, second.get_json()
    [holder] = second.get_json()["error"]["publications"]
    assert (holder["id"], holder["state"]) == (uncertain.id, "failed")
    assert len(publications()) == 1
    again = api("POST", f"/media/{media.id}/publish", json={**PUBLISH, "again": True})
    assert again.status_code == 201, again.get_json()
    assert len(publications()) == 2


def test_the_database_refuses_a_second_publication_that_passed_the_check(
        app: Flask, tokens: dict[str, str], graph: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that saw nothing live (as a racing one does) still fails on the slot constraint."""
    media, _person = tagged_photo(app)
    api = api_caller(app, tokens, "communications")
    assert api("POST", f"/media/{media.id}/publish", json=PUBLISH).status_code == 201
    monkeypatch.setattr(publishing_service, "refuse_if_active", lambda *a, **k: None)
    raced = conforms(api("POST", f"/media/{media.id}/publish", json=PUBLISH))
    assert raced.status_code == 409 and raced.get_json()["error"]["code"] == "already_published"
    assert len(publications()) == 1 and len(graph.live_posts()) == 1


def _race(app: Flask, backend: str, monkeypatch: pytest.MonkeyPatch,
          send: Callable[[], Any], count: int = 2) -> list[Any]:
    """Send `count` requests from threads at once; on PostgreSQL all pass the check before any
    inserts (SQLite's write lock lets one transaction in at a time, so there they queue)."""
    if backend == "postgresql":
        barrier = threading.Barrier(count, timeout=30)
        checked = slots.refuse_if_active

        def check_then_wait(*args: Any, **kwargs: Any) -> None:
            checked(*args, **kwargs)
            barrier.wait()
        monkeypatch.setattr(publishing_service, "refuse_if_active", check_then_wait)
    db.session.commit()  # release this test's transaction (SQLite: its write lock)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        results[index] = send()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_parallel_publishes_make_one_publication(
        app: Flask, backend: str, tokens: dict[str, str], graph: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two requests at once: one 201, one 409 already_published; one post on the fake Graph."""
    media, _person = tagged_photo(app)
    media_id = media.id

    def send() -> tuple[int, dict[str, Any]]:
        response = app.test_client().post(f"/api/v1/media/{media_id}/publish", json=PUBLISH,
                                          headers=bearer(tokens["communications"]))
        return response.status_code, response.get_json()
    results = _race(app, backend, monkeypatch, send)
    assert sorted(status for status, _body in results) == [201, 409], results
    [(_status, refused)] = [r for r in results if r[0] == 409]
    [(_status, created)] = [r for r in results if r[0] == 201]
    assert refused["error"]["code"] == "already_published"
    assert [p["id"] for p in refused["error"]["publications"]] == [created["publication_id"]]
    assert len(publications()) == 1 and len(graph.live_posts()) == 1


def test_an_idempotency_key_answers_the_same_publication(
        app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """Same key and body: 201 with the same publication, nothing new; another body: 422."""
    media, _person = tagged_photo(app)
    api = api_caller(app, tokens, "communications")
    key = {"Idempotency-Key": "3f0c6e1a-publish-once"}
    first = conforms(api("POST", f"/media/{media.id}/publish", json=PUBLISH, headers=key))
    repeated = conforms(api("POST", f"/media/{media.id}/publish", json=PUBLISH, headers=key))
    assert (first.status_code, repeated.status_code) == (201, 201)
    assert repeated.get_json() == first.get_json()
    assert repeated.headers["Location"] == first.headers["Location"]
    assert len(publications()) == 1 and len(graph.live_posts()) == 1
    other = conforms(api("POST", f"/media/{media.id}/publish", headers=key,
                         json={**PUBLISH, "caption": "Another caption", "again": True}))
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    # The key is per user: the admin's same key is a request of its own (here: already live).
    admins = conforms(api("POST", f"/media/{media.id}/publish", role="admin", json=PUBLISH,
                          headers=key))
    assert admins.get_json()["error"]["code"] == "already_published"
    bad = conforms(api("POST", f"/media/{media.id}/publish", json=PUBLISH,
                       headers={"Idempotency-Key": "x" * 256}), check_request=False)
    assert bad.status_code == 422 and "Idempotency-Key" in bad.get_json()["error"]["fields"]
    assert db.session.query(IdempotencyKey).count() == 1 and len(publications()) == 1


def test_parallel_requests_with_one_key_answer_one_publication(
        app: Flask, backend: str, tokens: dict[str, str], graph: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A retry racing the first request: both 201 with the same publication, one post."""
    media, _person = tagged_photo(app)
    media_id = media.id

    def send() -> tuple[int, dict[str, Any]]:
        response = app.test_client().post(
            f"/api/v1/media/{media_id}/publish", json=PUBLISH,
            headers={**bearer(tokens["communications"]), "Idempotency-Key": "retry-1"})
        return response.status_code, response.get_json()
    results = _race(app, backend, monkeypatch, send)
    assert [status for status, _body in results] == [201, 201], results
    assert len({body["publication_id"] for _status, body in results}) == 1
    assert len(publications()) == 1 and len(graph.live_posts()) == 1


def test_albums_follow_the_rule_per_photo(app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """A photo live alone refuses an album with it, and an album's photo refuses it alone."""
    first, _ada = tagged_photo(app)
    second, _bob = tagged_photo(app, seed=2)
    third, _cas = tagged_photo(app, seed=3)
    api = api_caller(app, tokens, "communications")
    alone = api("POST", f"/media/{first.id}/publish", json=PUBLISH).get_json()
    album = {**PUBLISH, "media_ids": [first.id, second.id]}
    refused = conforms(api("POST", "/publications", json=album))
    assert refused.status_code == 409
    assert [p["id"] for p in refused.get_json()["error"]["publications"]] == [
        alone["publication_id"]]
    assert len(publications()) == 1

    both = album_request([second, third])
    single = conforms(api("POST", f"/media/{third.id}/publish", json=PUBLISH)).get_json()
    assert single["error"]["code"] == "already_published"
    [holder] = single["error"]["publications"]
    assert holder["id"] == both.id and holder["media_ids"] == [second.id, third.id]
    again = conforms(api("POST", "/publications", json={**album, "again": True}))
    assert again.status_code == 201, again.get_json()
    assert len(publications()) == 3  # the album by the system is queued, not yet posted


# --- the pages -------------------------------------------------------------------------------------

def _form(page: str) -> dict[str, str]:
    """The hidden fields of the first publish form on a page."""
    return dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', page))


def test_the_media_page_shows_where_the_item_is_live_before_the_publish_form(
        app: Flask, logged_in, graph: Any) -> None:
    """Channel, since when and the post's link, above the form."""
    media, _person = tagged_photo(app)
    client = logged_in("communications")
    assert 'id="live"' not in client.get(f"/media/{media.id}").get_data(as_text=True)
    form = _form(client.get(f"/media/{media.id}").get_data(as_text=True))
    sent = client.post(f"/publications/media/{media.id}", data={
        **form, "channel": "facebook", "attest": "yes"})
    assert sent.status_code == 302
    [publication] = publications()
    page = client.get(f"/media/{media.id}").get_data(as_text=True)
    assert 'id="live"' in page and page.index('id="live"') < page.index('id="publish"')
    live = page[page.index('id="live"'):page.index('id="publish"')]
    assert f"https://www.facebook.com/{publication.post_id}" in live
    assert "Facebook" in live and f"/publications/{publication.id}" in live


def test_the_page_form_sent_twice_creates_one_publication_and_asks_before_again(
        app: Flask, logged_in, graph: Any) -> None:
    """The same form twice (double click): one publication; a fresh form: 409 with the live post
    and a separate confirmation, which publishes again."""
    media, _person = tagged_photo(app)
    client = logged_in("communications")
    form = {**_form(client.get(f"/media/{media.id}").get_data(as_text=True)),
            "channel": "facebook", "attest": "yes", "caption": "Trip"}
    assert form["idempotency_key"]
    first = client.post(f"/publications/media/{media.id}", data=form)
    twice = client.post(f"/publications/media/{media.id}", data=form)
    assert first.status_code == twice.status_code == 302
    assert first.headers["Location"] == twice.headers["Location"]
    assert len(publications()) == 1 and len(graph.live_posts()) == 1

    fresh = {**_form(client.get(f"/media/{media.id}").get_data(as_text=True)),
             "channel": "facebook", "attest": "yes", "caption": "Trip"}
    assert fresh["idempotency_key"] != form["idempotency_key"]
    refused = client.post(f"/publications/media/{media.id}", data=fresh)
    assert refused.status_code == 409
    page = refused.get_data(as_text=True)
    [publication] = publications()
    assert f"https://www.facebook.com/{publication.post_id}" in page
    confirm = _form(page[page.index('id="publish-again"'):])
    assert confirm["again"] == "yes" and confirm["caption"] == "Trip"
    assert 'class="danger"' in page
    again = client.post(f"/publications/media/{media.id}", data=confirm)
    assert again.status_code == 302
    assert len(publications()) == 2 and len(graph.live_posts()) == 2


def test_the_album_form_refuses_a_live_photo_and_asks_before_again(
        app: Flask, logged_in, graph: Any) -> None:
    """An album with a photo live on the channel: 409 naming it, a confirmation with every photo."""
    first, _ada = tagged_photo(app)
    second, _bob = tagged_photo(app, seed=2)
    client = logged_in("communications")
    single = {**_form(client.get(f"/media/{first.id}").get_data(as_text=True)),
              "channel": "facebook", "attest": "yes"}
    assert client.post(f"/publications/media/{first.id}", data=single).status_code == 302
    listing = client.get("/media/?status=ready").get_data(as_text=True)
    album = {**_form(listing), "channel": "facebook", "attest": "yes", "caption": "Trip",
             "media_ids": [str(first.id), str(second.id)]}
    refused = client.post("/publications/album", data=album)
    assert refused.status_code == 409
    page = refused.get_data(as_text=True)
    confirm = page[page.index('id="publish-again"'):]
    assert re.findall(r'name="media_ids" value="(\d+)"', confirm) == [str(first.id), str(second.id)]
    assert len(publications()) == 1
    again = {**_form(confirm), "media_ids": [str(first.id), str(second.id)]}
    assert again["again"] == "yes"
    assert client.post("/publications/album", data=again).status_code == 302
    assert len(publications()) == 2 and len(graph.live_posts()) == 2
