"""The whole consent story through real SMTP, following the links in the mails as people would.

A pupil of 14 with two guardians; a request for facebook; guardian A grants (granted); guardian B
refuses (refused); B changes to grant through the manage link (granted). Time moves to the 16th
birthday: the pupil is told they decide now, and the guardians' grant still counts until they do;
the pupil refuses through their own link (refused, although both guardians granted); grants; and
withdraws through the confirmation mail's link (withdrawn at once). The audit chain verifies.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import time_machine
from flask import Flask
from flask.testing import FlaskClient

from consent_registry.audit import SYSTEM, verify
from consent_registry.consent.service import effective_for
from consent_registry.db import db
from consent_registry.people.models import Person
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person

from conftest import bearer

ANNA, BERT = "anna@ouders.example.nl", "bert@ouders.example.nl"
LINK = re.compile(r"http://127\.0\.0\.1:5000(/[cmw]/[A-Za-z0-9_.\-]+)")


def _text(message: EmailMessage) -> str:
    """The plain-text part of a message."""
    return message.get_body(preferencelist=("plain",)).get_content()


def _links(message: EmailMessage) -> list[str]:
    """The site paths linked from a message, in order."""
    return LINK.findall(_text(message))


def _to(messages: list[EmailMessage], address: str) -> list[EmailMessage]:
    """The messages sent to one address."""
    return [m for m in messages if m["To"] == address]


def _state(person_id: int) -> str:
    """The pupil's effective consent for facebook now."""
    db.session.expire_all()
    return effective_for(db.session.get(Person, person_id), "facebook").state


def _follow_and_post(client: FlaskClient, path: str, data: dict[str, str]) -> Any:
    """Open a link as a browser would, then submit the page's form with its CSRF token."""
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post(path, data={**data, "csrf_token": token})


def test_the_whole_story(app: Flask, smtp: Any, tokens: dict[str, str]) -> None:
    """Every step of the issue's story, with real mail and real links."""
    app.config["CONSENT_VALIDITY"] = "indefinite"  # the story spans two school years
    today = date.today()
    born = date(today.year - 14, today.month, 1) - timedelta(days=40)
    pupil = create_person(PersonCreate.model_validate({
        "external_id": "S1", "given_name": "Noor", "family_name": "Visser",
        "birth_date": born.isoformat(), "role": "pupil", "email": "noor@leerling.example.nl",
        "guardians": [{"name": "Anna Visser", "email": "anna@ouders.example.nl"},
                      {"name": "Bert Visser", "email": "bert@ouders.example.nl"}],
    }), actor=SYSTEM)
    db.session.commit()
    pid = pupil.id

    api = app.test_client()
    sent = api.post("/api/v1/consent-requests", headers=bearer(tokens["staff"]),
                    json={"person_ids": [pid], "channels": ["facebook"],
                          "note": "schoolreis naar Berlijn, mei 2027"})
    assert sent.status_code == 202 and sent.get_json()["recipients"] == 2
    messages = smtp.wait_for_messages(2)
    assert sorted(m["To"] for m in messages) == [ANNA, BERT]
    [anna_mail], [bert_mail] = _to(messages, ANNA), _to(messages, BERT)
    assert "Berlijn" in _text(anna_mail) and list(anna_mail.iter_attachments()) == []
    assert all(received.tls and received.login == "registry" for received in smtp.received)

    # Guardian A grants: granted.
    anna, bert = app.test_client(), app.test_client()
    answered = _follow_and_post(anna, _links(anna_mail)[0], {"choice_facebook": "granted"})
    assert answered.status_code == 200
    assert _state(pid) == "granted"
    assert len(smtp.wait_for_messages(3)) == 3  # A's confirmation

    # Guardian B refuses: refused (any refusal wins).
    _follow_and_post(bert, _links(bert_mail)[0], {"choice_facebook": "refused"})
    assert _state(pid) == "refused"

    # B changes to grant through the manage link: granted again.
    manage = _links(bert_mail)[1]
    assert manage.startswith("/m/")
    changed = _follow_and_post(bert, manage, {f"d_{pid}_facebook": "granted"})
    assert changed.status_code == 200
    assert _state(pid) == "granted"

    # Time moves to the 16th birthday.
    birthday = datetime(born.year + 16, born.month, born.day, 9, 0, tzinfo=UTC)
    with time_machine.travel(birthday, tick=True):
        smtp.clear()
        result = app.test_cli_runner().invoke(args=["consent", "daily"])
        assert result.exit_code == 0, result.output
        [sixteen] = smtp.wait_for_messages(1)
        assert sixteen["To"] == "noor@leerling.example.nl"
        assert _state(pid) == "granted"  # the guardians' grant counts until the pupil decides

        noor = app.test_client()
        own_link = _links(sixteen)[0]
        _follow_and_post(noor, own_link, {f"d_{pid}_facebook": "refused"})
        assert _state(pid) == "refused"

        _follow_and_post(noor, own_link, {f"d_{pid}_facebook": "granted"})
        assert _state(pid) == "granted"
        confirmations = [m for m in smtp.wait_for_messages(3) if m["To"] == "noor@leerling.example.nl"
                         and "/w/" in _text(m)]
        withdraw = next(link for link in _links(confirmations[-1]) if link.startswith("/w/"))
        done = _follow_and_post(noor, withdraw, {})
        assert done.status_code == 200
        assert _state(pid) == "withdrawn"

    assert verify().ok

