"""Tagging appearances: the pure decisions, the service that applies them, and the API."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from flask import Flask
from PIL import Image

from consent_registry.audit import SYSTEM, Actor, AuditEvent, verify
from consent_registry.db import db
from consent_registry.media.faces import Box
from consent_registry.media.ingest import Limits, ingest_stream
from consent_registry.media.models import Appearance, Media
from consent_registry.media.tagging import (
    Accept,
    Reject,
    Resolve,
    State,
    Tag,
    TaggingError,
    accept_suggestion,
    add_appearance,
    check_box,
    check_segments,
    decide,
    reject_suggestion,
    set_resolution,
    tag_person,
)
from consent_registry.people.models import Person
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person
from consent_registry.storage import get_storage

from api_helpers import api_caller, conforms

# ---------------------------------------------------------------------------------------------
# Helpers shared with the page and browser tests


def jpeg_bytes(size: tuple[int, int] = (320, 240), seed: int = 1) -> bytes:
    """A small noisy JPEG; the seed makes its content (and so its SHA-256) differ."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    out = io.BytesIO()
    img.save(out, format="JPEG")
    return out.getvalue()


def make_photo(app: Flask, *, seed: int = 1, status: str = "ready", title: str = "Sports day",
               size: tuple[int, int] = (320, 240)) -> Media:
    """A photo ingested like an upload, marked with the given status (analysis is not run)."""
    result = ingest_stream(io.BytesIO(jpeg_bytes(size, seed)), limits=Limits.from_config(app.config),
                           storage=get_storage(), actor=SYSTEM, uploaded_by=None, title=title)
    media = result.media
    media.status = status
    db.session.commit()
    return media


def make_video(*, status: str = "ready", duration: float = 10.0) -> Media:
    """A video row without a stored file (tagging never reads one for videos)."""
    media = Media(kind="video", status=status, sha256=f"{status:0<8}" + "v" * 56,
                  storage_key="media/none", content_type="video/mp4", size_bytes=1, width=640,
                  height=360, duration_s=duration)
    db.session.add(media)
    db.session.commit()
    return media


def face(media: Media, box: tuple[int, int, int, int] = (40, 40, 60, 60), *,
         suggested: Person | None = None, distance: float | None = None, **fields: Any) -> Appearance:
    """A detected face on an item, optionally with the matcher's suggestion."""
    x, y, w, h = box
    fields.setdefault("resolution", "unresolved")
    appearance = Appearance(media_id=media.id, kind="face", box_x=x, box_y=y, box_w=w, box_h=h,
                            suggested_person_id=suggested.id if suggested else None,
                            distance=distance, **fields)
    db.session.add(appearance)
    db.session.commit()
    return appearance


def pupil(number: str, given: str, family: str = "Jansen", group: str = "1A",
          status: str = "active") -> Person:
    """A pupil in the register."""
    person = create_person(PersonCreate.model_validate({
        "external_id": number, "given_name": given, "family_name": family,
        "birth_date": "2012-03-04", "role": "pupil", "group": group,
        "guardians": [{"name": f"Ouder van {given}", "email": f"ouder.{number}@example.nl"}],
    }), actor=SYSTEM)
    if status == "left":
        person.status = "left"
    db.session.commit()
    return person


def events(action: str) -> list[AuditEvent]:
    """Audit events with this action, oldest first."""
    return list(db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).scalars())


# ---------------------------------------------------------------------------------------------
# Pure decisions

UNRESOLVED = State("unresolved", None, None, None)
SUGGESTED = State("unresolved", None, 7, 0.41)
TAGGED = State("identified", 5, None, None)
ACCEPTED = State("identified", 7, 7, 0.41)
BLURRED = State("blur", 5, None, None)


@pytest.mark.parametrize(("before", "decision", "after"), [
    (UNRESOLVED, Tag(5), TAGGED),
    (SUGGESTED, Tag(7), ACCEPTED),  # tagging the suggested person keeps the suggestion's record
    (SUGGESTED, Tag(5), TAGGED),  # someone else: the stale suggestion goes
    (TAGGED, Tag(9), State("identified", 9, None, None)),
    (SUGGESTED, Accept(), ACCEPTED),
    (SUGGESTED, Reject(), UNRESOLVED),
    (ACCEPTED, Reject(), State("identified", 7, None, None)),
    (TAGGED, Resolve("blur"), BLURRED),  # blur keeps who is blurred
    (UNRESOLVED, Resolve("blur"), State("blur", None, None, None)),
    (TAGGED, Resolve("not_recognisable"), State("not_recognisable", None, None, None)),
    (BLURRED, Resolve("unresolved"), UNRESOLVED),
    (ACCEPTED, Resolve("unresolved"), State("unresolved", None, 7, 0.41)),
    (SUGGESTED, Resolve("not_recognisable"), State("not_recognisable", None, 7, 0.41)),
])
def test_decisions(before: State, decision: Any, after: State) -> None:
    """Each decision's outcome, as a table."""
    assert decide(before, decision) == after


@pytest.mark.parametrize(("before", "decision", "status", "code"), [
    (UNRESOLVED, Accept(), 409, "no_suggestion"),
    (TAGGED, Reject(), 409, "no_suggestion"),
    (UNRESOLVED, Resolve("identified"), 422, "invalid"),
    (UNRESOLVED, Resolve("nonsense"), 422, "invalid"),
])
def test_impossible_decisions(before: State, decision: Any, status: int, code: str) -> None:
    """Without a suggestion there is nothing to accept; identified needs a person."""
    with pytest.raises(TaggingError) as caught:
        decide(before, decision)
    assert (caught.value.status, caught.value.code) == (status, code)


@pytest.mark.parametrize(("box", "ok"), [
    (Box(0, 0, 320, 240), True),
    (Box(312, 232, 8, 8), True),
    (Box(0, 0, 7, 50), False),
    (Box(0, 0, 50, 7), False),
    (Box(0, 0, 0, 0), False),
    (Box(-1, 0, 20, 20), False),
    (Box(0, -1, 20, 20), False),
    (Box(301, 0, 20, 20), False),
    (Box(0, 221, 20, 20), False),
    (Box(10**6, 10**6, 20, 20), False),
])
def test_boxes_must_lie_in_the_picture(box: Box, ok: bool) -> None:
    """A box is at least 8 pixels each way and inside the 320 by 240 picture."""
    assert (check_box(box, 320, 240) is None) == ok


def test_no_box_without_a_picture() -> None:
    """Recordings have no width and height."""
    assert check_box(Box(0, 0, 10, 10), None, None) is not None


@pytest.mark.parametrize(("segments", "ok"), [
    ([[0, 1.5], [2, 3]], True),
    ([[1, 1]], False),
    ([[2, 1]], False),
    ([[-1, 1]], False),
    ([[0, 99]], False),
    ([[0]], False),
])
def test_segments(segments: list[list[float]], ok: bool) -> None:
    """Times start at 0 or later, end after they start and within the 10 s recording."""
    assert (check_segments(segments, 10.0) is None) == ok


# ---------------------------------------------------------------------------------------------
# The service


@pytest.fixture
def photo(app: Flask) -> Media:
    """A ready 320 by 240 photo."""
    return make_photo(app)


def test_service_stamps_audits_and_resets(app: Flask, users, photo: Media) -> None:
    """Each decision records who and when and audits ids only; reset clears them again."""
    ada, bram = pupil("1", "Ada"), pupil("2", "Bram")
    appearance = face(photo, suggested=ada, distance=0.4)
    actor = Actor("user", users["communications"].id)
    accept_suggestion(appearance, actor)
    db.session.commit()
    assert (appearance.person_id, appearance.resolution) == (ada.id, "identified")
    assert appearance.resolved_by == users["communications"].id and appearance.resolved_at
    tag_person(appearance, bram, actor)
    set_resolution(appearance, "blur", actor)
    db.session.commit()
    assert (appearance.person_id, appearance.resolution) == (bram.id, "blur")
    set_resolution(appearance, "unresolved", actor)
    db.session.commit()
    assert (appearance.person_id, appearance.resolved_by, appearance.resolved_at) == (None, None, None)
    [accepted] = events("appearance:suggestion_accepted")
    assert accepted.details == {"media_id": photo.id, "old_person_id": None,
                                "new_person_id": ada.id, "old_resolution": "unresolved",
                                "new_resolution": "identified", "suggested_person_id": ada.id}
    assert accepted.subject_type == "appearance" and accepted.subject_id == str(appearance.id)
    assert len(events("appearance:tagged")) == 1 and len(events("appearance:resolution")) == 2
    assert "Ada" not in str([e.details for e in db.session.query(AuditEvent)])
    assert verify().ok


def test_auto_accepted_becomes_a_human_decision(app: Flask, users, photo: Media) -> None:
    """Confirming what the matcher auto-accepted makes it a staff member's decision."""
    ada = pupil("1", "Ada")
    appearance = face(photo, suggested=ada, distance=0.3, person_id=ada.id,
                      resolution="identified", auto_accepted=True)
    accept_suggestion(appearance, Actor("user", users["admin"].id))
    db.session.commit()
    assert not appearance.auto_accepted and appearance.resolved_by == users["admin"].id


def test_reject_keeps_it_unresolved(app: Flask, users, photo: Media) -> None:
    """Rejecting forgets the suggestion and its distance; someone must still decide."""
    appearance = face(photo, suggested=pupil("1", "Ada"), distance=0.5)
    reject_suggestion(appearance, Actor("user", users["admin"].id))
    db.session.commit()
    assert (appearance.suggested_person_id, appearance.distance, appearance.resolution) == (
        None, None, "unresolved")


def test_nothing_is_tagged_before_the_analysis_is_done(app: Flask, users) -> None:
    """An item still being analysed refuses every decision with not_ready."""
    media = make_photo(app, status="analysing")
    appearance = face(media)
    actor = Actor("user", users["admin"].id)
    for change in (lambda: tag_person(appearance, pupil("1", "Ada"), actor),
                   lambda: set_resolution(appearance, "blur", actor),
                   lambda: add_appearance(media, Box(0, 0, 20, 20), None, actor)):
        with pytest.raises(TaggingError) as caught:
            change()
        assert caught.value.code == "not_ready"


def test_add_a_missed_face_stores_a_crop(app: Flask, users, photo: Media) -> None:
    """A drawn box becomes a manual, unresolved face with a crop of the photo."""
    appearance = add_appearance(photo, Box(100, 50, 40, 40), None, Actor("user", users["admin"].id))
    db.session.commit()
    assert (appearance.source, appearance.resolution, appearance.kind) == (
        "manual", "unresolved", "face")
    assert appearance.resolved_by is None
    with Image.open(io.BytesIO(get_storage().get(appearance.crop_key))) as crop:
        assert crop.format == "JPEG" and crop.size == (160, 160)
    [added] = events("appearance:added")
    assert added.details["has_box"] is True


def test_add_a_person_without_a_box(app: Flask, users, photo: Media) -> None:
    """Present but not detected: no box, a person, identified at once."""
    ada = pupil("1", "Ada")
    appearance = add_appearance(photo, None, ada, Actor("user", users["admin"].id))
    db.session.commit()
    assert (appearance.box, appearance.person_id, appearance.resolution) == (
        None, ada.id, "identified")
    assert appearance.resolved_by == users["admin"].id and appearance.crop_key is None
    with pytest.raises(TaggingError) as caught:
        add_appearance(photo, None, None, Actor("user", users["admin"].id))
    assert caught.value.code == "person_required"


def test_a_video_track_is_added_with_times(app: Flask, users) -> None:
    """A person seen in a video, with when; times outside the video are refused."""
    video = make_video()
    ada = pupil("1", "Ada")
    actor = Actor("user", users["admin"].id)
    appearance = add_appearance(video, None, ada, actor, segments=[[1.0, 2.5]])
    db.session.commit()
    assert appearance.segments == [[1.0, 2.5]] and appearance.kind == "face"
    with pytest.raises(TaggingError):
        add_appearance(video, None, ada, actor, segments=[[1.0, 60.0]])


# ---------------------------------------------------------------------------------------------
# The API


@pytest.fixture
def api(app: Flask, tokens: dict[str, str]):
    """Calls to /api/v1 as communications unless told otherwise."""
    return api_caller(app, tokens, "communications")


def path(appearance: Appearance) -> str:
    """The API path of an appearance."""
    return f"/media/{appearance.media_id}/appearances/{appearance.id}"


def test_api_tags_and_answers_the_appearance(api, photo: Media, users) -> None:
    """PATCH with a person: 200, the appearance JSON as documented, audited."""
    ada = pupil("1", "Ada")
    appearance = face(photo)
    body = conforms(api("PATCH", path(appearance), json={"person_id": ada.id})).get_json()
    assert body["person_id"] == ada.id and body["resolution"] == "identified"
    assert body["resolved_by"] == users["communications"].id and body["resolved_at"]
    assert body["source"] == "detected" and body["auto_accepted"] is False
    assert len(events("appearance:tagged")) == 1
    got = conforms(api("GET", path(appearance), role="dpo")).get_json()
    assert got == body
    media = conforms(api("GET", f"/media/{photo.id}")).get_json()
    assert media["appearances"][0]["resolved_by"] == users["communications"].id


def test_api_suggestions_and_resolutions(api, photo: Media) -> None:
    """accept_suggestion true/false, then resolutions; no suggestion is a 409."""
    ada = pupil("1", "Ada")
    first, second = face(photo, suggested=ada, distance=0.4), face(photo, (150, 40, 50, 50),
                                                                    suggested=ada, distance=0.6)
    body = conforms(api("PATCH", path(first), json={"accept_suggestion": True})).get_json()
    assert (body["person_id"], body["resolution"]) == (ada.id, "identified")
    body = conforms(api("PATCH", path(second), json={"accept_suggestion": False})).get_json()
    assert (body["suggested_person_id"], body["distance"], body["resolution"]) == (
        None, None, "unresolved")
    response = conforms(api("PATCH", path(second), json={"accept_suggestion": True}))
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "no_suggestion"
    body = conforms(api("PATCH", path(first), json={"resolution": "blur"})).get_json()
    assert (body["person_id"], body["resolution"]) == (ada.id, "blur")
    body = conforms(api("PATCH", path(first), json={"resolution": "not_recognisable"})).get_json()
    assert (body["person_id"], body["resolution"]) == (None, "not_recognisable")
    body = conforms(api("PATCH", path(first), json={"resolution": "unresolved"})).get_json()
    assert (body["resolution"], body["resolved_by"]) == ("unresolved", None)
    assert len(events("appearance:suggestion_accepted")) == 1
    assert len(events("appearance:suggestion_rejected")) == 1
    assert len(events("appearance:resolution")) == 3


@pytest.mark.parametrize(("document", "field"), [
    ({}, "body"),
    ({"person_id": 1, "resolution": "blur"}, "body"),
    ({"accept_suggestion": True, "resolution": "blur"}, "body"),
    ({"person_id": "1"}, "person_id"),
    ({"person_id": None}, "person_id"),
    ({"person_id": True}, "person_id"),
    ({"person_id": 0}, "person_id"),
    ({"accept_suggestion": "yes"}, "accept_suggestion"),
    ({"resolution": "identified"}, "resolution"),
    ({"resolution": "maybe"}, "resolution"),
    ({"who": "Ada"}, "who"),
])
def test_api_refuses_bad_patches(api, photo: Media, document: dict, field: str) -> None:
    """Exactly one known field with a value of the right type, or a 422 naming the problem."""
    appearance = face(photo)
    response = conforms(api("PATCH", path(appearance), json=document), check_request=False)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]
    assert events("appearance:tagged") == [] and events("appearance:resolution") == []


def test_api_unknown_ids(api, app: Flask, photo: Media) -> None:
    """Unknown, huge and mismatched ids are 404s; an unknown person is a 422."""
    other = make_photo(app, seed=2)
    appearance, elsewhere = face(photo), face(other)
    for url in (f"/media/{photo.id}/appearances/999999", f"/media/999999/appearances/{appearance.id}",
                f"/media/{photo.id}/appearances/{2**40}", f"/media/{2**63}/appearances/1",
                f"/media/{photo.id}/appearances/{elsewhere.id}"):
        response = conforms(api("PATCH", url, json={"resolution": "blur"}), check_request=False)
        assert response.status_code == 404, url
        assert response.get_json()["error"]["code"] == "not_found"
    for person_id in (999999, 2**40):
        response = conforms(api("PATCH", path(appearance), json={"person_id": person_id}))
        assert response.status_code == 422 and "person_id" in response.get_json()["error"]["fields"]
    assert conforms(api("GET", f"/people/{2**40}/media"), check_request=False).status_code == 404


def test_api_refuses_an_item_still_being_analysed(api, app: Flask) -> None:
    """409 not_ready for decisions and additions until analysis has finished."""
    media = make_photo(app, status="analysing")
    appearance = face(media)
    response = conforms(api("PATCH", path(appearance), json={"resolution": "blur"}))
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "not_ready"
    response = conforms(api("POST", f"/media/{media.id}/appearances",
                            json={"box": {"x": 0, "y": 0, "w": 20, "h": 20}}))
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "not_ready"


@pytest.mark.parametrize("role", ["staff", "dpo"])
def test_only_admin_and_communications_tag(api, photo: Media, role: str) -> None:
    """Staff and the DPO read but never tag; the refusal changes nothing."""
    appearance = face(photo)
    response = conforms(api("PATCH", path(appearance), role=role, json={"resolution": "blur"}))
    assert response.status_code == 403
    response = conforms(api("POST", f"/media/{photo.id}/appearances", role=role,
                            json={"box": {"x": 0, "y": 0, "w": 20, "h": 20}}))
    assert response.status_code == 403
    assert conforms(api("GET", path(appearance), role=role)).status_code == 200
    db.session.expire_all()
    assert appearance.resolution == "unresolved" and len(photo.appearances) == 1
    assert conforms(api("PATCH", path(appearance), role="admin",
                        json={"resolution": "blur"})).status_code == 200


def test_api_adds_a_missed_face_and_a_person(api, photo: Media) -> None:
    """POST with a box: 201, Location, a crop; POST without a box names a person."""
    response = conforms(api("POST", f"/media/{photo.id}/appearances",
                            json={"box": {"x": 10, "y": 20, "w": 30, "h": 40}}))
    assert response.status_code == 201
    body = response.get_json()
    assert body["box"] == {"x": 10, "y": 20, "w": 30, "h": 40} and body["source"] == "manual"
    assert response.headers["Location"] == f"/api/v1/media/{photo.id}/appearances/{body['id']}"
    assert db.session.get(Appearance, body["id"]).crop_key
    ada = pupil("1", "Ada", status="left")  # having left does not stop the tag; the gate blocks
    response = conforms(api("POST", f"/media/{photo.id}/appearances",
                            json={"box": None, "person_id": ada.id}))
    assert response.status_code == 201
    assert response.get_json()["resolution"] == "identified"
    assert len(events("appearance:added")) == 2
    listed = conforms(api("GET", f"/people/{ada.id}/media", role="staff")).get_json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == photo.id
    assert listed["items"][0]["appearances"] == [
        {"id": response.get_json()["id"], "kind": "face", "resolution": "identified"}]


@pytest.mark.parametrize(("document", "field"), [
    ({"box": {"x": 300, "y": 0, "w": 40, "h": 40}}, "box"),  # beyond the right edge
    ({"box": {"x": 0, "y": 230, "w": 40, "h": 40}}, "box"),  # below the bottom
    ({"box": {"x": 0, "y": 0, "w": 0, "h": 0}}, "box"),
    ({"box": {"x": 0, "y": 0, "w": 5, "h": 40}}, "box"),
    ({"box": {"x": -1, "y": 0, "w": 40, "h": 40}}, "box.x"),
    ({"box": {"x": 0, "y": 0, "w": 40}}, "box.h"),
    ({"box": {"x": 0, "y": 0, "w": 40, "h": 40, "z": 1}}, "box.z"),
    ({"box": {"x": "0", "y": 0, "w": 40, "h": 40}}, "box.x"),
    ({"box": {"x": 0, "y": 0, "w": 10**12, "h": 40}}, "box.w"),
    ({"box": None}, "person_id"),
    ({}, "person_id"),
    ({"person_id": 999999}, "person_id"),
    ({"person_id": 1, "segments": [[0, 1]]}, "segments"),  # a photo has no times
    ({"segments": "0-1"}, "segments"),
    ({"colour": "red"}, "colour"),
])
def test_api_refuses_bad_additions(api, photo: Media, document: dict, field: str) -> None:
    """Boxes outside the photo, too small, malformed; no person without a box; unknown fields."""
    pupil("1", "Ada")
    response = conforms(api("POST", f"/media/{photo.id}/appearances", json=document),
                        check_request=False)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"], response.get_json()
    assert events("appearance:added") == []
    db.session.expire_all()
    assert photo.appearances == []


def test_api_bad_bodies(api, photo: Media) -> None:
    """Not JSON, not an object: 415 and 400 in the error shape."""
    appearance = face(photo)
    response = api("PATCH", path(appearance), data=b"person_id=1",
                   content_type="application/x-www-form-urlencoded")
    assert conforms(response, check_request=False).status_code == 415
    response = api("PATCH", path(appearance), data=b"[1]", content_type="application/json")
    assert conforms(response, check_request=False).status_code == 400


def test_person_media_pages(api, app: Flask) -> None:
    """A person's media, newest first, paged; other people's appearances are left out."""
    ada, bram = pupil("1", "Ada"), pupil("2", "Bram")
    for seed in range(3):
        media = make_photo(app, seed=seed + 10, title=f"Photo {seed}")
        face(media, person_id=ada.id, resolution="identified")
        face(media, (150, 40, 50, 50), person_id=bram.id, resolution="identified")
    body = conforms(api("GET", f"/people/{ada.id}/media?per_page=2")).get_json()
    assert body["total"] == 3 and len(body["items"]) == 2
    assert all(len(item["appearances"]) == 1 for item in body["items"])
    assert conforms(api("GET", f"/people/{ada.id}/media?page=0"), check_request=False
                    ).status_code == 400
