"""Album publishing: several photos as one Facebook post (unpublished photos, then /feed)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from flask import Flask
from PIL import Image
from test_publishing import decide, events, get, tagged_photo
from test_tagging import face, make_photo, make_video, pupil

from consent_registry.audit import SYSTEM, verify
from consent_registry.db import db
from consent_registry.media.ingest import Limits, delete_media, ingest_stream
from consent_registry.media.models import Media, get_media
from consent_registry.people.models import Person
from consent_registry.publishing.jobs import publish_job
from consent_registry.publishing.models import Publication, PublicationMedia, PublicationPerson
from consent_registry.publishing.service import (
    PublishBlocked,
    PublishRefused,
    request_album_publication,
)
from consent_registry.storage import get_storage

from api_helpers import api_caller, conforms

# The assertions below read English; the site defaults to Dutch.
PAGES_IN_ENGLISH = True


def exif_photo(app: Flask, seed: int) -> tuple[Media, Person]:
    """A ready photo whose upload carries EXIF (camera, GPS), one identified pupil with consent."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "SchoolCam"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 5.0, 0.0)}  # GPS
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    media = ingest_stream(io.BytesIO(out.getvalue()), limits=Limits.from_config(app.config),
                          storage=get_storage(), actor=SYSTEM, uploaded_by=None,
                          title="Trip").media
    media.status = "ready"
    db.session.commit()
    assert Image.open(io.BytesIO(get_storage().get(media.storage_key))).getexif()
    person = pupil(f"E{seed}", "Eve")
    face(media, person_id=person.id, resolution="identified")
    decide(person, "facebook", "granted")
    db.session.refresh(media)
    return media, person


def album_request(media: list[Media], **overrides: Any) -> Publication:
    """An album on Facebook requested by the system, committed."""
    publication = request_album_publication(media, **{"channel": "facebook", "caption": "Trip",
                                                      "attested": True, "actor": SYSTEM,
                                                      **overrides})
    db.session.commit()
    return publication


def test_two_photos_go_out_as_one_post(app: Flask, tokens: dict[str, str], graph: Any,
                                       logged_in) -> None:
    """201 live; one post attaching two unpublished photos, neither with EXIF; the proof per item."""
    first, ada = tagged_photo(app)
    second, eve = exif_photo(app, seed=2)
    api = api_caller(app, tokens, "communications")
    response = conforms(api("POST", "/publications", json={
        "media_ids": [first.id, second.id], "channel": "facebook", "caption": "School trip",
        "attest": True}))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["state"] == "live" and body["post_id"] in graph.posts
    assert response.headers["Location"].endswith(f"/publications/{body['publication_id']}")
    assert len(graph.posts) == 1
    post = graph.posts[body["post_id"]]
    assert post["message"] == "School trip" and len(post["photo_ids"]) == 2
    for photo_id in post["photo_ids"]:
        data = graph.photos[photo_id]["bytes"]
        image = Image.open(io.BytesIO(data))
        assert not image.getexif() and "exif" not in image.info
        assert graph.photos[photo_id]["post_id"] == body["post_id"]
    publication = get(body["publication_id"])
    assert publication.media_id == first.id and publication.attempts == 1
    items = publication.items
    assert [(i.media_id, i.position) for i in items] == [(first.id, 0), (second.id, 1)]
    assert all(i.rendition_key and i.rendition_sha256 for i in items)
    assert items[0].rendition_sha256 == publication.rendition_sha256
    assert {p.person_id for p in publication.people} == {ada.id, eve.id}
    decision = publication.decision
    assert decision["album"] is True and [d["media_id"] for d in decision["items"]] == [first.id, second.id]
    assert {p["person_id"] for p in decision["people"]} == {ada.id, eve.id}
    assert all(p["consent_record_ids"] for p in decision["people"])
    assert events("publication:create")[-1].details["media_ids"] == [first.id, second.id]
    shown = conforms(api("GET", f"/publications/{publication.id}", role="dpo")).get_json()
    assert shown["media_ids"] == [first.id, second.id]
    listing = conforms(api("GET", f"/publications?media_id={second.id}", role="staff")).get_json()
    assert [p["id"] for p in listing["items"]] == [publication.id]
    page = logged_in("staff").get(f"/publications/{publication.id}").get_data(as_text=True)
    assert f"/media/{first.id}" in page and f"/media/{second.id}" in page
    assert verify().ok


def test_one_blocked_photo_blocks_the_album(app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """409 with the blocked item's blockers, each naming its media_id; audited; nothing created."""
    allowed, _ada = tagged_photo(app)
    blocked, bob = tagged_photo(app, consent=None, seed=2)
    api = api_caller(app, tokens, "admin")
    response = conforms(api("POST", "/publications", json={
        "media_ids": [allowed.id, blocked.id], "channel": "facebook", "attest": True}))
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "blocked"
    assert [(b["media_id"], b["person_id"], b["reason"]) for b in error["blockers"]] == [
        (blocked.id, bob.id, "no_consent")]
    event = events("gate:blocked")[-1]
    assert event.subject_id == str(blocked.id)
    assert event.details["album_media_ids"] == [allowed.id, blocked.id]
    assert db.session.query(Publication).count() == 0 and graph.posts == {} and graph.photos == {}


def test_the_blockers_of_every_item_are_listed(app: Flask) -> None:
    """Two blocked items (and no attestation): the union of their blockers, per item."""
    first, _ada = tagged_photo(app, consent=None)
    second, _bob = tagged_photo(app, consent="refused", seed=2)
    with pytest.raises(PublishBlocked) as caught:
        album_request([first, second], attested=False)
    pairs = {(b["media_id"], b["reason"]) for b in caught.value.blockers_json()}
    assert pairs == {(first.id, "no_consent"), (first.id, "not_attested"),
                     (second.id, "refused"), (second.id, "not_attested")}
    assert len(events("gate:blocked")) == 2


def test_a_transient_feed_failure_is_retried_without_uploading_twice(app: Flask, graph: Any) -> None:
    """/feed fails past the client's retries: queued again; the next run posts once, reusing the
    two uploaded photos."""
    first, _ada = tagged_photo(app)
    second, _bob = tagged_photo(app, seed=2)
    graph.fail_next(r"/feed$", code=2, times=4)
    publication_id = album_request([first, second]).id
    publish_job(publication_id)
    publication = get(publication_id)
    assert publication.state == "queued" and publication.post_id is None
    assert publication.last_error.startswith("transient (2)")
    assert len(graph.photos) == 2 and len(publication.remote["photo_ids"]) == 2
    publish_job(publication_id)
    publication = get(publication_id)
    assert publication.state == "live" and publication.attempts == 2
    assert len(graph.posts) == 1 and len(graph.photos) == 2
    assert sorted(graph.posts[publication.post_id]["photo_ids"]) == sorted(publication.remote["photo_ids"])
    publish_job(publication_id)  # a stray duplicate run changes nothing
    assert len(graph.posts) == 1 and len(graph.photos) == 2


def test_the_gate_is_checked_again_for_every_photo(app: Flask, graph: Any) -> None:
    """The second photo's tag undone before the job: failed, blocked_at_publish, nothing sent."""
    first, _ada = tagged_photo(app)
    second, _bob = tagged_photo(app, seed=2)
    publication_id = album_request([first, second]).id
    for appearance in db.session.get(Media, second.id).appearances:
        appearance.person_id, appearance.resolution = None, "unresolved"
    db.session.commit()
    publish_job(publication_id)
    assert get(publication_id).state == "failed"
    assert events("publication:blocked_at_publish")[-1].details["reasons"] == ["unresolved"]
    assert graph.posts == {} and graph.photos == {}


def test_one_withdrawal_takes_the_whole_album_down(app: Flask, tokens: dict[str, str],
                                                   graph: Any) -> None:
    """Eve's guardian withdraws: the post and both uploaded photos are deleted."""
    first, _ada = tagged_photo(app)
    second, bob = tagged_photo(app, seed=2)
    api = api_caller(app, tokens, "communications")
    body = api("POST", "/publications", json={"media_ids": [first.id, second.id],
                                              "channel": "facebook", "attest": True}).get_json()
    assert body["state"] == "live", body
    photo_ids = graph.posts[body["post_id"]]["photo_ids"]
    decide(bob, "facebook", "withdrawn")
    publication = get(body["publication_id"])
    assert publication.state == "taken_down" and publication.takedown_reason == "withdrawn"
    assert body["post_id"] in graph.deleted and body["post_id"] not in graph.live_posts()
    assert set(photo_ids) <= set(graph.deleted)
    assert events("publication:taken_down")[-1].subject_id == str(publication.id)


def test_bad_albums_are_refused(app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """422 for 1 or 11 items, duplicates, a video, unknown ids, an item not analysed, an export
    channel, a long caption, a missing list; roles; nothing is created or sent."""
    first, _ada = tagged_photo(app)
    second, _bob = tagged_photo(app, seed=2)
    queued = make_photo(app, seed=3, status="queued")
    video = make_video()
    api = api_caller(app, tokens, "communications")
    ok = {"media_ids": [first.id, second.id], "channel": "facebook", "attest": True}
    cases = [
        ({**ok, "media_ids": [first.id]}, "invalid", "media_ids"),
        ({**ok, "media_ids": [first.id] * 11}, "invalid", "media_ids"),
        ({**ok, "media_ids": [first.id, first.id]}, "invalid", "media_ids"),
        ({**ok, "media_ids": [first.id, video.id]}, "not_publishable", "media_ids"),
        ({**ok, "media_ids": [first.id, 99999]}, "invalid", "media_ids"),
        ({**ok, "media_ids": [first.id, queued.id]}, "not_ready", "media_ids"),
        ({**ok, "media_ids": ["1", "2"]}, "invalid", "media_ids.0"),
        ({**ok, "channel": "website"}, "not_publishable", "channel"),
        ({**ok, "channel": "tiktok"}, "unknown_channel", "channel"),
        ({**ok, "caption": "x" * 2001}, "invalid", "caption"),
        ({"channel": "facebook", "attest": True}, "invalid", "media_ids"),
    ]
    for body, code, field in cases:
        response = conforms(api("POST", "/publications", json=body), check_request=False)
        assert response.status_code == 422, (body, response.get_json())
        error = response.get_json()["error"]
        assert error["code"] == code and field in error["fields"], (body, error)
    for role in ("staff", "dpo"):
        assert api("POST", "/publications", role=role, json=ok).status_code == 403
    assert app.test_client().post("/api/v1/publications", json=ok).status_code == 401
    assert db.session.query(Publication).count() == 0 and graph.posts == {}
    assert db.session.execute(sa.select(sa.func.count()).select_from(PublicationMedia)).scalar_one() == 0


def test_the_service_refuses_albums_on_export_channels(app: Flask) -> None:
    """An export is one downloadable file: albums go to Facebook only."""
    first, _ada = tagged_photo(app, channel="website")
    second, _bob = tagged_photo(app, channel="website", seed=2)
    with pytest.raises(PublishRefused) as caught:
        album_request([first, second], channel="website")
    assert caught.value.field == "channel" and caught.value.code == "not_publishable"


def test_deleting_a_photo_keeps_the_album_proof(app: Flask, graph: Any) -> None:
    """A queued album's photo cannot be deleted, even by SQL (its slot's foreign key); once the
    album is down the item row goes and the album keeps position, hash and people."""
    first, ada = tagged_photo(app)
    second, bob = tagged_photo(app, seed=2)
    publication_id = album_request([first, second]).id
    sha = second.sha256
    with pytest.raises(sa.exc.IntegrityError):
        db.session.execute(sa.delete(Media).where(Media.id == second.id))
    db.session.rollback()
    publication = get(publication_id)
    publication.state = "taken_down"
    db.session.commit()
    delete_media(get_media(second.id), actor=SYSTEM, storage=get_storage())
    publication = get(publication_id)
    assert [(i.media_id, i.media_sha256) for i in publication.items][1] == (None, sha)
    assert {p.person_id for p in db.session.query(PublicationPerson)} == {ada.id, bob.id}
    assert graph.posts == {}
