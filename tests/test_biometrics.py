"""Face matching's switch and reference photos: service, API and pages.

Most tests use a fake face engine (fixed boxes); one enrols a real face with the real engine.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fake_face_engine import FakeFaceEngine
from flask import Flask
from PIL import Image
from werkzeug.test import TestResponse

from consent_registry.audit import SYSTEM, AuditEvent, verify
from consent_registry.biometrics import service
from consent_registry.biometrics.models import BiometricSetting, FaceReference, encoding_bytes
from consent_registry.consent.models import ConsentRecord
from consent_registry.consent.service import record_decision
from consent_registry.db import db, utcnow
from consent_registry.jobs import registered_jobs
from consent_registry.media.faces import Box
from consent_registry.media.models import Appearance, Media
from consent_registry.people.models import Person
from consent_registry.people.schemas import GuardianIn, PersonCreate
from consent_registry.people.service import create_person

from api_helpers import Api, api_caller, conforms
from conftest import SHARED_DATA, StaffUser, csrf_token

ONE_FACE = [Box(40, 40, 60, 60)]
TWO_FACES = [Box(10, 10, 50, 50), Box(120, 120, 50, 50)]
DPIA = "DPIA-2025-03 face matching"


# --- helpers ------------------------------------------------------------------------------------

def photo(shade: int = 100, *, size: tuple[int, int] = (200, 200), fmt: str = "PNG") -> bytes:
    """A small valid picture; different shades give different files."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (shade, 120, 140)).save(buffer, format=fmt)
    return buffer.getvalue()


def born(years: int) -> date:
    """A birth date some whole years (and a bit) ago."""
    today = date.today()
    return date(today.year - years, 1, 1) if (today.month, today.day) != (1, 1) else date(
        today.year - years - 1, 6, 1)


def add_person(external_id: str, *, age: int = 10, birth_date: date | None = None) -> Person:
    """A pupil with one guardian, committed."""
    person = create_person(PersonCreate(
        external_id=external_id, given_name="Given", family_name=f"Family{external_id}",
        birth_date=birth_date or born(age), role="pupil",
        guardians=[GuardianIn(name="Guardian", email=f"g{external_id.lower()}@ouders.nl")],
    ), actor=SYSTEM)
    db.session.commit()
    return person


def guardian_id(person: Person) -> int:
    """The person's (first) guardian."""
    return person.guardian_links[0].guardian_id


def decide(person: Person, decision: str, *, at: datetime | None = None) -> ConsentRecord:
    """A guardian's decision about biometric matching, recorded on paper and committed."""
    row = record_decision(person=person, channel="biometric", decision=decision,
                          decider_kind="guardian", guardian_id=guardian_id(person), method="paper",
                          actor=SYSTEM, at=at)
    db.session.commit()
    return row


def matching_on() -> None:
    """Switch face matching on, committed."""
    service.set_face_matching(enabled=True, dpia_reference=DPIA, actor=SYSTEM)
    db.session.commit()


def references(person_id: int | None = None) -> list[FaceReference]:
    """Stored references, of one person or all."""
    query = sa.select(FaceReference).order_by(FaceReference.id)
    if person_id is not None:
        query = query.where(FaceReference.person_id == person_id)
    return list(db.session.execute(query).scalars())


def events(action: str) -> list[AuditEvent]:
    """Audit events of one action, oldest first."""
    return list(db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).scalars())


def enrolled(person: Person, shade: int = 100) -> int:
    """Enrol one (fake-engine) reference through the service, committed; its id."""
    reference = service.add_reference(person, photo(shade), actor=SYSTEM)
    db.session.commit()
    return reference.id


# The assertions below read English; the site defaults to Dutch.
PAGES_IN_ENGLISH = True


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeFaceEngine:
    """A fake face engine that finds one face in every photo (tests may change its boxes)."""
    fake = FakeFaceEngine(ONE_FACE)
    monkeypatch.setattr("consent_registry.media.analysis.engine", lambda: fake)
    return fake


@pytest.fixture
def api(app: Flask, tokens: dict[str, str]) -> Api:
    """Call the API as a role (admin unless told)."""
    return api_caller(app, tokens, "admin")


@pytest.fixture
def pupil(app: Flask) -> Person:
    """A 10-year-old pupil whose guardian granted biometric consent, with matching on."""
    person = add_person("B1")
    decide(person, "granted")
    matching_on()
    return person


def upload(api: Api, person_id: int | str, data: bytes, role: str = "admin", *,
           name: str = "face.png") -> TestResponse:
    """POST one file as a reference photo."""
    return api("POST", f"/people/{person_id}/reference-photos", role,
               data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


# --- the switch ---------------------------------------------------------------------------------

def test_matching_is_off_by_default_and_reading_stores_nothing(api: Api) -> None:
    """No row, no matching; both admin and DPO read the default."""
    assert service.face_matching_enabled() is False
    assert service.matching_references(utcnow()) == []
    for role in ("admin", "dpo"):
        response = conforms(api("GET", "/settings/face-matching", role))
        assert response.status_code == 200
        assert response.get_json() == {"enabled": False, "dpia_reference": None,
                                       "updated_at": None, "updated_by": None}
    assert db.session.query(BiometricSetting).count() == 0
    for role in ("staff", "communications"):
        assert api("GET", "/settings/face-matching", role).status_code == 403


@pytest.mark.parametrize("body", [
    {"enabled": True},
    {"enabled": True, "dpia_reference": None},
    {"enabled": True, "dpia_reference": "   "},
    {"enabled": "true", "dpia_reference": DPIA},
    {"enabled": 1, "dpia_reference": DPIA},
    {"dpia_reference": DPIA},
    {"enabled": True, "dpia_reference": "x" * 201},
    {"enabled": True, "dpia_reference": DPIA, "extra": 1},
    {"enabled": True, "dpia_reference": 42},
])
def test_switching_on_needs_a_dpia_reference(api: Api, body: dict) -> None:
    """Anything but a boolean with a non-blank DPIA reference is refused, and nothing changes."""
    response = conforms(api("PUT", "/settings/face-matching", json=body), check_request=False)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["fields"]
    assert db.session.query(BiometricSetting).count() == 0
    assert events("settings:face_matching") == []


def test_put_refuses_bodies_that_are_not_json(api: Api) -> None:
    """Not JSON, broken JSON or not an object."""
    assert api("PUT", "/settings/face-matching", data=b"enabled=1",
               content_type="application/x-www-form-urlencoded").status_code == 415
    assert api("PUT", "/settings/face-matching", data=b"{", content_type="application/json"
               ).status_code == 400
    assert api("PUT", "/settings/face-matching", json=[True]).status_code == 400


def test_only_the_admin_switches(api: Api) -> None:
    """Other roles are refused before anything is read."""
    for role in ("dpo", "staff", "communications"):
        response = api("PUT", "/settings/face-matching", role,
                       json={"enabled": True, "dpia_reference": DPIA})
        assert response.status_code == 403
    assert service.face_matching_enabled() is False


def test_switching_on_and_off_is_audited_without_values(api: Api, users: dict[str, StaffUser]) -> None:
    """Field names and the flag are audited, never the DPIA text; an unchanged PUT adds nothing."""
    response = conforms(api("PUT", "/settings/face-matching",
                            json={"enabled": True, "dpia_reference": f"  {DPIA} "}))
    assert response.status_code == 200
    body = response.get_json()
    assert body["enabled"] is True and body["dpia_reference"] == DPIA
    assert body["updated_by"] == users["admin"].id and body["updated_at"]
    conforms(api("PUT", "/settings/face-matching", json={"enabled": True, "dpia_reference": DPIA}))
    off = conforms(api("PUT", "/settings/face-matching", json={"enabled": False}))
    assert off.get_json()["enabled"] is False and off.get_json()["dpia_reference"] is None
    audited = events("settings:face_matching")
    assert [e.details for e in audited] == [
        {"fields": ["dpia_reference", "enabled"], "enabled": True},
        {"fields": ["dpia_reference", "enabled"], "enabled": False},
    ]
    assert all(e.actor_id == users["admin"].id for e in audited)
    assert DPIA not in str([e.details for e in audited])
    assert verify().ok


def test_switching_off_deletes_every_reference_and_suggestion(
    app: Flask, api: Api, engine: FakeFaceEngine, pupil: Person
) -> None:
    """Templates without a purpose are deleted, each audited; unconfirmed suggestions go too."""
    other = add_person("B2")
    decide(other, "granted")
    first, second = enrolled(pupil, 1), enrolled(other, 2)
    media_id = _suggested_appearances(pupil.id)
    response = conforms(api("PUT", "/settings/face-matching", json={"enabled": False}))
    assert response.status_code == 200
    assert references() == []
    deleted = events("biometric:reference_deleted")
    assert sorted(e.details["reference_id"] for e in deleted) == [first, second]
    assert {e.details["reason"] for e in deleted} == {"matching_off"}
    assert _suggestions(media_id) == {"unresolved": None, "identified": pupil.id}
    assert service.matching_references(utcnow()) == []


# --- adding reference photos -------------------------------------------------------------------

def test_add_a_reference_photo(api: Api, engine: FakeFaceEngine, pupil: Person,
                               users: dict[str, StaffUser], app: Flask) -> None:
    """201 with the id, person, time and consent record; never the encoding; the photo is not kept."""
    grant = db.session.execute(sa.select(ConsentRecord)).scalar_one()
    response = conforms(upload(api, pupil.id, photo(1), "communications"), check_request=False)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert set(body) == {"id", "person_id", "created_at", "consent_record_id"}
    assert body["person_id"] == pupil.id and body["consent_record_id"] == grant.id
    stored = references(pupil.id)
    assert [r.id for r in stored] == [body["id"]]
    assert stored[0].created_by == users["communications"].id
    assert np.allclose(stored[0].vector(), engine.encode(Image.new("RGB", (1, 1)), ONE_FACE)[0])
    assert db.session.query(Media).count() == 0
    assert not any(p.is_file() for p in Path(app.config["UPLOAD_DIR"]).rglob("*"))
    added = events("biometric:reference_added")
    assert [(e.subject_id, e.details) for e in added] == [
        (str(pupil.id), {"reference_id": body["id"], "consent_record_id": grant.id})]
    # A person can have several; the same photo twice is refused.
    assert upload(api, pupil.id, photo(2)).status_code == 201
    again = conforms(upload(api, pupil.id, photo(2)), check_request=False)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "duplicate"
    listing = conforms(api("GET", f"/people/{pupil.id}/reference-photos", "dpo"))
    assert [set(item) for item in listing.get_json()["items"]] == [set(body)] * 2
    assert "encoding" not in listing.get_data(as_text=True)


def test_an_oriented_photo_is_turned_before_faces_are_looked_for(
    api: Api, engine: FakeFaceEngine, pupil: Person
) -> None:
    """EXIF orientation 6 (a quarter turn): the engine sees the photo as displayed."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (300, 200), (10, 20, 30)).save(buffer, format="JPEG", exif=exif)
    assert upload(api, pupil.id, buffer.getvalue(), name="x.jpg").status_code == 201
    assert engine.detected[-1] == (200, 300)


@pytest.mark.parametrize("boxes, found", [([], 0), (TWO_FACES, 2)])
def test_a_reference_photo_must_show_exactly_one_face(
    api: Api, engine: FakeFaceEngine, pupil: Person, boxes: list[Box], found: int
) -> None:
    """No face or several faces: 422 saying how many were found; nothing stored."""
    engine.boxes = boxes
    response = conforms(upload(api, pupil.id, photo()), check_request=False)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "not_one_face" and str(found) in error["message"]
    assert references() == [] and events("biometric:reference_added") == []


@pytest.mark.parametrize("data, status, code", [
    (b"just some text, not a photo at all" * 20, 415, "unsupported_type"),
    (b"", 422, "empty"),
    (b"\xff\xd8\xff\xe0" + b"\x00garbage" * 100, 422, "corrupt"),
    (photo(fmt="PNG")[:120], 422, "corrupt"),
])
def test_the_file_is_judged_by_its_content(
    api: Api, engine: FakeFaceEngine, pupil: Person, data: bytes, status: int, code: str
) -> None:
    """Not a photo: 415; empty or damaged: 422; the file's name does not matter."""
    response = conforms(upload(api, pupil.id, data, name="face.jpg"), check_request=False)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code
    assert "file" in response.get_json()["error"]["fields"]
    assert references() == [] and engine.detected == []


def test_a_video_is_not_a_reference_photo(api: Api, engine: FakeFaceEngine, pupil: Person) -> None:
    """A file the media upload would take as a video is refused here as not a photo."""
    video = next((SHARED_DATA / "video").glob("*.mp4")).read_bytes()
    response = upload(api, pupil.id, video, name="v.mp4")
    assert response.status_code == 415 and response.get_json()["error"]["code"] == "unsupported_type"


def test_a_decompression_bomb_is_refused(app: Flask, api: Api, engine: FakeFaceEngine,
                                         pupil: Person) -> None:
    """More pixels than allowed: refused before decoding."""
    app.config["MAX_IMAGE_PIXELS"] = 10_000
    response = upload(api, pupil.id, photo(size=(300, 300)))
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "too_many_pixels"
    assert engine.detected == []


def test_too_large_a_photo_is_refused(app: Flask, api: Api, engine: FakeFaceEngine,
                                      pupil: Person) -> None:
    """Over the photo limit: 413."""
    app.config["MAX_PHOTO_BYTES"] = 1000
    response = upload(api, pupil.id, _big_png())
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"


def _big_png() -> bytes:
    """A PNG of a few kilobytes (noise does not compress)."""
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_matching_off_refuses_enrolment(api: Api, engine: FakeFaceEngine, app: Flask) -> None:
    """409 matching_off, before the file is even looked at."""
    person = add_person("B3")
    decide(person, "granted")
    response = conforms(upload(api, person.id, b"not even a photo"), check_request=False)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "matching_off"
    with pytest.raises(service.BiometricError) as refused:
        service.add_reference(person, photo(), actor=SYSTEM)
    assert (refused.value.code, refused.value.status) == ("matching_off", 409)
    assert engine.detected == [(200, 200)]  # the service analyses first, then refuses
    assert references() == []


@pytest.mark.parametrize("history", [[], ["refused"], ["granted", "withdrawn"]])
def test_enrolment_needs_a_valid_biometric_consent(
    api: Api, engine: FakeFaceEngine, app: Flask, history: list[str]
) -> None:
    """No answer, a refusal or a withdrawal: 409 no_biometric_consent."""
    person = add_person("B4")
    for decision in history:
        decide(person, decision)
    matching_on()
    response = conforms(upload(api, person.id, photo()), check_request=False)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "no_biometric_consent"
    assert references() == []


def test_an_expired_consent_does_not_enrol(engine: FakeFaceEngine, app: Flask) -> None:
    """A grant from two school years ago no longer counts."""
    person = add_person("B5")
    decide(person, "granted", at=utcnow() - timedelta(days=800))
    matching_on()
    with pytest.raises(service.BiometricError) as refused:
        service.add_reference(person, photo(), actor=SYSTEM)
    assert refused.value.code == "no_biometric_consent"


def test_a_person_who_left_cannot_be_enrolled(
    api: Api, engine: FakeFaceEngine, pupil: Person
) -> None:
    """Leaving ends enrolment, even with a grant on record."""
    pupil.status, pupil.left_on = "left", date.today()
    db.session.commit()
    response = upload(api, pupil.id, photo())
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "no_biometric_consent"


def test_unknown_people_and_huge_ids(api: Api, engine: FakeFaceEngine, pupil: Person) -> None:
    """404 in the API's shape, also for ids beyond any integer column."""
    for person_id in (999_999, 2**31, 10**30):
        assert upload(api, person_id, photo()).status_code == 404
        assert api("GET", f"/people/{person_id}/reference-photos").status_code == 404
        assert api("DELETE", f"/people/{person_id}/reference-photos/1").status_code == 404
    assert api("DELETE", f"/people/{pupil.id}/reference-photos/{10**30}").status_code == 404
    assert api("GET", "/people/-1/reference-photos").status_code == 404


def test_the_upload_must_be_one_file_part(api: Api, engine: FakeFaceEngine, pupil: Person) -> None:
    """Not multipart: 415; no file, the file as text, two files or extra fields: 422."""
    path = f"/people/{pupil.id}/reference-photos"
    assert api("POST", path, json={"file": "x"}).status_code == 415
    cases = [
        {},
        {"file": "just text"},
        {"file": [(io.BytesIO(photo(1)), "a.png"), (io.BytesIO(photo(2)), "b.png")]},
        {"file": (io.BytesIO(photo(1)), "a.png"), "title": "extra"},
    ]
    for data in cases:
        response = api("POST", path, data=data, content_type="multipart/form-data")
        assert response.status_code == 422, data
        assert response.get_json()["error"]["fields"]
    assert references() == []


def test_roles_for_reference_photos(api: Api, engine: FakeFaceEngine, pupil: Person) -> None:
    """Admin and communications add and delete; the DPO reads; staff does neither."""
    assert upload(api, pupil.id, photo(1), "staff").status_code == 403
    assert upload(api, pupil.id, photo(1), "dpo").status_code == 403
    reference_id = upload(api, pupil.id, photo(1), "admin").get_json()["id"]
    assert api("GET", f"/people/{pupil.id}/reference-photos", "staff").status_code == 403
    assert api("GET", f"/people/{pupil.id}/reference-photos", "dpo").status_code == 200
    path = f"/people/{pupil.id}/reference-photos/{reference_id}"
    assert api("DELETE", path, "dpo").status_code == 403
    assert api("DELETE", path, "staff").status_code == 403
    assert len(references()) == 1


def test_delete_one_reference(api: Api, engine: FakeFaceEngine, pupil: Person) -> None:
    """204, audited as by_staff; the person's unconfirmed suggestions are cleared; again: 404."""
    keep, gone = enrolled(pupil, 1), enrolled(pupil, 2)
    other = add_person("B6")
    media_id = _suggested_appearances(pupil.id)
    assert api("DELETE", f"/people/{other.id}/reference-photos/{gone}").status_code == 404
    response = conforms(api("DELETE", f"/people/{pupil.id}/reference-photos/{gone}",
                            "communications"))
    assert response.status_code == 204
    assert [r.id for r in references()] == [keep]
    assert [e.details for e in events("biometric:reference_deleted")] == [
        {"reason": "by_staff", "reference_id": gone}]
    assert _suggestions(media_id) == {"unresolved": None, "identified": pupil.id}
    assert api("DELETE", f"/people/{pupil.id}/reference-photos/{gone}").status_code == 404
    assert verify().ok


# --- keeping references within their consent ------------------------------------------------------

def _suggested_appearances(person_id: int) -> int:
    """A photo with an unconfirmed suggestion of the person and a confirmed tag of them."""
    media = Media(kind="photo", status="ready", sha256=f"{person_id:064d}", storage_key="k",
                  content_type="image/jpeg", size_bytes=1)
    media.appearances.append(Appearance(kind="face", box_x=1, box_y=1, box_w=9, box_h=9,
                                        suggested_person_id=person_id, distance=0.4))
    media.appearances.append(Appearance(kind="face", box_x=20, box_y=1, box_w=9, box_h=9,
                                        person_id=person_id, suggested_person_id=person_id,
                                        distance=0.3, resolution="identified"))
    db.session.add(media)
    db.session.commit()
    return media.id


def _suggestions(media_id: int) -> dict[str, int | None]:
    """Suggested person per resolution of the photo's appearances."""
    rows = db.session.execute(sa.select(Appearance).where(Appearance.media_id == media_id)).scalars()
    found = {}
    for row in rows:
        db.session.refresh(row)
        found[row.resolution] = row.suggested_person_id
        if row.resolution == "unresolved":
            assert row.distance is None
    return found


def test_withdrawal_deletes_references_in_the_same_transaction(
    app: Flask, tokens: dict[str, str], engine: FakeFaceEngine, pupil: Person
) -> None:
    """A guardian's withdrawal through the API deletes the references, audited as consent_ended."""
    first, second = enrolled(pupil, 1), enrolled(pupil, 2)
    media_id = _suggested_appearances(pupil.id)
    staff_api = api_caller(app, tokens, "staff")
    response = staff_api("POST", f"/people/{pupil.id}/consents", json={
        "channel": "biometric", "decision": "withdrawn", "method": "paper",
        "decided_by": f"guardian:{guardian_id(pupil)}"})
    assert response.status_code == 201
    assert references() == []
    deleted = events("biometric:reference_deleted")
    assert [e.details for e in deleted] == [
        {"reason": "consent_ended", "reference_id": first},
        {"reason": "consent_ended", "reference_id": second}]
    assert all(e.subject_id == str(pupil.id) and e.actor_type == "system" for e in deleted)
    assert _suggestions(media_id) == {"unresolved": None, "identified": pupil.id}
    assert events("biometric:suggestions_cleared")[0].details == {"reason": "consent_ended",
                                                                  "count": 1}
    assert verify().ok


def test_a_refused_decision_that_rolls_back_keeps_the_references(
    engine: FakeFaceEngine, pupil: Person
) -> None:
    """The deletion belongs to the decision's transaction: no commit, no deletion."""
    enrolled(pupil)
    record_decision(person=pupil, channel="biometric", decision="withdrawn",
                    decider_kind="guardian", guardian_id=guardian_id(pupil), method="paper",
                    actor=SYSTEM)
    db.session.rollback()
    assert len(references()) == 1


def test_a_decision_about_another_channel_keeps_the_references(
    engine: FakeFaceEngine, pupil: Person
) -> None:
    """Refusing the website leaves face matching alone."""
    enrolled(pupil)
    record_decision(person=pupil, channel="website", decision="refused", decider_kind="guardian",
                    guardian_id=guardian_id(pupil), method="paper", actor=SYSTEM)
    db.session.commit()
    assert len(references()) == 1


def test_leaving_deletes_references(api: Api, engine: FakeFaceEngine, pupil: Person) -> None:
    """A PATCH that marks the person left deletes their references, audited as person_left."""
    reference = enrolled(pupil)
    response = api("PATCH", f"/people/{pupil.id}", json={"status": "left"})
    assert response.status_code == 200
    assert references() == []
    assert [e.details for e in events("biometric:reference_deleted")] == [
        {"reason": "person_left", "reference_id": reference}]


def test_losing_the_consenting_guardian_deletes_references(
    api: Api, engine: FakeFaceEngine, pupil: Person
) -> None:
    """The grant of a guardian who is no longer linked does not count."""
    enrolled(pupil)
    response = api("PATCH", f"/people/{pupil.id}", json={
        "guardians": [{"name": "New", "email": "new@ouders.nl"}]})
    assert response.status_code == 200
    assert references() == []
    assert events("biometric:reference_deleted")[0].details["reason"] == "consent_ended"


def test_expired_consents_are_purged_and_never_matched(engine: FakeFaceEngine, pupil: Person) -> None:
    """Past the grant's end: matching_references refuses it even before the purge deletes it."""
    reference = enrolled(pupil)
    grant = db.session.execute(sa.select(ConsentRecord)).scalar_one()
    after = datetime.combine(grant.valid_until + timedelta(days=1), datetime.min.time(), UTC)
    now = service.matching_references(utcnow())
    assert [(r.person_id, r.encoding.shape) for r in now] == [(pupil.id, (128,))]
    assert service.matching_references(after) == []
    assert service.purge_expired(utcnow()) == 0
    assert service.purge_expired(after) == 1
    db.session.commit()
    assert references() == []
    assert [e.details for e in events("biometric:reference_deleted")] == [
        {"reason": "consent_ended", "reference_id": reference}]


def test_from_sixteen_the_pupils_own_refusal_ends_the_guardians_grant(
    engine: FakeFaceEngine, app: Flask
) -> None:
    """The guardian's earlier grant counts until the pupil, now 16, decides otherwise."""
    today = date.today()
    birth = date(today.year - 16, today.month, min(today.day, 28)) + timedelta(days=20)
    person = add_person("B7", birth_date=birth)
    decide(person, "granted")
    matching_on()
    reference = enrolled(person)
    sixteen = datetime.combine(birth.replace(year=birth.year + 16), datetime.min.time(),
                               UTC) + timedelta(hours=12)
    record_decision(person=person, channel="biometric", decision="refused", decider_kind="pupil",
                    guardian_id=None, method="paper", actor=SYSTEM, at=sixteen)
    db.session.commit()
    assert references() == []
    assert [e.details for e in events("biometric:reference_deleted")] == [
        {"reason": "consent_ended", "reference_id": reference}]


def test_the_hourly_job_is_registered_and_purges(engine: FakeFaceEngine, pupil: Person) -> None:
    """The periodic job runs purge_expired and commits."""
    jobs = registered_jobs()
    name = next(n for n in jobs if n.endswith("purge_expired_references_hourly"))
    enrolled(pupil)
    jobs[name]()
    assert len(references()) == 1  # the consent still holds


def test_matching_references_only_for_active_consenting_people(
    engine: FakeFaceEngine, pupil: Person
) -> None:
    """A reference without consent (inserted behind the service's back) or of a leaver is not used."""
    enrolled(pupil)
    stranger, leaver = add_person("B8"), add_person("B9")
    decide(leaver, "granted")
    for person in (stranger, leaver):
        db.session.add(FaceReference(person_id=person.id, encoding=encoding_bytes(np.ones(128)),
                                     photo_sha256="f" * 64))
    leaver.status = "left"
    db.session.commit()
    assert [r.person_id for r in service.matching_references(utcnow())] == [pupil.id]
    assert service.purge_expired(utcnow()) == 2
    reasons = {e.details["reason"] for e in events("biometric:reference_deleted")}
    assert reasons == {"consent_ended", "person_left"}


def test_delete_reference_refuses_unknown_reasons(engine: FakeFaceEngine, pupil: Person) -> None:
    """The reasons are a closed list."""
    reference = db.session.get(FaceReference, enrolled(pupil))
    with pytest.raises(ValueError):
        service.delete_reference(reference, actor=SYSTEM, reason="because")


# --- the real engine -----------------------------------------------------------------------------

def test_real_engine_enrols_one_face_and_refuses_a_group(api: Api, pupil: Person) -> None:
    """A public enrolment photo gives one 128-d reference; a group photo is refused with its count."""
    enrol = SHARED_DATA / "enroll" / "barack_obama.jpg"
    response = upload(api, pupil.id, enrol.read_bytes(), name=enrol.name)
    assert response.status_code == 201, response.get_json()
    vector = references()[0].vector()
    assert vector.shape == (128,) and 0.5 < np.linalg.norm(vector) < 1.5
    group = upload(api, pupil.id, (SHARED_DATA / "groups" / "g01.jpg").read_bytes())
    assert group.status_code == 422
    error = group.get_json()["error"]
    assert error["code"] == "not_one_face"
    found = int(re.search(r"\d+", error["message"]).group())
    assert found >= 2
    assert len(references()) == 1


# --- pages --------------------------------------------------------------------------------------

def test_settings_page_for_admin_and_dpo(logged_in) -> None:
    """The admin sees the form and the warning; the DPO reads only; staff may not look."""
    admin = logged_in("admin")
    html = admin.get("/settings/face-matching").get_data(as_text=True)
    assert 'name="dpia_reference"' in html and 'name="csrf_token"' in html
    assert "deletes every reference" in html
    assert "/settings/face-matching" in admin.get("/people/").get_data(as_text=True)
    dpo = logged_in("dpo").get("/settings/face-matching")
    assert dpo.status_code == 200 and 'name="dpia_reference"' not in dpo.get_data(as_text=True)
    assert logged_in("staff").get("/settings/face-matching").status_code == 403
    assert logged_in("dpo").post("/settings/face-matching", data={}).status_code == 403


def test_settings_form_switches_with_csrf_and_dpia(logged_in, engine: FakeFaceEngine,
                                                   app: Flask) -> None:
    """No CSRF token: 400; on without DPIA: 422; on with DPIA: saved; off asks for confirmation."""
    admin = logged_in("admin")
    assert admin.post("/settings/face-matching",
                      data={"enabled": "1", "dpia_reference": DPIA}).status_code == 400
    token = csrf_token(admin, "/settings/face-matching")
    refused = admin.post("/settings/face-matching",
                         data={"enabled": "1", "dpia_reference": " ", "csrf_token": token})
    assert refused.status_code == 422 and "DPIA" in refused.get_data(as_text=True)
    assert admin.post("/settings/face-matching", data={"enabled": "maybe", "csrf_token": token}
                      ).status_code == 422
    saved = admin.post("/settings/face-matching",
                       data={"enabled": "1", "dpia_reference": DPIA, "csrf_token": token})
    assert saved.status_code == 303 and service.face_matching_enabled()
    person = add_person("W1")
    decide(person, "granted")
    enrolled(person)
    unconfirmed = admin.post("/settings/face-matching", data={"enabled": "0", "csrf_token": token})
    assert unconfirmed.status_code == 200 and len(references()) == 1  # a page that asks first
    asked = unconfirmed.get_data(as_text=True)
    assert "(1 now)" in asked and 'class="danger"' in asked
    assert 'name="confirmed" value="yes"' in asked and service.face_matching_enabled()
    confirmed = admin.post("/settings/face-matching", data={
        "enabled": "0", "confirm": "1", "confirmed": "yes", "csrf_token": token})
    assert confirmed.status_code == 303
    assert not service.face_matching_enabled() and references() == []


def test_person_page_section(logged_in, engine: FakeFaceEngine, app: Flask) -> None:
    """The section says why no photo can be added, or offers the upload; staff sees only a count."""
    person = add_person("W2")
    communications = logged_in("communications")
    page = communications.get(f"/people/{person.id}").get_data(as_text=True)
    assert "Reference photos for face matching" in page
    assert "switched off" in page and 'name="file"' not in page
    matching_on()
    page = communications.get(f"/people/{person.id}").get_data(as_text=True)
    assert "no valid consent for face matching" in page and 'name="file"' not in page
    decide(person, "granted")
    page = communications.get(f"/people/{person.id}").get_data(as_text=True)
    assert 'name="file"' in page
    staff_page = logged_in("staff").get(f"/people/{person.id}").get_data(as_text=True)
    assert "Reference photos for face matching" in staff_page and 'name="file"' not in staff_page


def test_person_page_upload_and_delete(logged_in, engine: FakeFaceEngine, app: Flask) -> None:
    """Upload and delete through the page's forms, with CSRF; refusals are shown on the page."""
    person = add_person("W3")
    decide(person, "granted")
    matching_on()
    client = logged_in("communications")
    path = f"/people/{person.id}/reference-photos"
    no_csrf = client.post(path, data={"file": (io.BytesIO(photo(1)), "a.png")},
                          content_type="multipart/form-data")
    assert no_csrf.status_code == 400 and references() == []
    token = csrf_token(client, f"/people/{person.id}")
    engine.boxes = TWO_FACES
    two = client.post(path, data={"file": (io.BytesIO(photo(1)), "a.png"), "csrf_token": token},
                      content_type="multipart/form-data")
    assert two.status_code == 422 and "2 were found" in two.get_data(as_text=True)
    assert client.post(path, data={"csrf_token": token}).status_code == 422
    engine.boxes = ONE_FACE
    added = client.post(path, data={"file": (io.BytesIO(photo(1)), "a.png"), "csrf_token": token},
                        content_type="multipart/form-data")
    assert added.status_code == 303 and len(references()) == 1
    reference_id = references()[0].id
    page = client.get(f"/people/{person.id}").get_data(as_text=True)
    assert f"/reference-photos/{reference_id}/delete" in page
    delete_path = f"{path}/{reference_id}/delete"
    assert client.post(delete_path).status_code == 400
    assert client.post(f"{path}/{10**30}/delete", data={"csrf_token": token}).status_code == 404
    assert logged_in("staff").post(delete_path, data={"csrf_token": token}).status_code == 403
    assert client.post(delete_path, data={"csrf_token": token}).status_code == 303
    assert references() == []
    assert events("biometric:reference_deleted")[0].details["reason"] == "by_staff"
