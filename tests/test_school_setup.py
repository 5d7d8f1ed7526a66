"""The first run names the school and the mail sender; mails and public pages use the names."""

from __future__ import annotations

import re
from datetime import date

import sqlalchemy as sa
from flask import Flask

from consent_registry.audit import AuditEvent, verify
from consent_registry.consent.mails import turning_sixteen_mail
from consent_registry.db import db
from consent_registry.mail import build_message
from consent_registry.people.models import Person
from consent_registry.school import SchoolSettings, school_names

from conftest import csrf_token

# The assertions below read English; the site defaults to Dutch.
PAGES_IN_ENGLISH = True
NAMES = {"school_name": "Het Baken, Almere", "sender_name": "Het Baken (privacy)"}


def _first_admin(app: Flask):  # type: ignore[no-untyped-def]
    """`flask init` on an empty register, then the admin's first login with the one-time password."""
    result = app.test_cli_runner().invoke(args=["init", "--admin-email", "head@school.test"])
    assert result.exit_code == 0, result.output
    one_time = re.search(r"one-time password: (\S+)", result.output).group(1)
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    client.get("/login")
    client.post("/login", data={"email": "head@school.test", "password": one_time,
                                "csrf_token": csrf_token(client)})
    return client, one_time


def test_the_first_admin_is_asked_to_name_the_school_after_choosing_a_password(app: Flask) -> None:
    """First login: password, then the school page; saving stores, audits and shows the names."""
    client, one_time = _first_admin(app)
    changed = client.post("/account/password", data={
        "current_password": one_time, "new_password": "a much better passphrase",
        "confirm_password": "a much better passphrase",
        "csrf_token": csrf_token(client, "/account/password")})
    assert changed.headers["Location"] == "/settings/school"
    page = client.get("/settings/school").get_data(as_text=True)
    assert "Set up once" in page and 'value="School"' in page  # the configured default, to change
    token = csrf_token(client, "/settings/school")
    saved = client.post("/settings/school", data={**NAMES, "csrf_token": token})
    assert saved.status_code == 302
    row = db.session.get(SchoolSettings, 1)
    assert (row.school_name, row.sender_name) == (NAMES["school_name"], NAMES["sender_name"])
    [event] = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "settings:school")).scalars().all()
    assert event.details == {"fields": ["school_name", "sender_name"]}
    assert NAMES["school_name"] not in str(event.details)  # names by field, never by value
    assert verify().ok
    page = client.get("/settings/school").get_data(as_text=True)
    assert "Set up once" not in page and 'value="Het Baken, Almere"' in page


def test_a_bad_name_is_refused_and_the_form_keeps_what_was_typed(app: Flask, logged_in) -> None:
    """Empty or header-breaking names: 422 naming the field, nothing stored or audited."""
    admin = logged_in("admin")
    token = csrf_token(admin, "/settings/school")
    for values, field in (({"school_name": " ", "sender_name": "X"}, "school_name"),
                          ({"school_name": "Het Baken", "sender_name": 'Evil" <a@b.c>'}, "sender_name"),
                          ({"school_name": "x" * 121, "sender_name": "X"}, "school_name")):
        response = admin.post("/settings/school", data={**values, "csrf_token": token})
        assert response.status_code == 422, values
        html = response.get_data(as_text=True)
        assert f'id="e-{field}"' in html
        assert f'value="{values["school_name"]}"' in html  # what was typed comes back
    assert db.session.get(SchoolSettings, 1) is None
    assert not db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "settings:school")).first()
    for role in ("staff", "communications", "dpo"):
        assert logged_in(role).get("/settings/school").status_code == 403


def test_mails_and_public_pages_use_the_names(app: Flask, logged_in) -> None:
    """The From header carries the sender's name; the mail and the public pages the school's."""
    admin = logged_in("admin")
    admin.post("/settings/school", data={**NAMES, "csrf_token": csrf_token(admin, "/settings/school")})
    person = Person(external_id="S1", role="pupil", given_name="Sam", family_name="Vos",
                    birth_date=date(2010, 1, 1), email="sam@example.nl", language="en")
    db.session.add(person)
    db.session.commit()
    with app.test_request_context():
        assert school_names().school_name == NAMES["school_name"]
        mail = turning_sixteen_mail(person, {"facebook": "none"})
    assert mail.sender_name == NAMES["sender_name"] and NAMES["school_name"] in mail.text
    message = build_message(mail, sender="Consent registry <noreply@school.invalid>")
    assert message["From"] == '"Het Baken (privacy)" <noreply@school.invalid>'
    public = app.test_client().get("/m/").get_data(as_text=True)
    assert f'<div class="brand">{NAMES["school_name"]}</div>' in public
