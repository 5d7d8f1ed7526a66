"""Erasure (art. 17), leaving and retention: nothing personal left outside the kept proof."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import time_machine
from flask import Flask
from test_publishing import decide
from test_tagging import face, make_photo, pupil

from consent_registry.audit import SYSTEM, AuditEvent, verify
from consent_registry.consent.models import ConsentRecipient, ConsentRecord, ConsentRequest
from consent_registry.db import db
from consent_registry.dpo.erasure import erase_person
from consent_registry.dpo.retention import apply_retention, apply_retention_daily
from consent_registry.media.models import Appearance, Media
from consent_registry.people.models import Guardian, Person
from consent_registry.publishing.models import Publication
from consent_registry.storage import get_storage

from api_helpers import api_caller
from conftest import values_in_database

NUMBER, GIVEN, FAMILY = "X7731", "Wilhelmina", "Zwartkop"
GUARDIAN_EMAIL = f"ouder.{NUMBER}@example.nl"
PERSONAL = (NUMBER, GIVEN, FAMILY, GUARDIAN_EMAIL, "2012-03-04")


# The assertions below read English; the site defaults to Dutch.
PAGES_IN_ENGLISH = True


def _published(app: Flask, tokens: dict[str, str]) -> tuple[Person, Publication, str]:
    """A pupil tagged in a photo (with a stored crop), consent on paper, live on Facebook."""
    media = make_photo(app, seed=7)
    person = pupil(NUMBER, GIVEN, FAMILY)
    appearance = face(media, person_id=person.id, resolution="identified")
    appearance.crop_key = get_storage().put(b"crop bytes", prefix="crops")
    db.session.commit()
    decide(person, "website", "refused")  # not proof of any publication: erased with the person
    decide(person, "facebook", "granted")
    body = api_caller(app, tokens, "communications")(
        "POST", f"/media/{media.id}/publish", json={"channel": "facebook", "attest": True}).get_json()
    assert body["state"] == "live", body
    return person, db.session.get(Publication, body["publication_id"]), appearance.crop_key


def test_erasing_after_a_publication_leaves_nothing_personal(app: Flask, tokens: dict[str, str],
                                                             graph: Any, logged_in: Any) -> None:
    """Takedown sent, crop gone, proof kept, row pseudonymised, chain intact."""
    person, publication, crop_key = _published(app, tokens)
    person_id, publication_id, post_id = person.id, publication.id, publication.post_id
    proof_ids = set(publication.decision["people"][0]["consent_record_ids"])
    assert values_in_database(PERSONAL)  # the scan does find them before

    admin = logged_in("admin")
    page = admin.get(f"/dpo/people/{person_id}/erase")
    assert page.status_code == 200 and GIVEN in page.get_data(as_text=True)
    assert '<button type="submit" class="danger">' in page.get_data(as_text=True)  # styled apart
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    refused = admin.post(f"/dpo/people/{person_id}/erase", data={"confirm": "no", "csrf_token": token})
    assert refused.status_code == 422 and db.session.get(Person, person_id).erased_at is None
    done = admin.post(f"/dpo/people/{person_id}/erase",
                      data={"confirm": "ERASE", "csrf_token": token})
    assert done.status_code == 303

    db.session.expire_all()
    assert values_in_database(PERSONAL) == []
    erased = db.session.get(Person, person_id)
    assert erased.erased_at is not None and erased.given_name == "Erased"
    assert erased.birth_date != date(2012, 3, 4) and erased.status == "left"
    assert not get_storage().exists(crop_key)
    assert post_id in graph.deleted
    taken = db.session.get(Publication, publication_id)
    assert taken.state == "taken_down" and taken.takedown_reason == "erased"
    kept = set(db.session.execute(sa.select(ConsentRecord.id)
                                  .where(ConsentRecord.person_id == person_id)).scalars())
    assert kept == proof_ids  # the refusal for the website went; the proof stays
    appearance = db.session.execute(sa.select(Appearance)).scalar_one()
    assert appearance.person_id is None and appearance.resolution == "blur"
    assert appearance.crop_key is None
    assert db.session.query(Guardian).count() == 0 or all(
        g.name == "Erased" for g in db.session.query(Guardian))
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "person:erased")
                               ).scalar_one()
    assert event.details["reason"] == "request" and event.actor_type == "user"
    assert verify().ok


def test_only_the_admin_may_erase(app: Flask, logged_in: Any) -> None:
    """The DPO reads but may not erase: 403 on the page and the POST, nothing changes."""
    person = pupil(NUMBER, GIVEN, FAMILY)
    dpo = logged_in("dpo")
    assert dpo.get(f"/dpo/people/{person.id}/erase").status_code == 403
    assert dpo.post(f"/dpo/people/{person.id}/erase", data={"confirm": "ERASE"}).status_code == 403
    assert logged_in("communications").post(f"/dpo/people/{person.id}/erase",
                                            data={"confirm": "ERASE"}).status_code == 403
    db.session.expire_all()
    assert db.session.get(Person, person.id).erased_at is None


def test_erasing_twice_changes_nothing(app: Flask) -> None:
    """A second erasure is a no-op."""
    person = pupil(NUMBER, GIVEN, FAMILY)
    erase_person(person, actor=SYSTEM)
    db.session.commit()
    assert erase_person(person, actor=SYSTEM) == {"already_erased": True}
    assert verify().ok


def test_retention_removes_old_media_requests_proof_and_leavers(
        app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """Old unpublished media and requests go; published media stays while its proof does."""
    person, publication, _crop = _published(app, tokens)
    published_media_id = publication.media_id
    old = make_photo(app, seed=8)
    old_key, old_id = old.storage_key, old.id
    request = ConsentRequest(channels=["facebook"], created_at=datetime.now(UTC))
    db.session.add(request)
    db.session.flush()
    db.session.add(ConsentRecipient(request_id=request.id, person_id=person.id, decider_kind="pupil",
                                    decider_key="pupil", email="x@example.nl"))
    leaver = pupil("L1", "Lea", "Vertrek")
    leaver.status, leaver.left_on = "left", date.today() + timedelta(days=30)
    db.session.commit()

    assert apply_retention(datetime.now(UTC))["people_erased"] == 0  # leaving date not come
    db.session.commit()

    with time_machine.travel(datetime.now(UTC) + timedelta(days=800), tick=False):
        apply_retention_daily()
    db.session.expire_all()
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "retention:applied")
                               .order_by(AuditEvent.id.desc())).scalars().first()
    assert event.details["media"] == 1 and event.details["requests"] == 1
    assert event.details["people_erased"] == 1
    assert db.session.get(Media, old_id) is None and not get_storage().exists(old_key)
    assert db.session.get(Media, published_media_id) is not None  # still live: proof
    assert db.session.get(Person, leaver.id).erased_at is not None

    # Erased, taken down; after the proof period the proof and the media go.
    erase_person(db.session.get(Person, person.id), actor=SYSTEM)
    db.session.commit()
    assert db.session.get(Publication, publication.id).state == "taken_down"
    assert db.session.query(ConsentRecord).filter_by(person_id=person.id).count() > 0
    with time_machine.travel(datetime.now(UTC) + timedelta(days=1900), tick=False):
        counts = apply_retention(datetime.now(UTC))
        db.session.commit()
    assert counts["consent_records"] >= 1 and counts["media"] == 1
    assert db.session.query(ConsentRecord).filter_by(person_id=person.id).count() == 0
    assert db.session.get(Publication, publication.id).media_id is None
    assert verify().ok
