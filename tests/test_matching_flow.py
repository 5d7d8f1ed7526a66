"""Matching inside analysis: suggestions only when switched on and somebody is enrolled; nothing kept.

The quality bars of the media issue are checked end to end here: enrolment photos added through the
reference-photo service, probes and group photos uploaded through the API and analysed by the real
engine, suggestions read back from the API.
"""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fake_face_engine import FakeFaceEngine, vector_for
from flask import Flask

from consent_registry.audit import SYSTEM, Actor, AuditEvent
from consent_registry.biometrics import service as biometrics
from consent_registry.biometrics.models import FaceReference
from consent_registry.consent.service import record_decision
from consent_registry.db import db, utcnow
from consent_registry.media import analysis
from consent_registry.media.faces import Box
from consent_registry.media.models import Appearance, Media
from consent_registry.people.models import Person
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person

from api_helpers import api_caller
from conftest import SHARED_DATA

MANIFEST = json.loads((SHARED_DATA / "manifest.json").read_text(encoding="utf-8"))
FACE = Box(40, 30, 60, 60)
OTHER = Box(200, 30, 60, 60)


def _admin(app: Flask) -> Actor:
    """The admin user as an actor."""
    from consent_registry.auth.models import User

    return Actor("user", db.session.execute(
        sa.select(User.id).where(User.role == "admin")).scalars().first())


def _enrollable(name: str, *, consent: bool = True) -> Person:
    """An adult staff member (they decide for themselves) with, optionally, a biometric grant."""
    person = create_person(PersonCreate(
        external_id=f"x-{name}", given_name=name.split("_")[0].title(), family_name="Test",
        birth_date=date(1980, 1, 1), role="staff"), actor=SYSTEM)
    if consent:
        record_decision(person=person, channel="biometric", decision="granted", decider_kind="self",
                        guardian_id=None, method="in-person", actor=SYSTEM)
    db.session.commit()
    return person


def _switch_on(app: Flask) -> None:
    """Matching on, with a DPIA reference."""
    biometrics.set_face_matching(enabled=True, dpia_reference="DPIA-2026-01", actor=_admin(app))
    db.session.commit()


def _photo_bytes(size: tuple[int, int] = (320, 240), shade: int = 90) -> bytes:
    """A plain JPEG; the fake engine decides what faces it holds."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (shade, 120, 150)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _upload(app: Flask, tokens: dict[str, str], data: bytes, name: str = "photo.jpg") -> dict:
    """Upload through the API (jobs run inline in tests) and read the analysed item back."""
    api = api_caller(app, tokens, "communications")
    response = api("POST", "/media", data={"file": (io.BytesIO(data), name)},
                   content_type="multipart/form-data")
    assert response.status_code in (200, 201), response.get_json()
    return api("GET", f"/media/{response.get_json()['id']}").get_json()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeFaceEngine:
    """A fake engine with two faces in every photo; counts the encodings it is asked for."""
    engine = FakeFaceEngine([FACE, OTHER])
    monkeypatch.setattr(analysis, "engine", lambda: engine)
    return engine


def _enrol_fake(app: Flask, person: Person, box: Box, fake: FakeFaceEngine) -> None:
    """Enrol a person with the fake encoding of `box` (one face in the reference photo)."""
    fake.vectors[FACE] = vector_for(box)
    single = FakeFaceEngine([FACE], vectors={FACE: vector_for(box)})
    original = analysis.engine
    analysis.engine = lambda: single  # type: ignore[assignment]
    try:
        biometrics.add_reference(person, _photo_bytes(shade=person.id % 200), actor=_admin(app))
    finally:
        analysis.engine = original  # type: ignore[assignment]
    fake.vectors.pop(FACE)
    db.session.commit()


# --- matching off, or nobody enrolled: nothing is encoded ------------------------------------------

def test_with_matching_off_no_face_is_encoded(app: Flask, tokens: dict[str, str],
                                              fake: FakeFaceEngine) -> None:
    body = _upload(app, tokens, _photo_bytes())
    assert body["status"] == "ready" and len(body["appearances"]) == 2
    assert fake.encoded == []
    assert all(a["suggested_person_id"] is None and a["distance"] is None for a in body["appearances"])


def test_with_matching_on_but_nobody_enrolled_no_face_is_encoded(app: Flask, tokens: dict[str, str],
                                                                 fake: FakeFaceEngine) -> None:
    _switch_on(app)
    _enrollable("no_reference")  # consent, but no reference photo
    body = _upload(app, tokens, _photo_bytes())
    assert body["status"] == "ready" and fake.encoded == []


# --- matching on ----------------------------------------------------------------------------------------

def test_an_enrolled_face_is_suggested_and_a_stranger_is_not(app: Flask, tokens: dict[str, str],
                                                             fake: FakeFaceEngine) -> None:
    _switch_on(app)
    alice = _enrollable("alice")
    _enrol_fake(app, alice, OTHER, fake)  # alice's reference encodes like the face at OTHER
    body = _upload(app, tokens, _photo_bytes())
    assert fake.encoded == [[FACE, OTHER]]
    by_box = {(a["box"]["x"]): a for a in body["appearances"]}
    assert by_box[OTHER.x]["suggested_person_id"] == alice.id
    assert by_box[OTHER.x]["distance"] == pytest.approx(0.0, abs=1e-6)
    assert by_box[OTHER.x]["resolution"] == "unresolved" and by_box[OTHER.x]["person_id"] is None
    assert by_box[FACE.x]["suggested_person_id"] is None and by_box[FACE.x]["distance"] is None
    # the only encodings stored are the reference's: the stranger's face left no trace
    stored = db.session.execute(sa.select(FaceReference)).scalars().all()
    assert [r.person_id for r in stored] == [alice.id]
    assert np.allclose(stored[0].vector(), vector_for(OTHER))
    event = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "media:analysed")).scalars().one()
    assert event.details == {"faces": 2, "voices": 0, "sound_without_speech": 0, "matching": True,
                             "voice_matching": False, "suggestions": 1}


def test_auto_accept_tags_below_the_stricter_distance_and_is_audited(
    app: Flask, tokens: dict[str, str], fake: FakeFaceEngine
) -> None:
    from consent_registry.media.matching import MatchPolicy

    app.config["MATCH_POLICY"] = MatchPolicy(auto_accept_below=0.3)
    _switch_on(app)
    alice = _enrollable("alice")
    _enrol_fake(app, alice, OTHER, fake)
    body = _upload(app, tokens, _photo_bytes())
    (tagged,) = [a for a in body["appearances"] if a["person_id"] is not None]
    assert tagged["person_id"] == alice.id and tagged["resolution"] == "identified"
    row = db.session.get(Appearance, tagged["id"])
    assert row.auto_accepted and row.resolved_by is None and row.resolved_at is not None
    event = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "appearance:auto_accepted")).scalars().one()
    assert event.details["appearance_id"] == row.id and event.details["person_id"] == alice.id


def test_people_without_valid_consent_are_never_suggested(app: Flask, tokens: dict[str, str],
                                                          fake: FakeFaceEngine) -> None:
    """A reference whose consent has ended (and was somehow not purged yet) is not used."""
    _switch_on(app)
    alice = _enrollable("alice")
    _enrol_fake(app, alice, OTHER, fake)
    # Expire the grant behind the purge's back: matching must check consent itself.
    with_time = utcnow() + timedelta(days=800)
    assert biometrics.matching_references(with_time) == []
    import time_machine

    with time_machine.travel(with_time, tick=False):
        body = _upload(app, tokens, _photo_bytes(shade=30))
    assert all(a["suggested_person_id"] is None for a in body["appearances"])
    assert fake.encoded == []  # nobody enrolled validly: nothing to compare with, nothing encoded


def test_a_withdrawal_during_the_run_drops_the_suggestion(app: Flask, tokens: dict[str, str],
                                                          fake: FakeFaceEngine,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Consent withdrawn while a (long) analysis runs: its result must not suggest that person."""
    _switch_on(app)
    alice = _enrollable("alice")
    _enrol_fake(app, alice, OTHER, fake)
    alice_id = alice.id
    db.session.commit()  # the test's own session holds no transaction (SQLite's write lock) now
    detect = fake.detect

    def detect_then_withdraw(image):  # the withdrawal arrives while faces are looked for
        found = detect(image)
        record_decision(person=db.session.get(Person, alice_id), channel="biometric",
                        decision="withdrawn", decider_kind="self", guardian_id=None,
                        method="email-link", actor=SYSTEM)
        db.session.commit()
        return found

    monkeypatch.setattr(fake, "detect", detect_then_withdraw)
    body = _upload(app, tokens, _photo_bytes(shade=10))
    assert body["status"] == "ready"
    assert all(a["suggested_person_id"] is None for a in body["appearances"])


def test_a_broken_matching_setting_fails_at_start() -> None:
    from consent_registry import create_app

    with pytest.raises(ValueError, match="MATCH_THRESHOLD"):
        create_app({"DATABASE_URL": "sqlite://"}, environ={"CONSENT_REGISTRY_ENV": "test",
                                                          "CONSENT_REGISTRY_MATCH_THRESHOLD": "half"})
    with pytest.raises(ValueError, match="auto_accept_below"):
        create_app({"DATABASE_URL": "sqlite://", "MATCH_AUTO_ACCEPT_BELOW": 0.9},
                   environ={"CONSENT_REGISTRY_ENV": "test"})


# --- the quality bars on the public set, end to end with the real engine ------------------------------

def _entries(*roles: str) -> list[dict]:
    return [e for e in MANIFEST if e["kind"] == "image" and e["role"] in roles]


@pytest.mark.slow
@pytest.mark.one_backend
def test_public_set_quality_bars_through_the_service(app: Flask, tokens: dict[str, str]) -> None:
    """Enrol the enrolment photos through the reference service; upload every probe and group photo.

    Every probe of an enrolled person gets the right suggestion or none; nobody who is not enrolled
    is suggested as anyone, in probes or in group photos; group faces are suggested only as people
    in that photo."""
    _switch_on(app)
    ids: dict[str, int] = {}
    for entry in _entries("enroll"):
        (identity,) = entry["identities"]
        person = _enrollable(identity)
        biometrics.add_reference(person, (SHARED_DATA / entry["file"]).read_bytes(), actor=_admin(app))
        db.session.commit()
        ids[identity] = person.id
    names = {v: k for k, v in ids.items()}
    right = none = 0
    for entry in _entries("probe", "negative", "group"):
        body = _upload(app, tokens, (SHARED_DATA / entry["file"]).read_bytes(), Path(entry["file"]).name)
        assert body["status"] == "ready", (entry["file"], body["failure_reason"])
        suggested = [names[a["suggested_person_id"]] for a in body["appearances"]
                     if a["suggested_person_id"] is not None]
        if entry["role"] == "group":
            assert set(suggested) <= set(entry["identities"]) & set(ids), (entry["file"], suggested)
            assert len(suggested) == len(set(suggested)), (entry["file"], suggested)
            continue
        expected = entry.get("expected_match")
        if expected is None:
            assert suggested == [], (entry["file"], suggested)
        else:
            assert suggested in ([expected], []), (entry["file"], suggested)
            right += suggested == [expected]
            none += suggested == []
    assert right >= 10, (right, none)  # measured 12 of 13 (media/matching.py); a floor, not a target
    # nothing but the references holds an encoding
    assert db.session.execute(sa.select(sa.func.count()).select_from(FaceReference)).scalar_one() == len(ids)


@pytest.mark.slow
@pytest.mark.one_backend
def test_public_video_tracks_are_suggested_as_the_right_people_or_nobody(
    app: Flask, tokens: dict[str, str]
) -> None:
    """v01 with the enrolled people: each track's suggestion is someone seen in its shot, or none."""
    _switch_on(app)
    ids: dict[str, int] = {}
    for entry in _entries("enroll"):
        (identity,) = entry["identities"]
        person = _enrollable(identity)
        biometrics.add_reference(person, (SHARED_DATA / entry["file"]).read_bytes(), actor=_admin(app))
        db.session.commit()
        ids[identity] = person.id
    names = {v: k for k, v in ids.items()}
    (video,) = [e for e in MANIFEST if e["file"] == "video/v01.mp4"]
    body = _upload(app, tokens, (SHARED_DATA / video["file"]).read_bytes(), "v01.mp4")
    assert body["status"] == "ready" and body["appearances"]
    suggestions = 0
    for track in body["appearances"]:
        if track["suggested_person_id"] is None:
            continue
        suggestions += 1
        name = names[track["suggested_person_id"]]
        start, end = track["segments"][0][0], track["segments"][-1][1]
        shots = [s for s in video["segments"] if s["t"][0] - 0.1 <= start and end <= s["t"][1] + 0.1]
        assert shots and name in shots[0]["identities"], (track["segments"], name)
    assert suggestions >= 1  # the singer, frontal for four seconds, is recognised
    assert db.session.execute(sa.select(sa.func.count()).select_from(Media)).scalar_one() == 1
