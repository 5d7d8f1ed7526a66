"""The DPO's person file and publication proof: contents after a publication story, pages, API, access log."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from flask import Flask
from test_publishing import decide, get, tagged_photo

from consent_registry.audit import SYSTEM, AuditEvent, verify
from consent_registry.biometrics.models import FaceReference, encoding_bytes
from consent_registry.biometrics.service import set_face_matching
from consent_registry.consent.models import ConsentRecord, ConsentText
from consent_registry.db import db
from consent_registry.dpo.person_file import person_file
from consent_registry.dpo.proof import publication_proof
from consent_registry.media.models import Appearance
from consent_registry.people.models import Person

from api_helpers import api_caller, conforms

ENCODING = np.full(128, 0.123456789)
HUGE = 2**40


# The assertions below read English; the site defaults to Dutch.
PAGES_IN_ENGLISH = True


def events(action: str) -> list[AuditEvent]:
    """Audit events with this action, oldest first."""
    db.session.expire_all()
    return list(db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).scalars())


def story(app: Flask, tokens: dict[str, str]) -> dict[str, Any]:
    """Ada is published on Facebook, her guardian withdraws, the post comes down; Bea stays live."""
    media, ada = tagged_photo(app, seed=1)
    other_media, bea = tagged_photo(app, seed=2)
    set_face_matching(enabled=True, dpia_reference="DPIA-2027-1", actor=SYSTEM)
    db.session.commit()
    for person in (ada, bea):
        decide(person, "biometric", "granted")  # references are held only with this consent
        db.session.add(FaceReference(person_id=person.id, encoding=encoding_bytes(ENCODING),
                                     photo_sha256=str(person.id) * 64))
    db.session.commit()
    api = api_caller(app, tokens, "communications")
    published = {}
    for item in (media, other_media):
        body = api("POST", f"/media/{item.id}/publish",
                   json={"channel": "facebook", "caption": "Sports day", "attest": True}).get_json()
        assert body["state"] == "live", body
        published[item.id] = body["publication_id"]
    decide(ada, "facebook", "withdrawn")
    assert get(published[media.id]).state == "taken_down"
    return {"ada": ada.id, "bea": bea.id, "media": media.id, "other_media": other_media.id,
            "publication": published[media.id], "other_publication": published[other_media.id]}


def _records(person_id: int) -> list[ConsentRecord]:
    """The person's consent records, oldest first."""
    return list(db.session.execute(sa.select(ConsentRecord).where(
        ConsentRecord.person_id == person_id).order_by(ConsentRecord.id)).scalars())


def _no_encoding(document: dict[str, Any]) -> None:
    """No encoding bytes (raw, hex, base64 or as numbers) anywhere in the JSON."""
    text = json.dumps(document)
    raw = encoding_bytes(ENCODING)
    assert '"encoding"' not in text
    assert raw.hex() not in text and base64.b64encode(raw).decode()[:40] not in text
    assert "0.123456789" not in text


def test_the_file_after_the_publication_story(app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """Exactly her records, media, publication with its consent, takedown, references as a count."""
    ids = story(app, tokens)
    db.session.expire_all()
    ada = db.session.get(Person, ids["ada"])
    document = person_file(ada)
    json.dumps(document)  # JSON-ready as it is

    assert document["person"]["id"] == ada.id and document["person"]["external_id"] == "P1"
    assert document["person"]["birth_date"] == "2012-03-04"
    assert [g["name"] for g in document["guardians"]] == ["Ouder van Ada"]

    granted, biometric, withdrawn = _records(ada.id)
    assert [r["id"] for r in document["consent_records"]] == [granted.id, biometric.id, withdrawn.id]
    assert [(r["channel"], r["decision"]) for r in document["consent_records"]] == [
        ("facebook", "granted"), ("biometric", "granted"), ("facebook", "withdrawn")]
    first = document["consent_records"][0]
    text = db.session.get(ConsentText, granted.text_sha256)
    assert (first["text_sha256"], first["text_version"]) == (text.sha256, text.version)
    assert (first["decider_kind"], first["method"]) == ("guardian", "paper")
    assert first["guardian_name"] == "Ouder van Ada" and first["decided_at"]

    appearances = db.session.execute(sa.select(Appearance.id).where(
        Appearance.person_id == ada.id)).scalars().all()
    assert [m["id"] for m in document["media"]] == [ids["media"]]
    assert [a["id"] for a in document["media"][0]["appearances"]] == list(appearances)
    assert document["media"][0]["appearances"][0]["resolution"] == "identified"

    [publication] = document["publications"]
    assert publication["id"] == ids["publication"] and publication["channel"] == "facebook"
    assert publication["consent_record_ids"] == [granted.id]
    assert publication["state"] == "taken_down" and publication["live"] is False
    assert publication["takedown"]["reason"] == "withdrawn"
    [takedown] = document["takedowns"]
    assert (takedown["publication_id"], takedown["reason"]) == (ids["publication"], "withdrawn")
    assert takedown["taken_down_at"]

    assert document["reference_photos"]["held"] is True
    assert document["reference_photos"]["count"] == 1
    _no_encoding(document)

    every = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
    about = [e.id for e in every
             if (e.subject_type == "person" and e.subject_id == str(ada.id))
             or (e.details or {}).get("person_id") == ada.id
             or ada.id in ((e.details or {}).get("person_ids") or [])]
    assert [e["id"] for e in document["audit_events"]] == about
    actions = {e["action"] for e in document["audit_events"]}
    assert "publication:takedown_requested" in actions
    assert not {e["id"] for e in document["audit_events"]} & {
        e.id for e in every if (e.details or {}).get("person_id") == ids["bea"]}


def test_the_proof_of_the_publication(app: Flask, tokens: dict[str, str], graph: Any,
                                      users: dict) -> None:
    """Per person the consent record that allowed it (text version, decider, method, time)."""
    ids = story(app, tokens)
    db.session.expire_all()
    granted = _records(ids["ada"])[0]
    proof = publication_proof(get(ids["publication"]))
    json.dumps(proof)
    assert proof["attested"] is True and proof["live"] is False
    assert proof["state"] == "taken_down" and proof["takedown"]["reason"] == "withdrawn"
    assert proof["publisher"]["id"] == users["communications"].id
    [person] = proof["people"]
    assert person["person_id"] == ids["ada"] and person["name"] == "Ada Jansen"
    [record] = person["consent_records"]
    text = db.session.get(ConsentText, granted.text_sha256)
    assert record["id"] == granted.id and record["decision"] == "granted"
    assert (record["text_version"], record["text_sha256"]) == (text.version, text.sha256)
    assert (record["decider_kind"], record["decider_name"], record["method"]) == (
        "guardian", "Ouder van Ada", "paper")
    assert record["decided_at"] == granted.decided_at.isoformat()
    other = publication_proof(get(ids["other_publication"]))
    assert other["live"] is True and [p["person_id"] for p in other["people"]] == [ids["bea"]]
    _no_encoding(proof)


@pytest.mark.parametrize("role", ["dpo", "admin"])
def test_the_pages_show_and_record_each_view(app: Flask, tokens: dict[str, str], graph: Any,
                                             logged_in: Any, users: dict, role: str) -> None:
    """The file and the proof render for the DPO and admin; each view is an audit event."""
    ids = story(app, tokens)
    client = logged_in(role)
    page = client.get(f"/dpo/people/{ids['ada']}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Ada Jansen" in html and f"/dpo/publications/{ids['publication']}/proof" in html
    [viewed] = events("person:file_viewed")
    assert (viewed.actor_id, viewed.subject_id) == (users[role].id, str(ids["ada"]))
    proof = client.get(f"/dpo/publications/{ids['publication']}/proof")
    assert proof.status_code == 200
    html = proof.get_data(as_text=True)
    assert "Ouder van Ada" in html and "paper" in html and "not live" in html
    [seen] = events("publication:proof_viewed")
    assert (seen.actor_id, seen.subject_id) == (users[role].id, str(ids["publication"]))
    person_page = client.get(f"/people/{ids['ada']}").get_data(as_text=True)
    assert f'href="/dpo/people/{ids["ada"]}"' in person_page
    assert verify().ok


def test_other_roles_are_refused_and_unknown_ids_are_404(app: Flask, tokens: dict[str, str],
                                                        graph: Any, logged_in: Any) -> None:
    """Only dpo and admin; nothing is recorded for a refusal; unknown and huge ids answer 404."""
    ids = story(app, tokens)
    for role in ("communications", "staff"):
        client = logged_in(role)
        assert client.get(f"/dpo/people/{ids['ada']}").status_code == 403
        assert client.get(f"/dpo/publications/{ids['publication']}/proof").status_code == 403
        person_page = client.get(f"/people/{ids['ada']}").get_data(as_text=True)
        assert "/dpo/people/" not in person_page
    assert events("person:file_viewed") == [] and events("publication:proof_viewed") == []
    dpo = logged_in("dpo")
    for missing in (999_999, HUGE):
        assert dpo.get(f"/dpo/people/{missing}").status_code == 404
        assert dpo.get(f"/dpo/publications/{missing}/proof").status_code == 404
    assert events("person:file_viewed") == []


def test_the_api_conforms_and_records_each_view(app: Flask, tokens: dict[str, str],
                                                graph: Any) -> None:
    """GET file and proof as dpo/admin (conforming, audited); others 403; unknown 404."""
    ids = story(app, tokens)
    api = api_caller(app, tokens, "dpo")
    file = conforms(api("GET", f"/people/{ids['ada']}/file"))
    assert file.status_code == 200
    body = file.get_json()
    assert [p["id"] for p in body["publications"]] == [ids["publication"]]
    assert body["reference_photos"]["count"] == 1
    _no_encoding(body)
    proof = conforms(api("GET", f"/publications/{ids['publication']}/proof", role="admin"))
    assert proof.status_code == 200 and proof.get_json()["people"][0]["person_id"] == ids["ada"]
    assert [e.details["via"] for e in events("person:file_viewed")] == ["api"]
    assert [e.subject_id for e in events("publication:proof_viewed")] == [str(ids["publication"])]
    for role in ("communications", "staff"):
        assert conforms(api("GET", f"/people/{ids['ada']}/file", role=role)).status_code == 403
        assert conforms(api("GET", f"/publications/{ids['publication']}/proof",
                            role=role)).status_code == 403
    for missing in (999_999, HUGE):
        # A huge id is outside the document's range (at most 2**31 - 1): only the answer is checked.
        known = missing < 2**31
        assert conforms(api("GET", f"/people/{missing}/file"), check_request=known).status_code == 404
        assert conforms(api("GET", f"/publications/{missing}/proof"),
                        check_request=known).status_code == 404
    assert len(events("person:file_viewed")) == 1 and len(events("publication:proof_viewed")) == 1


def test_the_stylesheet_has_print_rules() -> None:
    """The proof prints cleanly: navigation and forms are left out."""
    css = (Path(__file__).parent.parent / "consent_registry" / "static" / "style.css").read_text()
    assert "@media print" in css and "header.top" in css.split("@media print", 1)[1]
