"""Voices end to end: upload, analysis to `ready` with voice appearances, tagging, the gate, and
opt-in voice matching with reference recordings, through the API with the real engine."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from flask import Flask

from consent_registry.audit import SYSTEM, Actor, AuditEvent, verify
from consent_registry.biometrics import service as biometrics
from consent_registry.biometrics.models import VoiceReference
from consent_registry.consent.service import record_decision
from consent_registry.db import db
from consent_registry.media import analysis
from consent_registry.media.models import Appearance
from consent_registry.people.models import Person
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person

from api_helpers import api_caller, conforms
from fake_voice_engine import FakeVoiceEngine, voice_vector
from voice_clips import conversation, flac_bytes, music

pytestmark = pytest.mark.slow

# The real engine's work does not depend on the database; the wiring tests run on both.
real_engine = pytest.mark.one_backend


def adult(name: str, *, channels: tuple[str, ...] = (), biometric: bool = False) -> Person:
    """A staff member (decides for themselves) with grants for the given channels."""
    person = create_person(PersonCreate(external_id=f"v-{name}", given_name=name, family_name="Stem",
                                        birth_date=date(1985, 6, 1), role="staff"), actor=SYSTEM)
    for channel in (*channels, *(("biometric",) if biometric else ())):
        record_decision(person=person, channel=channel, decision="granted", decider_kind="self",
                        guardian_id=None, method="in-person", actor=SYSTEM)
    db.session.commit()
    return person


def admin_actor() -> Actor:
    """The admin user as an actor."""
    from consent_registry.auth.models import User

    return Actor("user", db.session.execute(
        sa.select(User.id).where(User.role == "admin")).scalars().first())


def upload(app: Flask, tokens: dict[str, str], data: bytes, name: str = "talk.flac") -> dict[str, Any]:
    """Upload through the API (jobs run inline in tests) and read the analysed item back."""
    api = api_caller(app, tokens, "communications")
    response = conforms(api("POST", "/media", data={"file": (io.BytesIO(data), name)},
                            content_type="multipart/form-data"), check_request=False)
    assert response.status_code in (200, 201), response.get_json()
    return conforms(api("GET", f"/media/{response.get_json()['id']}")).get_json()


def gate(app: Flask, tokens: dict[str, str], media_id: int, channel: str = "website") -> dict[str, Any]:
    """The gate's decision from the API."""
    api = api_caller(app, tokens, "communications")
    return conforms(api("GET", f"/media/{media_id}/gate?channel={channel}&attest=true")).get_json()


def test_two_voices_upload_to_ready_and_block_until_tagged_and_consented(
        app: Flask, tokens: dict[str, str], tmp_path: Path, logged_in: Any) -> None:
    """The issue's done-when: two voices, both must be tagged and consented before publishing."""
    talk = conversation(["1688-0000", "1998-0001"])
    item = upload(app, tokens, flac_bytes(talk.samples, tmp_path))
    assert item["kind"] == "audio" and item["status"] == "ready"
    voices = [a for a in item["appearances"] if a["kind"] == "voice"]
    assert len(voices) == 2 and len(item["appearances"]) == 2
    first_end = 15.0 + 0.6
    assert all(s < first_end for s, _e in voices[0]["segments"])
    assert all(s >= first_end - 0.3 for s, _e in voices[1]["segments"])
    assert all(v["box"] is None and v["resolution"] == "unresolved" for v in voices)

    api = api_caller(app, tokens, "communications")
    decision = gate(app, tokens, item["id"])
    assert not decision["allowed"]
    assert {(b["appearance_id"], b["reason"]) for b in decision["blockers"]} == {
        (voices[0]["id"], "unresolved"), (voices[1]["id"], "unresolved")}
    # the tagger can listen to each voice: a WAV snippet, to logged-in staff only
    client = logged_in("communications")
    snippet = client.get(f"/media/{item['id']}/appearances/{voices[0]['id']}/crop")
    assert snippet.status_code == 200 and snippet.mimetype == "audio/wav"
    assert snippet.data[:4] == b"RIFF"
    assert app.test_client().get(
        f"/media/{item['id']}/appearances/{voices[0]['id']}/crop").status_code in (302, 401)
    page = client.get(f"/media/{item['id']}")
    assert page.status_code == 200 and b"<audio" in page.data

    # a voice cannot be "blurred": the published file keeps the sound
    refused = conforms(api("PATCH", f"/media/{item['id']}/appearances/{voices[0]['id']}",
                           json={"resolution": "blur"}))
    assert refused.status_code == 422

    speaker, other = adult("Piet", channels=("website",)), adult("Anna")
    for voice, person in ((voices[0], speaker), (voices[1], other)):
        tagged = conforms(api("PATCH", f"/media/{item['id']}/appearances/{voice['id']}",
                              json={"person_id": person.id}))
        assert tagged.status_code == 200, tagged.get_json()
    decision = gate(app, tokens, item["id"])
    assert [(b["person_id"], b["reason"]) for b in decision["blockers"]] == [(other.id, "no_consent")]
    blocked = conforms(api("POST", f"/media/{item['id']}/publish",
                           json={"channel": "website", "attest": True}))
    assert blocked.status_code == 409

    record_decision(person=db.session.get(Person, other.id), channel="website", decision="granted",
                    decider_kind="self", guardian_id=None, method="in-person", actor=SYSTEM)
    db.session.commit()
    assert gate(app, tokens, item["id"])["allowed"]
    published = conforms(api("POST", f"/media/{item['id']}/publish",
                             json={"channel": "website", "attest": True}))
    assert published.status_code == 201, published.get_json()
    analysed = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "media:analysed")).scalars().one()
    assert analysed.details["voices"] == 2 and analysed.details["voice_matching"] is False
    assert verify().ok


@real_engine
def test_music_alone_is_one_sound_for_a_human_to_hear(app: Flask, tokens: dict[str, str],
                                                      tmp_path: Path) -> None:
    """A recording of music: the detector hears no speech, but the sound is loud, so somebody makes
    it. It is one voice to resolve (issue 12: no speech found never reads as "nobody there");
    marked not recognisable by a human, the gate only asks for the attestation."""
    item = upload(app, tokens, flac_bytes(music(6.0), tmp_path), "band.flac")
    assert item["status"] == "ready"
    [sound] = item["appearances"]
    assert sound["kind"] == "voice" and sound["resolution"] == "unresolved"
    assert not gate(app, tokens, item["id"])["allowed"]
    api = api_caller(app, tokens, "communications")
    cleared = api("PATCH", f"/media/{item['id']}/appearances/{sound['id']}",
                  json={"resolution": "not_recognisable"})
    assert cleared.status_code == 200, cleared.get_json()
    assert gate(app, tokens, item["id"])["allowed"]


def test_a_face_and_a_voice_of_one_person_count_once(app: Flask, tokens: dict[str, str],
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    """In a video, the same person's face and voice: one person in the decision, one consent asked."""
    from consent_registry.media.models import Media
    from consent_registry.publishing.gate_service import gate_for, missing_people

    media = Media(kind="video", status="ready", voices_analysed=True, sha256="f" * 64,
                  storage_key="media/none", content_type="video/mp4", size_bytes=1, width=640,
                  height=360, duration_s=10.0)
    db.session.add(media)
    db.session.flush()
    person = adult("Kees")
    for kind, box in (("face", (10, 10, 50, 50)), ("voice", (None, None, None, None))):
        db.session.add(Appearance(media_id=media.id, kind=kind, box_x=box[0], box_y=box[1],
                                  box_w=box[2], box_h=box[3], segments=[[0.0, 4.0]],
                                  person_id=person.id, resolution="identified"))
    db.session.commit()
    decision = gate_for(db.session.get(Media, media.id), "website", attested=True)
    assert [p.person_id for p in decision.people] == [person.id]
    assert [p.id for p in missing_people(db.session.get(Media, media.id), "website")] == [person.id]


# --- voice matching ---------------------------------------------------------------------------------

def enrol(app: Flask, tokens: dict[str, str], person: Person, data: bytes,
          role: str = "communications") -> Any:
    """POST a reference recording through the API."""
    api = api_caller(app, tokens, role)
    return conforms(api("POST", f"/people/{person.id}/reference-voices",
                        data={"file": (io.BytesIO(data), "me.flac")},
                        content_type="multipart/form-data"), check_request=False)


def test_voice_matching_suggests_the_enrolled_and_nobody_else(app: Flask, tokens: dict[str, str],
                                                              tmp_path: Path) -> None:
    """Off: no references, no suggestions. On: enrolled speakers suggested, a stranger not."""
    piet, anna = adult("Piet", biometric=True), adult("Anna", biometric=True)
    refused = enrol(app, tokens, piet, flac_bytes(conversation(["1688-0000"]).samples, tmp_path))
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "matching_off"

    api = api_caller(app, tokens, "admin")
    # The document itself requires a DPIA reference to switch on: only the answer is checked.
    refused = api("PUT", "/settings/voice-matching", json={"enabled": True})
    assert conforms(refused, check_request=False).status_code == 422
    switched = conforms(api("PUT", "/settings/voice-matching",
                            json={"enabled": True, "dpia_reference": "DPIA-2026-07"}))
    assert switched.status_code == 200 and switched.get_json()["enabled"] is True
    assert conforms(api("GET", "/settings/face-matching")).get_json()["enabled"] is False

    for person, name in ((piet, "1688-0000"), (anna, "1998-0000")):
        added = enrol(app, tokens, person, flac_bytes(conversation([name]).samples, tmp_path))
        assert added.status_code == 201, added.get_json()
    listed = conforms(api("GET", f"/people/{piet.id}/reference-voices")).get_json()
    assert len(listed["items"]) == 1 and "encoding" not in listed["items"][0]

    talk = conversation(["1998-0001", "2033-0001", "1688-0001"])
    item = upload(app, tokens, flac_bytes(talk.samples, tmp_path))
    suggested = [a["suggested_person_id"] for a in item["appearances"]]
    assert suggested == [anna.id, None, piet.id]
    assert all(a["resolution"] == "unresolved" for a in item["appearances"])
    # only the two references are stored: nothing of the stranger's voice
    assert db.session.query(VoiceReference).count() == 2

    # the consent ends: the reference goes (audited) and the unconfirmed suggestion with it
    record_decision(person=db.session.get(Person, piet.id), channel="biometric", decision="withdrawn",
                    decider_kind="self", guardian_id=None, method="in-person", actor=SYSTEM)
    db.session.commit()
    assert db.session.query(VoiceReference).filter_by(person_id=piet.id).count() == 0
    deleted = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "biometric:reference_deleted")).scalars().all()
    assert [(e.subject_id, e.details["modality"], e.details["reason"]) for e in deleted] == [
        (str(piet.id), "voice", "consent_ended")]
    again = conforms(api_caller(app, tokens, "communications")("GET", f"/media/{item['id']}"))
    assert [a["suggested_person_id"] for a in again.get_json()["appearances"]] == [anna.id, None, None]

    # switching voice matching off deletes every voice reference
    assert conforms(api("PUT", "/settings/voice-matching", json={"enabled": False})).status_code == 200
    assert db.session.query(VoiceReference).count() == 0
    assert verify().ok


@real_engine
def test_reference_recordings_refuse_bad_input(app: Flask, tokens: dict[str, str],
                                               tmp_path: Path) -> None:
    """Two voices or too little speech 422, a photo 415, no consent 409, staff 403; nothing kept."""
    biometrics.set_voice_matching(enabled=True, dpia_reference="DPIA-1", actor=admin_actor())
    db.session.commit()
    piet, stranger = adult("Piet", biometric=True), adult("Joop")
    two = enrol(app, tokens, piet, flac_bytes(conversation(["1688-0000", "1998-0001"]).samples,
                                              tmp_path))
    assert two.status_code == 422 and two.get_json()["error"]["code"] == "not_one_voice"
    short = conversation(["1998-0001"]).samples[:int(1.5 * 16000)]
    too_short = enrol(app, tokens, piet, flac_bytes(short, tmp_path, "short.flac"))
    assert too_short.status_code == 422 and too_short.get_json()["error"]["code"] == "not_one_voice"
    silence = enrol(app, tokens, piet, flac_bytes(np.zeros(16000 * 4, np.float32), tmp_path, "s.flac"))
    assert silence.status_code == 422
    photo = io.BytesIO()
    from PIL import Image
    Image.new("RGB", (64, 64)).save(photo, format="PNG")
    assert enrol(app, tokens, piet, photo.getvalue()).status_code == 415
    assert enrol(app, tokens, piet, b"RIFF\x00\x00\x00\x00WAVEbroken").status_code in (415, 422)
    good = flac_bytes(conversation(["2033-0000"]).samples, tmp_path, "good.flac")
    assert enrol(app, tokens, stranger, good).status_code == 409
    assert enrol(app, tokens, piet, good, role="staff").status_code == 403
    assert db.session.query(VoiceReference).count() == 0
    assert enrol(app, tokens, piet, good).status_code == 201
    assert enrol(app, tokens, piet, good).status_code == 409  # the same recording twice


def test_analysis_with_a_fake_engine_writes_voices_and_marks_sound_analysed(
        app: Flask, tokens: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The analysis job's wiring, fast: the engine's speakers become voice appearances."""
    engine = FakeVoiceEngine([(0.5, 2.0, voice_vector(1)), (3.0, 4.5, voice_vector(2)),
                              (5.0, 5.8, voice_vector(1))])
    monkeypatch.setattr(analysis, "voice_engine", lambda: engine)
    item = upload(app, tokens, flac_bytes(np.zeros(16000 * 6, np.float32) + 0.01, tmp_path))
    assert [a["segments"] for a in item["appearances"]] == [[[0.5, 2.0], [5.0, 5.8]], [[3.0, 4.5]]]
    media = db.session.get(analysis.Media, item["id"])
    assert media.voices_analysed is True
    assert engine.heard_s == pytest.approx(6.0, abs=0.05)


def test_items_analysed_before_voices_are_listened_to_once_keeping_their_tags(
        app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`flask media listen`: an older install's ready recording gets its voices, its tags stay."""
    from consent_registry.media.ingest import Limits, ingest_stream
    from consent_registry.storage import get_storage

    engine = FakeVoiceEngine([(0.5, 2.5, voice_vector(3))])
    monkeypatch.setattr(analysis, "voice_engine", lambda: engine)
    media = ingest_stream(io.BytesIO(flac_bytes(np.full(16000 * 3, 0.01, np.float32), tmp_path)),
                          limits=Limits.from_config(app.config), storage=get_storage(),
                          actor=SYSTEM, uploaded_by=None).media
    piet = adult("Piet")
    media.status, media.voices_analysed = "ready", False  # as an install before voices left it
    db.session.add(Appearance(media_id=media.id, kind="voice", source="manual", person_id=piet.id,
                              resolution="identified"))
    media_id = media.id
    db.session.commit()
    assert analysis.unheard_items() == [media_id]

    result = app.test_cli_runner().invoke(args=["media", "listen"])
    assert result.exit_code == 0 and "queued for sound analysis: 1" in result.output
    db.session.expire_all()
    media = db.session.get(analysis.Media, media_id)
    assert media.voices_analysed is True
    kinds = [(a.source, a.person_id, a.segments) for a in media.appearances]
    assert kinds == [("manual", piet.id, None), ("detected", None, [[0.5, 2.5]])]
    assert analysis.unheard_items() == []
    again = app.test_cli_runner().invoke(args=["media", "listen"])
    assert "queued for sound analysis: 0" in again.output
    assert db.session.query(AuditEvent).filter_by(action="media:voices_analysed").count() == 1
