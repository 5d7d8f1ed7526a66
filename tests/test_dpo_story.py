"""The data protection officer's story of issue 7 in one test, after the publication story of issue 6.

The publication story runs as in tests/test_publication_story.py (real faces, real SMTP, the fake
Graph server): a pupil of 12 with two guardians and a classmate; the real group photo g01 uploaded
through the API; the pupil tagged, the classmate tagged and blurred; publishing blocked; consent
asked by the media page's button and granted by guardian A through the e-mailed link; published on
Facebook; guardian A withdraws through the confirmation e-mail's link; the fake sees the DELETE.

Then the DPO, through the API and the pages, reads the pupil's file, the publication's proof and a
subject-access ZIP (each holds exactly the right records, nothing of the classmate); the admin
erases the pupil through the page; no personal field of the pupil or their guardians remains in any
table, their appearance crop is gone from storage, and `flask audit verify` passes.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import test_publication_story as story
from flask import Flask
from test_renditions import _g01_similarity

from consent_registry.audit import SYSTEM
from consent_registry.consent.models import ConsentRecipient, ConsentRecord, ConsentText
from consent_registry.consent.service import effective_for
from consent_registry.db import db
from consent_registry.media.faces import Box
from consent_registry.media.models import Appearance
from consent_registry.people.models import Guardian, Person
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person
from consent_registry.publishing.models import Publication
from consent_registry.storage import get_storage

from conftest import SHARED_DATA, bearer, values_in_database

PHOTO = SHARED_DATA / "groups" / "g01.jpg"  # two counted faces (manifest.json)
# Distinctive values, so the scan after the erasure cannot hit them by chance (in a hash, a token).
GIVEN, FAMILY, EXTERNAL_ID = "Fenneke", "Zwanenburg", "S12-Z7731"
PUPIL_EMAIL = "fenneke.zwanenburg@leerling.example.nl"
ANNA_NAME, BERT_NAME = "Anna Zwanenburg", "Bert Zwanenburg"
ANNA, BERT = "anna.zwanenburg@ouders.example.nl", "bert.zwanenburg@ouders.example.nl"
CLASSMATE_GIVEN, CLASSMATE_FAMILY, CLASSMATE_ID = "Sem", "de Wit", "S13-W4410"
CLASSMATE_GUARDIAN_NAME, CLASSMATE_GUARDIAN = "Iris de Wit", "iris.dewit@ouders.example.nl"
LINK = re.compile(r"http://127\.0\.0\.1:5000(/[cmw]/[A-Za-z0-9_.\-]+)")


def _stored_files(app: Flask) -> dict[str, str]:
    """Every file the local storage holds: path below UPLOAD_DIR -> sha256 of its bytes."""
    root = Path(app.config["UPLOAD_DIR"])
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def _publication_story(app: Flask, smtp: Any, graph: Any, tokens: dict[str, str],
                       logged_in: Any) -> dict[str, Any]:
    """Issue 6's story up to the takedown after the withdrawal; the ids the DPO's story needs."""
    app.config["CONSENT_VALIDITY"] = "indefinite"  # the story must not depend on the school year
    today = date.today()
    pupil = create_person(PersonCreate.model_validate({
        "external_id": EXTERNAL_ID, "given_name": GIVEN, "family_name": FAMILY,
        "birth_date": date(today.year - 12, 3, 1).isoformat(), "email": PUPIL_EMAIL,
        "role": "pupil", "group": "8B",
        "guardians": [{"name": ANNA_NAME, "email": ANNA}, {"name": BERT_NAME, "email": BERT}],
    }), actor=SYSTEM)
    classmate = create_person(PersonCreate.model_validate({
        "external_id": CLASSMATE_ID, "given_name": CLASSMATE_GIVEN, "family_name": CLASSMATE_FAMILY,
        "birth_date": date(today.year - 12, 6, 1).isoformat(), "role": "pupil", "group": "8B",
        "guardians": [{"name": CLASSMATE_GUARDIAN_NAME, "email": CLASSMATE_GUARDIAN}],
    }), actor=SYSTEM)
    db.session.commit()
    pupil_id, classmate_id = pupil.id, classmate.id
    guardians = {g.email: g.id for g in db.session.execute(sa.select(Guardian)).scalars()}
    api = app.test_client()
    auth = bearer(tokens["communications"])

    uploaded = api.post("/api/v1/media", headers=auth, content_type="multipart/form-data",
                        data={"file": (io.BytesIO(PHOTO.read_bytes()), "schoolreis.jpg"),
                              "title": "Schoolreis groep 8"})
    assert uploaded.status_code == 201, uploaded.get_json()
    media_id = uploaded.get_json()["id"]
    media = api.get(f"/api/v1/media/{media_id}", headers=auth).get_json()
    assert media["status"] == "ready", media
    faces = [a for a in media["appearances"] if a["kind"] == "face"]
    assert len(faces) == 2 and all(a["box"] for a in faces)
    face1, face2 = faces
    for appearance_id, body in ((face1["id"], {"person_id": pupil_id}),
                                (face2["id"], {"person_id": classmate_id}),
                                (face2["id"], {"resolution": "blur"})):
        tagged = api.patch(f"/api/v1/media/{media_id}/appearances/{appearance_id}", headers=auth,
                           json=body)
        assert tagged.status_code == 200, tagged.get_json()

    publish = {"channel": "facebook", "caption": "Schoolreis groep 8", "attest": True}
    blocked = api.post(f"/api/v1/media/{media_id}/publish", headers=auth, json=publish)
    assert blocked.status_code == 409, blocked.get_json()

    officer = logged_in("communications")
    html = officer.get(f"/media/{media_id}?channel=facebook").get_data(as_text=True)
    asked = officer.post(f"/media/{media_id}/gate/request", data={
        "csrf_token": story._csrf(html), "channel": "facebook", "note": "Schoolreis groep 8, mei 2027"})
    assert asked.status_code == 302
    messages = smtp.wait_for_messages(2)
    assert sorted(m["To"] for m in messages) == sorted([ANNA, BERT])
    [anna_mail] = [m for m in messages if m["To"] == ANNA]
    answer_path = story._links(anna_mail)[0]
    assert answer_path.startswith("/c/")
    anna = app.test_client()
    answer_page = anna.get(answer_path)
    assert answer_page.status_code == 200
    granted = anna.post(answer_path, data={"csrf_token": story._csrf(answer_page.get_data(as_text=True)),
                                           "choice_facebook": "granted"})
    assert granted.status_code == 200, granted.get_data(as_text=True)

    published = api.post(f"/api/v1/media/{media_id}/publish", headers=auth, json=publish)
    assert published.status_code == 201, published.get_json()
    publication_id = published.get_json()["publication_id"]
    publication = api.get(f"/api/v1/publications/{publication_id}", headers=auth).get_json()
    assert publication["state"] == "live", publication
    post_id = publication["post_id"]
    assert list(graph.live_posts()) == [post_id]

    confirmations = [m for m in smtp.wait_for_messages(3)
                     if m["To"] == ANNA and any(p.startswith("/w/") for p in story._links(m))]
    assert confirmations, [m["Subject"] for m in smtp.messages]
    withdraw = next(p for p in story._links(confirmations[-1]) if p.startswith("/w/"))
    withdrawn = story._follow_and_post(app.test_client(), withdraw, {})
    assert withdrawn.status_code == 200, withdrawn.get_data(as_text=True)
    db.session.expire_all()
    assert effective_for(db.session.get(Person, pupil_id), "facebook").state == "withdrawn"
    assert post_id in graph.deleted and ("DELETE", f"/v24.0/{post_id}") in graph.requests
    assert graph.live_posts() == {}
    taken_down = db.session.get(Publication, publication_id)
    assert (taken_down.state, taken_down.takedown_reason) == ("taken_down", "withdrawn")
    return {"pupil": pupil_id, "classmate": classmate_id, "media": media_id,
            "publication": publication_id, "face1": face1, "face2": face2,
            "anna": guardians[ANNA], "bert": guardians[BERT],
            "classmate_guardian": guardians[CLASSMATE_GUARDIAN]}


# --- the story ------------------------------------------------------------------------------------

def test_the_dpo_story(app: Flask, smtp: Any, graph: Any, tokens: dict[str, str],
                       logged_in: Any, users: dict) -> None:
    """File, proof and subject-access ZIP exactly right; erasure leaves nothing personal; chain holds."""
    ids = _publication_story(app, smtp, graph, tokens, logged_in)
    pupil_id, classmate_id, media_id = ids["pupil"], ids["classmate"], ids["media"]
    publication_id, face1, face2 = ids["publication"], ids["face1"], ids["face2"]
    dpo_api = app.test_client()
    dpo_auth = bearer(tokens["dpo"])
    db.session.expire_all()
    grant, withdrawal = db.session.execute(
        sa.select(ConsentRecord).where(ConsentRecord.person_id == pupil_id)
        .order_by(ConsentRecord.id)).scalars().all()
    text = db.session.get(ConsentText, grant.text_sha256)
    assert text is not None

    # --- the person's file, through the API ---
    response = dpo_api.get(f"/api/v1/people/{pupil_id}/file", headers=dpo_auth)
    assert response.status_code == 200, response.get_json()
    file = response.get_json()
    person = file["person"]
    assert (person["id"], person["external_id"], person["given_name"], person["family_name"],
            person["email"]) == (pupil_id, EXTERNAL_ID, GIVEN, FAMILY, PUPIL_EMAIL)
    assert sorted((g["id"], g["name"], g["email"]) for g in file["guardians"]) == sorted(
        [(ids["anna"], ANNA_NAME, ANNA), (ids["bert"], BERT_NAME, BERT)])

    # The consent records: the grant and the withdrawal, both by guardian A through the e-mail link.
    records = file["consent_records"]
    assert [r["id"] for r in records] == [grant.id, withdrawal.id]
    assert [(r["channel"], r["decision"]) for r in records] == [
        ("facebook", "granted"), ("facebook", "withdrawn")]
    for entry in records:
        assert (entry["decider_kind"], entry["guardian_id"], entry["guardian_name"]) == (
            "guardian", ids["anna"], ANNA_NAME)
        assert entry["method"] == "email-link" and entry["decided_at"]
    assert (records[0]["text_sha256"], records[0]["text_version"]) == (text.sha256, text.version)
    assert records[0]["recipient_id"] is not None

    # The consent request, with its two recipients: the pupil's guardians, nobody else.
    requests = file["consent_requests"]
    assert len(requests) == 2 and len({r["request_id"] for r in requests}) == 1
    assert sorted((r["guardian_id"], r["email"]) for r in requests) == sorted(
        [(ids["anna"], ANNA), (ids["bert"], BERT)])
    assert all(r["channels"] == ["facebook"] and r["media_id"] == media_id for r in requests)
    [answered] = [r for r in requests if r["answered_at"]]
    assert answered["guardian_id"] == ids["anna"] and answered["recipient_id"] == grant.recipient_id

    # The media item with the pupil's appearance only.
    [item] = file["media"]
    assert item["id"] == media_id and item["kind"] == "photo"
    [appearance] = item["appearances"]
    assert (appearance["id"], appearance["resolution"]) == (face1["id"], "identified")
    assert appearance["box"] == face1["box"]

    # The publication with the consent record that allowed it, and its takedown.
    [publication] = file["publications"]
    assert (publication["id"], publication["media_id"], publication["channel"]) == (
        publication_id, media_id, "facebook")
    assert publication["consent_record_ids"] == [grant.id]
    assert publication["appearance_ids"] == [face1["id"]]
    assert (publication["state"], publication["live"]) == ("taken_down", False)
    assert publication["takedown"]["reason"] == "withdrawn"
    [takedown] = file["takedowns"]
    assert (takedown["publication_id"], takedown["state"], takedown["reason"]) == (
        publication_id, "taken_down", "withdrawn")
    assert takedown["taken_down_at"]
    assert file["reference_photos"] == {"held": False, "count": 0, "created_at": [],
                                        "consent_record_ids": []}
    assert file["match_suggestions"] == []

    # Nothing of the classmate: not their name, number, guardian, appearance or id as a person.
    dumped = json.dumps(file, ensure_ascii=False)
    for value in (CLASSMATE_GIVEN, CLASSMATE_FAMILY, CLASSMATE_ID, CLASSMATE_GUARDIAN,
                  CLASSMATE_GUARDIAN_NAME):
        assert value not in dumped, value

    def _mentions_classmate(node: Any) -> bool:
        if isinstance(node, dict):
            return any((k in ("person_id", "old_person_id") and v == classmate_id)
                       or (k == "guardian_id" and v == ids["classmate_guardian"])
                       or (k in ("appearance_id",) and v == face2["id"])
                       or _mentions_classmate(v) for k, v in node.items())
        if isinstance(node, list):
            return any(_mentions_classmate(v) for v in node)
        return False

    assert not _mentions_classmate(file)
    assert face2["id"] not in publication["appearance_ids"]

    # The DPO's page shows the same file.
    dpo = logged_in("dpo")
    page = dpo.get(f"/dpo/people/{pupil_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert GIVEN in html and FAMILY in html and ANNA_NAME in html
    assert f"/dpo/publications/{publication_id}/proof" in html
    assert CLASSMATE_GIVEN + " " + CLASSMATE_FAMILY not in html

    # --- the proof of the publication ---
    response = dpo_api.get(f"/api/v1/publications/{publication_id}/proof", headers=dpo_auth)
    assert response.status_code == 200, response.get_json()
    proof = response.get_json()
    assert proof["publication_id"] == publication_id and proof["media_id"] == media_id
    assert proof["attested"] is True
    assert (proof["state"], proof["live"]) == ("taken_down", False)
    assert proof["takedown"]["reason"] == "withdrawn" and proof["takedown"]["taken_down_at"]
    assert proof["publisher"]["id"] == users["communications"].id
    [shown] = [p for p in proof["people"] if p["person_id"] == pupil_id]
    assert shown["consent_state"] == "granted" and shown["appearance_ids"] == [face1["id"]]
    [allowed] = shown["consent_records"]
    assert allowed["id"] == grant.id and allowed["removed"] is False
    assert (allowed["decision"], allowed["channel"]) == ("granted", "facebook")
    assert (allowed["text_version"], allowed["text_sha256"]) == (text.version, text.sha256)
    assert (allowed["decider_kind"], allowed["decider_name"], allowed["method"]) == (
        "guardian", ANNA_NAME, "email-link")
    assert allowed["decided_at"] == records[0]["decided_at"]
    # The blurred classmate needed no consent: no record of theirs is named.
    assert all(r.get("id") != withdrawal.id for p in proof["people"] for r in p["consent_records"])
    proof_page = dpo.get(f"/dpo/publications/{publication_id}/proof")
    assert proof_page.status_code == 200
    assert ANNA_NAME in proof_page.get_data(as_text=True)

    # --- the subject-access ZIP: requested through the API, downloaded once on the web ---
    stored_before_export = _stored_files(app)
    created = dpo_api.post(f"/api/v1/people/{pupil_id}/export", headers=dpo_auth)
    assert created.status_code == 202, created.get_json()
    body = created.get_json()
    assert body["status"] == "ready"  # JOBS=immediate: built before the answer
    export_id = body["export_id"]
    download = re.sub(r"^https?://[^/]+", "", body["download_url"])
    assert download == f"/dpo/exports/{export_id}/download"
    exports = set(_stored_files(app)) - set(stored_before_export)
    assert len(exports) == 1 and next(iter(exports)).startswith("exports")
    zipped = dpo.get(download)
    assert zipped.status_code == 200 and zipped.mimetype == "application/zip"
    data = zipped.get_data()
    zipped.close()
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(archive.namelist()) == ["file.json", f"media/{media_id}.jpg", "summary.html"]

    document = json.loads(archive.read("file.json"))
    now = dpo_api.get(f"/api/v1/people/{pupil_id}/file", headers=dpo_auth).get_json()
    built_with = [e["id"] for e in document["audit_events"]]
    assert built_with == [e["id"] for e in now["audit_events"]][:len(built_with)]
    later = now["audit_events"][len(built_with):]
    assert {e["action"] for e in later} <= {"person:export_built", "person:export_downloaded",
                                            "person:file_viewed"}, later
    assert document == {**now, "audit_events": now["audit_events"][:len(built_with)]}
    assert {k: v for k, v in document.items() if k != "audit_events"} == {
        k: v for k, v in file.items() if k != "audit_events"}
    assert document["audit_events"][-1]["action"] == "person:export_requested"

    summary = archive.read("summary.html").decode()
    assert GIVEN in summary and FAMILY in summary
    assert CLASSMATE_GIVEN + " " + CLASSMATE_FAMILY not in summary
    assert CLASSMATE_GUARDIAN not in summary and CLASSMATE_ID not in summary

    photo = archive.read(f"media/{media_id}.jpg")
    assert b"Exif" not in photo
    assert _g01_similarity(photo, Box(**face1["box"])) > 0.9  # the pupil, sharp
    assert _g01_similarity(photo, Box(**face2["box"])) < 0.6  # the classmate, blurred

    assert dpo.get(download).status_code == 410  # once only
    assert _stored_files(app) == stored_before_export  # the ZIP is gone from storage

    # --- the admin erases the pupil through the page ---
    crop_key = db.session.get(Appearance, face1["id"]).crop_key
    assert crop_key and get_storage().exists(crop_key)
    crop_sha = hashlib.sha256(get_storage().get(crop_key)).hexdigest()
    rendition_key = db.session.get(Publication, publication_id).rendition_key
    assert rendition_key and get_storage().exists(rendition_key)
    rendition_sha = hashlib.sha256(get_storage().get(rendition_key)).hexdigest()
    birth = db.session.get(Person, pupil_id).birth_date.isoformat()
    # The guardians belong to this pupil only, so their names and addresses must go as well.
    personal = (GIVEN, FAMILY, EXTERNAL_ID, birth, PUPIL_EMAIL, ANNA_NAME, BERT_NAME, ANNA, BERT)
    before = values_in_database(personal)
    for value in personal:  # the scan does find each value before the erasure
        assert any(hit.endswith(f": {value}") for hit in before), value
    classmate_before = values_in_database((CLASSMATE_GIVEN, CLASSMATE_ID, CLASSMATE_GUARDIAN))

    admin = logged_in("admin")
    erase_page = admin.get(f"/dpo/people/{pupil_id}/erase")
    assert erase_page.status_code == 200
    done = admin.post(f"/dpo/people/{pupil_id}/erase",
                      data={"confirm": "ERASE", "csrf_token": story._csrf(erase_page.get_data(as_text=True))})
    assert done.status_code == 303, done.get_data(as_text=True)
    db.session.expire_all()

    # Retained as proof of the past publication (until the proof period ends, retention.py): the
    # grant that allowed it (person_id, guardian_id, text sha, method, time: ids, no personal value),
    # its recipient row with the address stripped, guardian A pseudonymised ("Erased", an invalid
    # address) because the kept record points at them, the publication's decision (ids), and the
    # pupil's row pseudonymised (ids in the proof and the audit events point at it). Nothing else.
    assert values_in_database(personal) == []
    assert set(db.session.execute(sa.select(ConsentRecord.id).where(
        ConsentRecord.person_id == pupil_id)).scalars()) == {grant.id}
    kept_recipients = db.session.execute(sa.select(ConsentRecipient).where(
        ConsentRecipient.person_id == pupil_id)).scalars().all()
    assert [(r.id, r.email) for r in kept_recipients] == [(grant.recipient_id, None)]
    assert db.session.get(Guardian, ids["bert"]) is None
    erased = db.session.get(Person, pupil_id)
    assert erased.erased_at is not None and erased.given_name == "Erased"
    unlinked = db.session.get(Appearance, face1["id"])
    assert unlinked.person_id is None and unlinked.crop_key is None
    # The classmate is untouched.
    assert values_in_database((CLASSMATE_GIVEN, CLASSMATE_ID, CLASSMATE_GUARDIAN)) == classmate_before
    assert db.session.get(Appearance, face2["id"]).person_id == classmate_id

    # No storage file of theirs: the crop and the published rendition (their face, sharp) are
    # deleted, the ZIP already was. The original upload stays: it shows the classmate too and is
    # the school's, removed by retention; the pupil's face in it is marked blur for any future use.
    assert not get_storage().exists(crop_key) and not get_storage().exists(rendition_key)
    assert db.session.get(Publication, publication_id).rendition_sha256 == rendition_sha
    remaining = _stored_files(app)
    assert crop_sha not in remaining.values() and rendition_sha not in remaining.values()
    assert remaining == {k: v for k, v in stored_before_export.items()
                         if v not in (crop_sha, rendition_sha)}
    assert not any(k.startswith("exports") for k in remaining)

    # The proof still names the kept grant, with the guardian pseudonymised.
    proof_after = dpo_api.get(f"/api/v1/publications/{publication_id}/proof",
                              headers=dpo_auth).get_json()
    [shown_after] = [p for p in proof_after["people"] if p["person_id"] == pupil_id]
    assert [r["id"] for r in shown_after["consent_records"]] == [grant.id]
    assert [v for v in personal if v in json.dumps(proof_after)] == []

    # The real CLI command verifies the audit chain.
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "audit chain intact" in result.output
