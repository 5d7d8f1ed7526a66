"""The gate on stored items: the service, the API route, the media page's checklist and its button."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from test_consent_pages import add_person, decide, outbox
from test_tagging import face, make_photo, pupil

from consent_registry.audit import AuditEvent
from consent_registry.consent.models import ConsentRecipient, ConsentRequest
from consent_registry.db import db, utcnow
from consent_registry.media.models import Media
from consent_registry.people.models import Person
from consent_registry.publishing.gate_service import gate_for, missing_people

from api_helpers import api_caller, conforms
from conftest import csrf_token


def blockers(decision: Any) -> list[tuple[int | None, int | None, str]]:
    """The decision's blockers as (appearance, person, reason)."""
    return [(b.appearance_id, b.person_id, b.reason) for b in decision.blockers]


def count(model: type[Any]) -> int:
    """Rows in a table."""
    db.session.expire_all()
    return db.session.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


@pytest.fixture
def photo(app: Flask) -> Media:
    """A ready photo."""
    return make_photo(app)


# --- the service -----------------------------------------------------------------------------


def test_gate_follows_tagging_and_consent(photo: Media) -> None:
    """Untagged blocks; tagged without consent blocks; a grant allows; a withdrawal blocks again."""
    ada = pupil("1", "Ada")
    appearance = face(photo)
    assert blockers(gate_for(photo, "facebook", attested=True)) == [(appearance.id, None, "unresolved")]
    assert blockers(gate_for(photo, "facebook", attested=False)) == [
        (None, None, "not_attested"), (appearance.id, None, "unresolved")]
    appearance.suggested_person_id = ada.id
    db.session.commit()
    assert blockers(gate_for(photo, "facebook", attested=True)) == [
        (appearance.id, None, "suggestion_unconfirmed")]
    appearance.person_id, appearance.resolution = ada.id, "identified"
    db.session.commit()
    assert blockers(gate_for(photo, "facebook", attested=True)) == [(appearance.id, ada.id, "no_consent")]
    assert missing_people(photo, "facebook") == [ada]

    record_id = decide(ada.id, "facebook", "granted")
    decision = gate_for(photo, "facebook", attested=True)
    assert decision.allowed and decision.people[0].record_ids == (record_id,)
    assert decision.as_json()["people"][0]["consent_record_ids"] == [record_id]
    assert missing_people(photo, "facebook") == []
    # Another channel, and a moment before the grant, are still without consent.
    assert blockers(gate_for(photo, "website", attested=True)) == [(appearance.id, ada.id, "no_consent")]
    earlier = gate_for(photo, "facebook", attested=True, at=utcnow() - timedelta(days=1))
    assert not earlier.allowed

    decide(ada.id, "facebook", "withdrawn")
    assert blockers(gate_for(photo, "facebook", attested=True)) == [(appearance.id, ada.id, "withdrawn")]
    decide(ada.id, "website", "refused")
    assert blockers(gate_for(photo, "website", attested=True)) == [(appearance.id, ada.id, "refused")]


def test_blur_and_not_recognisable_need_no_consent_and_leavers_block(photo: Media) -> None:
    """Cleared faces pass; a person who left blocks even with a grant; analysis state matters."""
    ada, bram = pupil("1", "Ada"), pupil("2", "Bram")
    face(photo, person_id=ada.id, resolution="blur")
    face(photo, (100, 40, 40, 40), resolution="not_recognisable")
    tagged = face(photo, (200, 40, 40, 40), person_id=bram.id, resolution="identified")
    decide(bram.id, "facebook", "granted")
    assert gate_for(photo, "facebook", attested=True).allowed
    bram.status = "left"
    db.session.commit()
    decision = gate_for(photo, "facebook", attested=True)
    assert blockers(decision) == [(tagged.id, bram.id, "person_left")] and decision.people[0].left
    assert missing_people(photo, "facebook") == [bram]
    photo.status = "failed"
    db.session.commit()
    assert blockers(gate_for(photo, "facebook", attested=True))[0] == (None, None, "analysis_failed")
    photo.status, photo.kind = "ready", "audio"
    db.session.commit()
    assert blockers(gate_for(photo, "facebook", attested=True))[0] == (None, None, "not_analysed")


def test_unknown_channels_are_errors(photo: Media) -> None:
    """Biometric matching is a purpose, not a channel; nonsense is nothing."""
    for channel in ("biometric", "", "FACEBOOK", "intranet"):
        with pytest.raises(ValueError):
            gate_for(photo, channel, attested=True)


# --- the API ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "communications", "staff", "dpo"])
def test_api_answers_the_decision_to_every_role(app: Flask, tokens: dict[str, str], photo: Media,
                                                role: str) -> None:
    """A 200 with the decision in the documented shape; nothing is audited."""
    ada = pupil("1", "Ada")
    appearance = face(photo, person_id=ada.id, resolution="identified")
    api = api_caller(app, tokens, role)
    before = count(AuditEvent)
    blocked = conforms(api("GET", f"/media/{photo.id}/gate?channel=facebook"))
    assert blocked.status_code == 200
    assert blocked.get_json() == {
        "allowed": False,
        "blockers": [{"appearance_id": None, "person_id": None, "reason": "not_attested"},
                     {"appearance_id": appearance.id, "person_id": ada.id, "reason": "no_consent"}],
        "people": [{"person_id": ada.id, "state": "none", "consent_record_ids": [],
                    "valid_until": None, "left": False}]}
    record_id = decide(ada.id)
    before = count(AuditEvent)
    allowed = conforms(api("GET", f"/media/{photo.id}/gate?channel=facebook&attest=true"))
    body = allowed.get_json()
    assert body["allowed"] is True and body["blockers"] == []
    assert body["people"][0]["consent_record_ids"] == [record_id]
    assert body["people"][0]["valid_until"] is not None
    assert count(AuditEvent) == before


@pytest.mark.parametrize("query", ["", "?channel=", "?channel=biometric", "?channel=intranet",
                                   "?channel=facebook&attest=yes", "?channel=facebook&attest=True"])
def test_api_bad_queries_are_400(app: Flask, tokens: dict[str, str], photo: Media, query: str) -> None:
    """A missing or unknown channel, or an attestation that is not true/false, is a 400."""
    response = api_caller(app, tokens, "staff")("GET", f"/media/{photo.id}/gate{query}")
    assert response.status_code == 400, response.get_json()
    conforms(response, check_request=False)
    assert set(response.get_json()["error"]["fields"]) <= {"channel", "attest"}


@pytest.mark.parametrize("media_id", ["999999", "2147483648", "99999999999999999999"])
def test_api_unknown_media_is_404(app: Flask, tokens: dict[str, str], media_id: str) -> None:
    """No such item: 404 in the error shape, even for ids no row can have."""
    response = api_caller(app, tokens, "dpo")("GET", f"/media/{media_id}/gate?channel=facebook")
    assert response.status_code == 404
    conforms(response, check_request=False)


def test_api_refuses_anonymous(client: FlaskClient, photo: Media) -> None:
    """No token, no decision."""
    assert client.get(f"/api/v1/media/{photo.id}/gate?channel=facebook").status_code == 401


# --- the page --------------------------------------------------------------------------------


def english(logged_in: Any, role: str) -> FlaskClient:
    """A logged-in client that asks for English pages."""
    client = logged_in(role)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def page(client: FlaskClient, media: Media, query: str = "") -> str:
    """The item's page as text."""
    response = client.get(f"/media/{media.id}{query}")
    assert response.status_code == 200
    return html.unescape(response.get_data(as_text=True))


def gate_section(text: str) -> str:
    """The gate's section of the page."""
    return text.split('<section class="gate" id="gate"', 1)[1].split("</section>", 1)[0]


def test_page_checklist_and_blockers(logged_in: Any, photo: Media) -> None:
    """Channel chooser, each tagged person's state and end date, and every blocker with its panel."""
    ada, bram, cas = pupil("1", "Ada"), pupil("2", "Bram"), pupil("3", "Cas")
    first = face(photo, person_id=ada.id, resolution="identified")
    second = face(photo, (100, 40, 40, 40), person_id=bram.id, resolution="identified")
    third = face(photo, (200, 40, 40, 40), suggested=cas)
    face(photo, (10, 150, 40, 40), person_id=cas.id, resolution="blur")
    decide(ada.id, "facebook", "granted")
    decide(bram.id, "facebook", "refused")
    client = english(logged_in, "dpo")
    section = gate_section(page(client, photo))
    assert re.findall(r'<option value="(\w+)"( selected)?>', section)[0] == ("facebook", " selected")
    assert "Not allowed on The school's Facebook page yet." in section
    rows = re.findall(r'<tr class="(blocks|clears)" id="gate-person-(\d+)">(.*?)</tr>', section, re.S)
    assert [(state, int(pid)) for state, pid, _ in rows] == [("clears", ada.id), ("blocks", bram.id)]
    assert "yes, consent given" in rows[0][2] and "Ada Jansen" in rows[0][2]
    assert re.search(r"\d{4}", rows[0][2].split("</td>")[1])  # valid until a date
    assert "no consent" in rows[1][2] and f'href="#appearance-{second.id}"' in rows[1][2]
    assert "Cas Jansen" not in "".join(r[2] for r in rows)  # blurred: no consent needed
    items = re.findall(r'<li class="reason-(\w+)">(.*?)</li>', section, re.S)
    assert [reason for reason, _ in items] == ["refused", "suggestion_unconfirmed"]
    assert f'href="#appearance-{second.id}">Appearance 2</a> (Bram Jansen)' in items[0][1]
    assert f'href="#appearance-{third.id}">Appearance 3</a>' in items[1][1]
    assert f'id="appearance-{first.id}"' in page(client, photo)  # the anchors exist
    assert "request_missing_consent" not in section and "/gate/request" not in section  # dpo

    website = gate_section(page(client, photo, "?channel=website"))
    assert '<option value="website" selected>' in website
    assert [r for r, _ in re.findall(r'<li class="reason-(\w+)">(.*?)</li>', website, re.S)] == [
        "no_consent", "no_consent", "suggestion_unconfirmed"]
    unknown = gate_section(page(client, photo, "?channel=biometric"))
    assert "Unknown channel" in unknown and '<option value="facebook" selected>' in unknown


def test_page_says_allowed_and_handles_items_without_people(logged_in: Any, photo: Media) -> None:
    """A cleared item says nothing blocks; an item nobody is in says so; no button then."""
    face(photo, resolution="not_recognisable")
    section = gate_section(page(english(logged_in, "communications"), photo))
    assert "Nothing blocks publication on The school's Facebook page." in section
    assert "Nobody is tagged in this item." in section and "/gate/request" not in section
    photo.status = "analysing"
    db.session.commit()
    section = gate_section(page(english(logged_in, "communications"), photo))
    assert "The analysis has not finished." in section


def _request_ids(media: Media) -> list[int]:
    """Requests made for this item."""
    db.session.expire_all()
    return list(db.session.execute(
        sa.select(ConsentRequest.id).where(ConsentRequest.media_id == media.id)).scalars())


def _ask(client: FlaskClient, media: Media, channel: str, **extra: str) -> str:
    """Press the page's button for a channel; the page the redirect lands on."""
    token = csrf_token(client, f"/media/{media.id}")
    response = client.post(f"/media/{media.id}/gate/request",
                           data={"csrf_token": token, "channel": channel, **extra})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert response.headers["Location"].startswith(f"/media/{media.id}")
    assert response.headers["Location"].endswith("#gate")
    return html.unescape(client.get(response.headers["Location"]).get_data(as_text=True))


@pytest.mark.parametrize("role", ["admin", "communications", "staff"])
def test_button_asks_exactly_the_deciders_of_the_missing(app: Flask, logged_in: Any, photo: Media,
                                                         role: str) -> None:
    """Only the missing people's deciders get a mail; the request names the item and channel."""
    granted = add_person("G1", guardians=("granted@ouders.nl",))
    two = add_person("T1", guardians=("anna@ouders.nl", "bert@ouders.nl"))
    refused = add_person("R1", guardians=("rita@ouders.nl",))
    nobody = add_person("N1", guardians=())
    left = add_person("L1", guardians=("left@ouders.nl",))
    blurred = add_person("B1", guardians=("blur@ouders.nl",))
    for n, person in enumerate((granted, two, refused, nobody, left)):
        face(photo, (10 + 50 * n, 10, 40, 40), person_id=person.id, resolution="identified")
    face(photo, (10, 150, 40, 40), person_id=blurred.id, resolution="blur")
    decide(granted.id, "facebook", "granted")
    decide(refused.id, "facebook", "refused")
    db.session.get(Person, left.id).status = "left"
    db.session.commit()

    client = english(logged_in, role)
    assert "Ask the deciders of 3 people for consent" in gate_section(page(client, photo))
    landed = _ask(client, photo, "facebook", note="Sports day photo")
    assert "Consent asked for 3 people: 3 e-mails are being sent. 1 decider has no e-mail address." \
        in landed
    [request_id] = _request_ids(photo)
    request_ = db.session.get(ConsentRequest, request_id)
    assert request_.channels == ["facebook"] and request_.note == "Sports day photo"
    assert {r.person_id for r in request_.recipients} == {two.id, refused.id, nobody.id}
    assert sorted(m["To"] for m in outbox(app)) == ["anna@ouders.nl", "bert@ouders.nl",
                                                    "rita@ouders.nl"]
    event = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "consent_request:create")).scalar_one()
    assert event.details["media_id"] == photo.id


def test_button_over_smtp(logged_in: Any, photo: Media, smtp: Any) -> None:
    """With SMTP configured, the guardians' mails go through the server."""
    ada = pupil("1", "Ada")
    face(photo, person_id=ada.id, resolution="identified")
    landed = _ask(english(logged_in, "communications"), photo, "website")
    assert "Consent asked for 1 person: 1 e-mail is being sent." in landed
    [message] = smtp.wait_for_messages(1)
    assert message["To"] == "ouder.1@example.nl"
    assert db.session.execute(sa.select(ConsentRecipient.delivery)).scalar_one() == "sent"


def test_button_with_nobody_missing_or_a_bad_channel_sends_nothing(app: Flask, logged_in: Any,
                                                                   photo: Media) -> None:
    """Nobody missing, only leavers missing, or an unknown channel: a message, no request."""
    ada = pupil("1", "Ada")
    face(photo, person_id=ada.id, resolution="identified")
    decide(ada.id, "facebook", "granted")
    client = english(logged_in, "staff")
    assert "missing consent for this channel" in _ask(client, photo, "facebook")
    assert "Choose a channel." in _ask(client, photo, "biometric")
    assert "Choose a channel." in _ask(client, photo, "")
    bram = pupil("2", "Bram", status="left")
    face(photo, (100, 40, 40, 40), person_id=bram.id, resolution="identified")
    landed = _ask(client, photo, "facebook")
    assert "missing consent for this channel" in landed
    assert "has left the school" in gate_section(landed) and "/gate/request" not in gate_section(landed)
    assert _request_ids(photo) == [] and not outbox(app)
    assert count(ConsentRequest) == 0


def test_button_refuses_readers_and_requests_without_csrf(app: Flask, logged_in: Any,
                                                          photo: Media) -> None:
    """The DPO may not ask; a post without the CSRF token is refused; an unknown item is 404."""
    ada = pupil("1", "Ada")
    face(photo, person_id=ada.id, resolution="identified")
    dpo = logged_in("dpo")
    assert dpo.post(f"/media/{photo.id}/gate/request", data={"channel": "facebook"}).status_code == 403
    staff = logged_in("staff")
    assert staff.post(f"/media/{photo.id}/gate/request",
                      data={"channel": "facebook"}).status_code == 400
    token = csrf_token(staff, f"/media/{photo.id}")
    assert staff.post("/media/999999/gate/request",
                      data={"csrf_token": token, "channel": "facebook"}).status_code == 404
    assert count(ConsentRequest) == 0 and not outbox(app)
