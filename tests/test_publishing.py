"""Publishing: the service, the jobs (against the fake Graph API), takedowns and the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from test_tagging import face, make_photo, pupil

from consent_registry.audit import SYSTEM, Actor, AuditEvent, verify
from consent_registry.consent.service import record_decision
from consent_registry.db import db
from consent_registry.media.models import Media
from consent_registry.people.models import Person
from consent_registry.publishing import jobs as publishing_jobs
from consent_registry.publishing.jobs import (
    backoff,
    enqueue_after_commit,
    publish_job,
    stops_publishing,
    sweep_publications,
)
from consent_registry.publishing.models import Publication, PublicationPerson
from consent_registry.publishing.service import PublishBlocked, request_publication
from consent_registry.publishing.takedown import takedown_job, takedowns_for_lapsed

from api_helpers import api_caller, conforms

# The assertions below read English; the site defaults to Dutch.
PAGES_IN_ENGLISH = True


def events(action: str) -> list[AuditEvent]:
    """Audit events with this action, oldest first."""
    return list(db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).scalars())


def decide(person: Person, channel: str, decision: str, at: datetime | None = None) -> None:
    """A guardian's decision on paper, committed."""
    record_decision(person=person, channel=channel, decision=decision, decider_kind="guardian",
                    guardian_id=person.guardian_links[0].guardian_id, method="paper",
                    actor=SYSTEM, at=at)
    db.session.commit()


def tagged_photo(app: Flask, *, channel: str = "facebook", consent: str | None = "granted",
                 seed: int = 1) -> tuple[Media, Person]:
    """A ready photo with one identified pupil, whose guardian decided for the channel."""
    media = make_photo(app, seed=seed)
    person = pupil(f"P{seed}", "Ada")
    face(media, person_id=person.id, resolution="identified")
    if consent:
        decide(person, channel, consent)
    db.session.refresh(media)
    return media, person


def get(publication_id: int) -> Publication:
    """A publication re-read from the database."""
    db.session.expire_all()
    publication = db.session.get(Publication, publication_id)
    assert publication is not None
    return publication


# --- rules -----------------------------------------------------------------------------------------

def test_backoff_doubles_from_thirty_seconds_up_to_an_hour() -> None:
    """30, 60, 120 s ... at most 3600; a longer Retry-After wins."""
    assert [backoff(n) for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff(20) == 3600
    assert backoff(1, retry_after=300) == 300


def test_stopping_errors_are_token_and_permission_ones() -> None:
    """Only auth and permission errors stop publishing until an admin acts."""
    assert stops_publishing("auth (190): token expired")
    assert stops_publishing("permission (200): missing")
    assert not stops_publishing("transient (1): try again")
    assert not stops_publishing(None)


def test_jobs_queued_in_a_transaction_wait_for_its_commit_and_vanish_on_rollback(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """enqueue_after_commit never commits the caller's work early."""
    ran: list[int] = []
    monkeypatch.setattr(publishing_jobs, "enqueue", lambda job, *args: ran.append(args[0]))
    db.session.execute(sa.select(1))  # inside a transaction, as callers are
    enqueue_after_commit(publish_job, 1)
    assert ran == []
    db.session.rollback()
    db.session.commit()
    assert ran == []
    db.session.execute(sa.select(1))
    enqueue_after_commit(publish_job, 2)
    db.session.commit()
    assert ran == [2]


# --- the service ------------------------------------------------------------------------------------

def test_an_allowed_request_keeps_the_proof(app: Flask) -> None:
    """Queued, export connector, decision with consent record ids and evaluated_at, people rows."""
    media, person = tagged_photo(app, channel="website")
    publication = request_publication(media, channel="website", caption="Sports day",
                                      attested=True, actor=SYSTEM)
    db.session.commit()
    assert publication.state == "queued" and publication.connector == "export"
    assert publication.media_sha256 == media.sha256 and publication.attested
    people = publication.decision["people"]
    assert [p["person_id"] for p in people] == [person.id]
    assert people[0]["consent_record_ids"] and people[0]["state"] == "granted"
    assert people[0]["appearance_ids"] and publication.decision["evaluated_at"]
    assert [p.person_id for p in publication.people] == [person.id]
    assert events("publication:create")[-1].details["person_ids"] == [person.id]


def test_a_blocked_request_is_audited_without_names(app: Flask) -> None:
    """gate:blocked with the channel and reasons; nothing is created."""
    media, _person = tagged_photo(app, consent=None)
    with pytest.raises(PublishBlocked) as caught:
        request_publication(media, channel="facebook", caption=None, attested=False, actor=SYSTEM)
    db.session.commit()
    reasons = {b.reason for b in caught.value.decision.blockers}
    assert reasons == {"no_consent", "not_attested"}
    event = events("gate:blocked")[-1]
    assert event.details["channel"] == "facebook"
    assert event.details["reasons"] == ["no_consent", "not_attested"]
    assert "Ada" not in str(event.details)
    assert db.session.query(Publication).count() == 0


# --- the API and Facebook ---------------------------------------------------------------------------

def test_publish_a_photo_on_facebook(app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """201 with the post id; the fake holds one post with one photo; audited; chain intact."""
    media, person = tagged_photo(app)
    api = api_caller(app, tokens, "communications")
    response = conforms(api("POST", f"/media/{media.id}/publish",
                            json={"channel": "facebook", "caption": "Sports day", "attest": True}))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["state"] == "live" and body["post_id"] in graph.posts
    post = graph.posts[body["post_id"]]
    assert post["message"] == "Sports day" and len(post["photo_ids"]) == 1
    publication = get(body["publication_id"])
    assert publication.rendition_key and publication.rendition_sha256
    assert publication.published_at is not None and publication.attempts == 1
    assert [e.details["post_id"] for e in events("publication:live")] == [body["post_id"]]
    shown = conforms(api("GET", f"/publications/{publication.id}", role="dpo")).get_json()
    assert shown["decision"]["people"][0]["person_id"] == person.id
    listing = conforms(api("GET", "/publications?state=live&channel=facebook", role="staff"))
    assert [p["id"] for p in listing.get_json()["items"]] == [publication.id]
    assert verify().ok


def test_publish_answers_409_with_the_blockers(app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """No consent, attest false: 409 blocked, each blocker listed; nothing sent."""
    media, person = tagged_photo(app, consent=None)
    api = api_caller(app, tokens, "admin")
    response = conforms(api("POST", f"/media/{media.id}/publish",
                            json={"channel": "facebook", "attest": False}))
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "blocked"
    assert {(b["person_id"], b["reason"]) for b in error["blockers"]} == {
        (person.id, "no_consent"), (None, "not_attested")}
    assert graph.posts == {} and len(events("gate:blocked")) == 1


def test_publish_refuses_bad_input(app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """Unknown item 404, unknown channel / audio on Facebook / long caption / bad types 422."""
    media, _person = tagged_photo(app)
    audio = Media(kind="audio", status="ready", sha256="a" * 64, storage_key="media/none",
                  content_type="audio/mpeg", size_bytes=1, voices_analysed=True)
    db.session.add(audio)
    db.session.commit()
    api = api_caller(app, tokens, "communications")
    ok = {"channel": "facebook", "attest": True}
    assert conforms(api("POST", "/media/99999/publish", json=ok)).status_code == 404
    cases = [
        ({"channel": "tiktok", "attest": True}, "channel"),
        ({**ok, "caption": "x" * 2001}, "caption"),
        ({**ok, "attest": "yes"}, "attest"),
        ({**ok, "extra": 1}, "extra"),
        ({"attest": True}, "channel"),
    ]
    for body, field in cases:
        response = api("POST", f"/media/{media.id}/publish", json=body)
        assert response.status_code == 422, body
        assert field in response.get_json()["error"]["fields"], body
    response = conforms(api("POST", f"/media/{audio.id}/publish", json=ok))
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "not_publishable"
    assert conforms(api("POST", f"/media/{media.id}/publish", data=b"[1]",
                        content_type="application/json"), check_request=False).status_code == 400
    for role in ("staff", "dpo"):
        assert api("POST", f"/media/{media.id}/publish", role=role, json=ok).status_code == 403
    assert db.session.query(Publication).count() == 0 and graph.posts == {}


def test_an_item_not_analysed_is_blocked(app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """A queued photo: 409 not_analysed."""
    media = make_photo(app, status="queued")
    api = api_caller(app, tokens, "communications")
    response = api("POST", f"/media/{media.id}/publish", json={"channel": "facebook", "attest": True})
    assert response.status_code == 409
    assert [b["reason"] for b in response.get_json()["error"]["blockers"]] == ["not_analysed"]


def test_a_transient_error_is_retried_later_without_posting_twice(app: Flask, graph: Any) -> None:
    """/feed fails (code 2) past the client's own attempts: queued again with backoff; the next run
    reuses the uploaded photo and posts once."""
    media, _person = tagged_photo(app)
    graph.fail_next(r"/feed$", code=2, times=4)
    publication = request_publication(media, channel="facebook", caption="Hi", attested=True,
                                      actor=SYSTEM)
    publication_id = publication.id
    db.session.commit()
    publish_job(publication_id)
    publication = get(publication_id)
    assert publication.state == "queued" and publication.post_id is None
    assert publication.last_error.startswith("transient (2)")
    retry = events("publication:retry")[-1]
    assert retry.details["attempt"] == 1 and retry.details["code"] == 2
    assert len(graph.photos) == 1 and publication.remote["photo_ids"]
    publish_job(publication_id)
    publication = get(publication_id)
    assert publication.state == "live" and publication.attempts == 2
    assert len(graph.posts) == 1 and len(graph.photos) == 1


def test_a_lost_answer_on_the_last_step_waits_for_a_person(app: Flask, graph: Any) -> None:
    """A 504 without a Graph body on /feed: Facebook may have posted. No retry (no double post):
    the publication fails with a message that says to check the Page, and a new run does nothing."""
    media, _person = tagged_photo(app)
    graph.fail_next(r"/feed$", code=None, http_status=504)
    publication = request_publication(media, channel="facebook", caption="Hi", attested=True,
                                      actor=SYSTEM)
    publication_id = publication.id
    db.session.commit()
    publish_job(publication_id)
    publication = get(publication_id)
    assert publication.state == "failed" and publication.last_error.startswith("uncertain")
    assert publication.remote.get("feed_attempted")
    assert events("publication:failed")[-1].details["kind"] == "uncertain"
    feeds = sum(1 for _method, path in graph.requests if path.endswith("/feed"))
    publish_job(publication_id)
    assert sum(1 for _method, path in graph.requests if path.endswith("/feed")) == feeds


def test_a_rate_limit_backs_off(app: Flask, graph: Any) -> None:
    """Code 4 on every attempt of a run: a retry with the rate-limit kind."""
    media, _person = tagged_photo(app)
    graph.fail_next(r"/photos$", code=4, times=4)
    publication = request_publication(media, channel="facebook", caption=None, attested=True,
                                      actor=SYSTEM)
    publication_id = publication.id
    db.session.commit()
    publish_job(publication_id)
    assert get(publication_id).state == "queued"
    assert events("publication:retry")[-1].details["kind"] == "rate_limited"


def test_gives_up_after_the_last_attempt(app: Flask, graph: Any) -> None:
    """At MAX_ATTEMPTS a transient error fails the publication."""
    media, _person = tagged_photo(app)
    publication = request_publication(media, channel="facebook", caption=None, attested=True,
                                      actor=SYSTEM)
    publication.attempts = publishing_jobs.MAX_ATTEMPTS - 1
    publication_id = publication.id
    db.session.commit()
    graph.fail_next(r"/photos$", code=1, times=4)
    publish_job(publication_id)
    assert get(publication_id).state == "failed"
    assert events("publication:failed")[-1].details["gave_up"] is True


def test_an_invalid_token_stops_and_tells_the_admin(app: Flask, tokens: dict[str, str], graph: Any,
                                                    logged_in) -> None:
    """190: failed at once with the message; the admin's publications page says publishing stopped."""
    media, _person = tagged_photo(app)
    app.config["FACEBOOK_PAGE_TOKEN"] = "expired-token"
    api = api_caller(app, tokens, "communications")
    response = api("POST", f"/media/{media.id}/publish", json={"channel": "facebook", "attest": True})
    assert response.status_code == 201 and response.get_json()["state"] == "failed"
    publication = get(response.get_json()["publication_id"])
    assert publication.last_error.startswith("auth (190)") and publication.attempts == 1
    assert events("publication:failed")[-1].details["stops_publishing"] is True
    page = logged_in("admin").get("/publications/").get_data(as_text=True)
    assert "Facebook publishing stopped" in page
    assert "Facebook publishing stopped" not in logged_in("dpo").get("/publications/").get_data(as_text=True)


def test_a_missing_permission_stops(app: Flask, graph: Any) -> None:
    """200 (no pages_manage_posts): failed, stopping."""
    media, _person = tagged_photo(app)
    graph.add_token("read-only", {"pages_read_engagement"})
    app.config["FACEBOOK_PAGE_TOKEN"] = "read-only"
    publication = request_publication(media, channel="facebook", caption=None, attested=True,
                                      actor=SYSTEM)
    publication_id = publication.id
    db.session.commit()
    publish_job(publication_id)
    publication = get(publication_id)
    assert publication.state == "failed" and publication.last_error.startswith("permission")
    assert graph.posts == {}


def test_the_gate_is_checked_again_when_publishing(app: Flask, graph: Any) -> None:
    """The tag undone between request and job: failed, blocked_at_publish, nothing sent."""
    media, _person = tagged_photo(app)
    publication = request_publication(media, channel="facebook", caption=None, attested=True,
                                      actor=SYSTEM)
    publication_id = publication.id
    for appearance in media.appearances:
        appearance.person_id, appearance.resolution = None, "unresolved"
    db.session.commit()
    publish_job(publication_id)
    assert get(publication_id).state == "failed"
    assert events("publication:blocked_at_publish")[-1].details["reasons"] == ["unresolved"]
    assert graph.posts == {} and graph.photos == {}


# --- takedowns -----------------------------------------------------------------------------------------

def _live_on_facebook(app: Flask, tokens: dict[str, str]) -> tuple[int, str, Person]:
    """A photo published on Facebook through the API: its publication id, post id and person."""
    media, person = tagged_photo(app)
    api = api_caller(app, tokens, "communications")
    body = api("POST", f"/media/{media.id}/publish",
               json={"channel": "facebook", "attest": True}).get_json()
    assert body["state"] == "live", body
    return body["publication_id"], body["post_id"], person


def test_a_withdrawal_takes_the_post_down(app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """The decision's commit queues the takedown; the fake sees the DELETE; audited."""
    publication_id, post_id, person = _live_on_facebook(app, tokens)
    decide(person, "facebook", "withdrawn")
    publication = get(publication_id)
    assert publication.state == "taken_down" and publication.takedown_reason == "withdrawn"
    assert publication.taken_down_at is not None
    assert post_id in graph.deleted and post_id not in graph.live_posts()
    requested = events("publication:takedown_requested")[-1]
    assert requested.details["reason"] == "withdrawn" and requested.details["person_id"] == person.id
    assert events("publication:taken_down")[-1].subject_id == str(publication_id)
    assert verify().ok


def test_leaving_the_school_takes_the_post_down_at_once(app: Flask, tokens: dict[str, str],
                                                         graph: Any) -> None:
    """A person marked as left today: their posts come down without waiting for the hourly task."""
    from consent_registry.people.schemas import PersonPatch
    from consent_registry.people.service import update_person

    publication_id, post_id, person = _live_on_facebook(app, tokens)
    update_person(db.session.get(Person, person.id), PersonPatch(status="left"), actor=SYSTEM)
    db.session.commit()
    publication = get(publication_id)
    assert publication.state == "taken_down" and publication.takedown_reason == "person_left"
    assert post_id in graph.deleted


def test_other_channels_and_grants_take_nothing_down(app: Flask, tokens: dict[str, str],
                                                    graph: Any) -> None:
    """Withdrawing another channel, or granting again, leaves the post up."""
    publication_id, _post_id, person = _live_on_facebook(app, tokens)
    decide(person, "website", "withdrawn")
    decide(person, "facebook", "granted")
    assert get(publication_id).state == "live" and graph.deleted == []


def test_a_failing_delete_is_retried_until_it_succeeds(app: Flask, tokens: dict[str, str],
                                                       graph: Any) -> None:
    """DELETE fails: takedown_pending, each retry audited; the next run deletes it."""
    publication_id, post_id, person = _live_on_facebook(app, tokens)
    graph.fail_next(post_id, code=1, times=4, method="DELETE")
    decide(person, "facebook", "refused")
    publication = get(publication_id)
    assert publication.state == "takedown_pending" and publication.takedown_attempts == 1
    assert events("publication:takedown_retry")[-1].details["attempt"] == 1
    takedown_job(publication_id)
    publication = get(publication_id)
    assert publication.state == "taken_down" and publication.takedown_attempts == 2
    assert post_id in graph.deleted


def test_a_queued_publication_is_cancelled_before_posting(app: Flask, graph: Any) -> None:
    """Withdrawn before the job ran: taken down without ever posting; the job then does nothing."""
    media, person = tagged_photo(app)
    publication = request_publication(media, channel="facebook", caption=None, attested=True,
                                      actor=SYSTEM)
    publication_id = publication.id
    db.session.commit()
    decide(person, "facebook", "withdrawn")
    assert get(publication_id).state == "taken_down"
    publish_job(publication_id)
    assert get(publication_id).state == "taken_down"
    assert graph.posts == {} and graph.photos == {}


def test_delete_publication_on_request(app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """DELETE /publications/{id}: 202 with the publication; roles; unknown 404; failed 409."""
    publication_id, post_id, _person = _live_on_facebook(app, tokens)
    api = api_caller(app, tokens, "communications")
    assert api("DELETE", f"/publications/{publication_id}", role="staff").status_code == 403
    assert api("DELETE", f"/publications/{publication_id}", role="dpo").status_code == 403
    assert conforms(api("DELETE", "/publications/99999")).status_code == 404
    response = conforms(api("DELETE", f"/publications/{publication_id}"))
    assert response.status_code == 202
    body = response.get_json()
    assert body["state"] == "taken_down" and body["takedown_reason"] == "by_staff"
    assert post_id in graph.deleted
    assert conforms(api("DELETE", f"/publications/{publication_id}")).status_code == 202
    failed = Publication(media_id=None, media_sha256="0" * 64, channel="facebook",
                         connector="facebook", state="failed", decision={}, remote={})
    db.session.add(failed)
    db.session.commit()
    response = conforms(api("DELETE", f"/publications/{failed.id}"))
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "not_live"


def test_an_export_is_downloaded_and_its_takedown_is_a_task(app: Flask, tokens: dict[str, str],
                                                           logged_in) -> None:
    """website: live with a stored rendition; download audited; withdrawal -> a task staff confirm."""
    media, person = tagged_photo(app, channel="website")
    api = api_caller(app, tokens, "communications")
    response = api("POST", f"/media/{media.id}/publish", json={"channel": "website", "attest": True})
    assert response.status_code == 201
    body = response.get_json()
    assert body["state"] == "live" and body["post_id"] is None
    publication_id = body["publication_id"]
    dpo = logged_in("dpo")
    download = dpo.get(f"/publications/{publication_id}/download")
    assert download.status_code == 200 and download.mimetype == "image/jpeg"
    assert download.data[:2] == b"\xff\xd8"
    assert events("publication:download")[-1].actor_id is not None
    assert logged_in("staff").get(f"/publications/{publication_id}/download").status_code == 403
    decide(person, "website", "withdrawn")
    assert get(publication_id).state == "takedown_pending"
    comms = logged_in("communications")
    page = comms.get("/publications/").get_data(as_text=True)
    assert "Removed by hand" in page and f"#{publication_id}" in page
    from conftest import csrf_token

    token = csrf_token(comms, "/publications/")
    response = comms.post(f"/publications/{publication_id}/removed", data={"csrf_token": token})
    assert response.status_code == 302
    publication = get(publication_id)
    assert publication.state == "taken_down" and publication.taken_down_by is not None
    assert events("publication:taken_down")[-1].details["by_hand"] is True


def test_consent_that_expires_with_time_is_taken_down_by_the_hourly_task(
        app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """A school-year consent lapses on 1 August: the periodic function requests the takedown."""
    with time_machine.travel(datetime(2025, 3, 3, 9, tzinfo=UTC)):
        publication_id, post_id, _person = _live_on_facebook(app, tokens)
        assert takedowns_for_lapsed(datetime.now(UTC)) == 0
    with time_machine.travel(datetime(2025, 8, 2, 9, tzinfo=UTC)):
        assert takedowns_for_lapsed(datetime.now(UTC)) == 1
        db.session.commit()
    publication = get(publication_id)
    assert publication.state == "taken_down" and publication.takedown_reason == "expired"
    assert post_id in graph.deleted


def test_the_sweeper_restarts_stuck_publishing(app: Flask, graph: Any) -> None:
    """A run that died in `publishing` (its lease lapsed) is queued again and then goes live."""
    media, _person = tagged_photo(app)
    publication = request_publication(media, channel="facebook", caption=None, attested=True,
                                      actor=SYSTEM)
    publication_id = publication.id
    publication.state = "publishing"
    publication.lease_owner = "dead-worker"
    publication.lease_expires_at = datetime.now(UTC) + timedelta(minutes=2)
    db.session.commit()
    assert sweep_publications() == 0  # its lease holds: the run may still be busy
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=3)):
        assert sweep_publications() == 1
        assert get(publication_id).state == "live"
        assert events("publication:restarted")[-1].subject_id == str(publication_id)
        assert sweep_publications() == 0


def test_the_publisher_is_recorded(app: Flask, tokens: dict[str, str], graph: Any,
                                   users: dict[str, Any]) -> None:
    """published_by is the token's user; the people shown are kept for takedowns."""
    publication_id, _post_id, person = _live_on_facebook(app, tokens)
    publication = get(publication_id)
    assert publication.published_by == users["communications"].id
    assert db.session.query(PublicationPerson).filter_by(person_id=person.id).count() == 1
    assert Actor("user", users["communications"].id).id == publication.published_by
