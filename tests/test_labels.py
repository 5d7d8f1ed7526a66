"""Nothing raw in front of people: labels instead of codes, names instead of ids, local times."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import UTC, date, datetime
from typing import Any

import pytest
from flask import Flask
from flask_babel import force_locale
from test_dpo_files import story

from consent_registry import create_app
from consent_registry.audit import Actor, record
from consent_registry.db import db
from consent_registry.dpo.export import family_language
from consent_registry.labels import (
    AUDIT_ACTIONS,
    AUDIT_GROUPS,
    actor_label,
    audit_action_choices,
    field_value,
    local_date,
    local_time,
    subject_label,
)
from consent_registry.people.models import Person

from api_helpers import api_caller

# A December moment (CET, UTC+1) and a June one (CEST, UTC+2).
WINTER = datetime(2026, 12, 6, 13, 5, tzinfo=UTC)
SUMMER = datetime(2026, 6, 12, 22, 30, tzinfo=UTC)
RAW_CODES = ("granted", "withdrawn", "taken_down", "pupil", "facebook (facebook)",
             "person:file_viewed", "publication:takedown_requested", "email-link")


def _visible(html: str) -> str:
    """The text a reader sees: tags, attribute values and scripts left out."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def test_times_are_shown_in_the_school_time_zone_and_english_is_british(app: Flask) -> None:
    """13:05 UTC in December is 14:05 in Amsterdam; English days come before months."""
    with app.test_request_context(), force_locale("en"):
        assert local_time(WINTER) == "06/12/2026, 14:05"
        assert local_time(SUMMER) == "13/06/2026, 00:30"  # the next day there
        assert local_time(WINTER.isoformat()) == "06/12/2026, 14:05"  # the file's ISO strings too
        assert local_date(date(2026, 12, 6), "medium") == "6 Dec 2026"
        assert local_time(None) == "\u2013"
    with app.test_request_context(), force_locale("nl"):
        assert local_time(WINTER) == "06-12-2026, 14:05"
        assert local_date(date(2026, 12, 6), "long") == "6 december 2026"


def test_the_school_time_zone_is_a_setting(tmp_path: Any, database_url: str) -> None:
    """SCHOOL_TIMEZONE moves every time shown; an unknown zone stops the start with its name."""
    from conftest import make_app

    london = make_app(database_url, tmp_path, SCHOOL_TIMEZONE="Europe/London")
    with london.test_request_context(), force_locale("en"):
        assert local_time(WINTER) == "06/12/2026, 13:05"
        assert london.config["BABEL_DEFAULT_TIMEZONE"] == "Europe/London"
    with pytest.raises(RuntimeError, match="Mars/Olympus"):
        create_app({"SCHOOL_TIMEZONE": "Mars/Olympus", "DATABASE_URL": database_url},
                   environ={"CONSENT_REGISTRY_ENV": "test",
                            "CONSENT_REGISTRY_INSTANCE_PATH": str(tmp_path / "mars")})


def test_actors_and_subjects_are_named(app: Flask, users: dict, logged_in) -> None:
    """Users by name, guardians by name, people by name, an erased person as such."""
    person = Person(external_id="X1", role="pupil", given_name="Ada", family_name="Jansen",
                    birth_date=date(2012, 3, 4))
    gone = Person(external_id="X2", role="pupil", given_name="Erased", family_name="Erased",
                  birth_date=date(2012, 3, 4), erased_at=WINTER)
    db.session.add_all([person, gone])
    db.session.commit()
    with app.test_request_context(), force_locale("nl"):
        assert actor_label("user", users["dpo"].id) == "Dpo"
        assert actor_label("system", None) == "het systeem"
        assert actor_label("person", person.id) == "Ada Jansen"
        assert subject_label("person", gone.id) == f"gewiste persoon nr. {gone.id}"
        assert subject_label("media", "7") == "media-item 7"
        assert actor_label("user", 999_999) == "gebruiker nr. 999999 (verwijderd)"
    page = logged_in("dpo").get(f"/dpo/people/{gone.id}").get_data(as_text=True)
    assert f"<h1>Dossier van gewiste persoon nr. {gone.id}</h1>" in page


def test_every_action_the_code_records_has_a_label() -> None:
    """A new audit action without a label would show as a raw code in the filter and the log."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "consent_registry"
    written = set()
    for source in root.rglob("*.py"):
        written |= set(re.findall(r'"([a-z_]+:[a-z_0-9]+)"', source.read_text()))
    written |= {"settings:face_matching", "settings:voice_matching"}  # built as f-strings
    # Every literal that looks like an action of a known group is one (guardian:12 never is).
    missing = sorted(a for a in written
                     if a.partition(":")[0] in AUDIT_GROUPS and a not in AUDIT_ACTIONS)
    assert not missing, f"audit actions without a label in labels.py: {missing}"


def test_the_dpo_pages_show_labels_names_and_local_times_in_dutch(
        app: Flask, tokens: dict[str, str], graph: Any, logged_in, users: dict) -> None:
    """The file, the proof and the audit log of a withdrawn Facebook post: no code left raw."""
    ids = story(app, tokens)
    dpo = logged_in("dpo")
    for path in (f"/dpo/people/{ids['ada']}", f"/dpo/publications/{ids['publication']}/proof",
                 f"/dpo/audit?person_id={ids['ada']}"):
        response = dpo.get(path)
        assert response.status_code == 200, path
        text = _visible(response.get_data(as_text=True))
        for code in RAW_CODES:
            assert code not in text, (path, code)
        assert not re.search(r"\buser \d+\b|\bguardian \d+\b", text), path
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text), path  # no ISO times
    file_page = _visible(dpo.get(f"/dpo/people/{ids['ada']}").get_data(as_text=True))
    assert "ja, toestemming gegeven" in file_page and "ingetrokken" in file_page
    assert "offline gehaald" in file_page and "Ouder van Ada" in file_page
    audit_page = dpo.get("/dpo/audit").get_data(as_text=True)
    assert "Communications" in _visible(audit_page)  # the publisher, by name
    assert '<select id="action" name="action">' in audit_page
    assert '<option value="consent:withdraw">toestemming ingetrokken</option>' in audit_page


def test_the_audit_filter_offers_every_known_action_and_filters_on_it(
        app: Flask, logged_in, users: dict) -> None:
    """A select of translated actions (and their groups); choosing one filters the log."""
    record("person:update", actor=Actor("user", users["staff"].id), subject_type="person",
           subject_id=1)
    record("token:create", actor=Actor("user", users["staff"].id))
    db.session.commit()
    html = logged_in("dpo").get("/dpo/audit?action=token:create").get_data(as_text=True)
    assert '<option value="token:create" selected>API-token aangemaakt</option>' in html
    table = _visible(html.split('<table class="audit">', 1)[1])
    assert "API-token aangemaakt" in table and "persoon gewijzigd" not in table
    older = logged_in("dpo").get("/dpo/audit?action=legacy:thing").get_data(as_text=True)
    assert '<option value="legacy:thing" selected>legacy:thing</option>' in older  # kept, not lost
    with app.test_request_context(), force_locale("en"):
        groups = dict(audit_action_choices())
        assert ("person", "all of them") in groups["People"]
        assert ("consent:withdraw", "consent withdrawn") in groups["Consent"]


def test_the_subject_access_summary_is_in_the_familys_language(
        app: Flask, tokens: dict[str, str], graph: Any, logged_in) -> None:
    """A Dutch family's summary has Dutch labels and values, local times, no raw codes."""
    ids = story(app, tokens)
    ada = db.session.get(Person, ids["ada"])
    assert family_language(ada) == "nl"
    export_id = api_caller(app, tokens, "dpo")("POST", f"/people/{ids['ada']}/export").get_json()["export_id"]
    response = logged_in("dpo").get(f"/dpo/exports/{export_id}/download")
    data = response.get_data()
    response.close()
    summary = zipfile.ZipFile(io.BytesIO(data)).read("summary.html").decode()
    text = _visible(summary)
    assert "geboortedatum" in text and "4 maart 2012" in text
    assert "ja, toestemming gegeven" in text and "ouder/verzorger" in text
    for code in ("birth date", "decider kind", "given name", "granted", "taken_down",
                 "consent_record_ids"):
        assert code not in text, code
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text)


def test_an_english_speaking_family_gets_an_english_summary(app: Flask) -> None:
    """The guardians' mail language decides for a pupil; the values follow it."""
    person = Person(external_id="E1", role="pupil", given_name="Ann", family_name="Lee",
                    birth_date=date(2012, 3, 4), language="nl")
    from consent_registry.people.models import Guardian, GuardianLink

    guardian = Guardian(name="Pat Lee", email="pat@example.org", language="en")
    db.session.add_all([person, guardian])
    db.session.flush()
    db.session.add(GuardianLink(person_id=person.id, guardian_id=guardian.id))
    db.session.commit()
    db.session.refresh(person)
    assert family_language(person) == "en"
    with app.app_context(), force_locale("en"):
        assert field_value("decision", "granted") == "yes, consent given"
        assert field_value("birth_date", "2012-03-04") == "4 March 2012"
