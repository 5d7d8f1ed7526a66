"""Nothing raw in front of people: labels instead of codes, names instead of ids, local times."""

from __future__ import annotations

import ast
import io
import pathlib
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
    FIELD_LABELS,
    actor_label,
    audit_action_choices,
    field_value,
    local_date,
    local_time,
    subject_label,
)
from consent_registry.people.models import Person

from api_helpers import api_caller
from conftest import SHARED_DATA

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



def _subscript_key(target: ast.AST, name: str) -> str | None:
    """The key of `name["key"]` as an assignment target."""
    if (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
            and target.value.id == name and isinstance(target.slice, ast.Constant)):
        return str(target.slice.value)
    return None


def _keys_of_name(name: str, scope: ast.AST, module: ast.Module, seen: set) -> set[str]:
    """Keys a variable gets in its function: assigned dicts, `x["k"] =`, update(), callers' args."""
    keys: set[str] = set()
    for sub in ast.walk(scope):
        if isinstance(sub, (ast.Assign, ast.AnnAssign)):
            targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id == name and sub.value is not None:
                    keys |= _keys_of(sub.value, scope, module, seen)
                parts = target.elts if isinstance(target, ast.Tuple) else [target]
                keys |= {k for k in (_subscript_key(t, name) for t in parts) if k}
        if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute)
                and sub.func.attr == "update" and isinstance(sub.func.value, ast.Name)
                and sub.func.value.id == name):
            keys |= {kw.arg for kw in sub.keywords if kw.arg}
            for arg in sub.args:
                keys |= _keys_of(arg, scope, module, seen)
    if isinstance(scope, ast.FunctionDef):
        positional = [a.arg for a in scope.args.args]
        if name in positional or name in [a.arg for a in scope.args.kwonlyargs]:
            for caller in ast.walk(module):  # a parameter: follow the module's calls of the function
                if not isinstance(caller, ast.FunctionDef):
                    continue
                for call in ast.walk(caller):
                    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                            and call.func.id == scope.name):
                        continue
                    arg = next((kw.value for kw in call.keywords if kw.arg == name), None)
                    if arg is None and name in positional and positional.index(name) < len(call.args):
                        arg = call.args[positional.index(name)]
                    if arg is not None:
                        keys |= _keys_of(arg, caller, module, seen)
    return keys


def _keys_of(node: ast.AST, scope: ast.AST, module: ast.Module, seen: set) -> set[str]:
    """The string keys a details expression can hold."""
    keys: set[str] = set()
    if isinstance(node, ast.Dict):
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:  # {**other}
                keys |= _keys_of(value, scope, module, seen)
            elif isinstance(key, ast.Constant) and isinstance(key.value, str):
                keys.add(key.value)
    elif isinstance(node, ast.IfExp):
        keys |= _keys_of(node.body, scope, module, seen) | _keys_of(node.orelse, scope, module, seen)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        keys |= {kw.arg for kw in node.keywords if kw.arg}
    elif isinstance(node, ast.Name) and (id(scope), node.id) not in seen:
        seen.add((id(scope), node.id))
        keys |= _keys_of_name(node.id, scope, module, seen)
    return keys


def _details_of(node: ast.AST) -> ast.AST | None:
    """The details a record(...) call or an inserted event dict (migrations) writes."""
    if isinstance(node, ast.Call):
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if name == "record":
            return next((kw.value for kw in node.keywords if kw.arg == "details"), None)
    if isinstance(node, ast.Dict):
        fields = {k.value: v for k, v in zip(node.keys, node.values, strict=True)
                  if isinstance(k, ast.Constant)}
        if "action" in fields and "details" in fields:
            return fields["details"]
    return None


def _written_detail_keys(root: pathlib.Path) -> dict[str, set[str]]:
    """Every key the code writes into audit event details, with where it is written."""
    found: dict[str, set[str]] = {}
    for source in sorted(root.rglob("*.py")):
        module = ast.parse(source.read_text())
        for function in ast.walk(module):
            if not isinstance(function, ast.FunctionDef):
                continue
            for node in ast.walk(function):
                details = _details_of(node)
                if details is None:
                    continue
                for key in _keys_of(details, function, module, set()):
                    found.setdefault(key, set()).add(f"{source.relative_to(root)}:{node.lineno}")
    return found


def test_every_details_key_the_code_writes_has_a_label() -> None:
    """A details key without a label would show as a raw English key on the Dutch audit pages."""
    root = pathlib.Path(__file__).resolve().parents[1] / "consent_registry"
    written = _written_detail_keys(root)
    assert {"recipient_ids", "printed_link", "previous_head", "reasons"} <= set(written)  # found
    missing = sorted(f"{key} ({sorted(written[key])[0]})" for key in written
                     if key not in FIELD_LABELS)
    assert not missing, f"audit details keys without a label in labels.py FIELD_LABELS: {missing}"


def test_revoke_and_gate_reasons_are_shown_translated(app: Flask, logged_in, users: dict) -> None:
    """token:revoke's reason and gate:blocked's list of reasons read as words, not codes."""
    actor = Actor("user", users["admin"].id)
    record("token:revoke", actor=actor, subject_type="user", subject_id=users["staff"].id,
           details={"token_id": 1, "reason": "password_reset"})
    record("gate:blocked", actor=actor, subject_type="media", subject_id=1,
           details={"channel": "website", "reasons": ["not_attested", "withdrawn"], "blockers": 2})
    db.session.commit()
    text = _visible(logged_in("dpo").get("/dpo/audit").get_data(as_text=True))
    for raw in ("password_reset", "not_attested", "reasons", "token_id"):
        assert raw not in text, raw
    assert "het wachtwoord is opnieuw ingesteld" in text
    assert "toestemming ingetrokken" in text and "redenen" in text
    with app.test_request_context(), force_locale("en"):
        assert field_value("reasons", ["withdrawn"]) == ["consent withdrawn"]
        assert field_value("reason", "deactivated") == "the account was deactivated"


def test_a_failure_that_is_no_known_damage_is_not_shown_raw(
        app: Flask, tokens: dict[str, str], logged_in, monkeypatch) -> None:
    """An exception's text stays in the audit log; the media page gives a translated sentence."""
    from consent_registry.media.models import Media
    from consent_registry.media.views import failure_label

    monkeypatch.setattr("consent_registry.api.media.start_analysis", lambda media_id: None)
    api = api_caller(app, tokens, "communications")
    photo = SHARED_DATA / "groups" / "g01.jpg"
    media_id = api("POST", "/media", data={"file": (io.BytesIO(photo.read_bytes()), "g.jpg")},
                   content_type="multipart/form-data").get_json()["id"]
    media = db.session.get(Media, media_id)
    media.status, media.failure_reason = "failed", "ValueError: boom"
    db.session.commit()
    page = _visible(logged_in("communications").get(f"/media/{media_id}").get_data(as_text=True))
    assert "ValueError" not in page and "boom" not in page
    assert ("The analysis stopped with an error" in page
            or "De analyse is gestopt met een fout" in page)
    with app.test_request_context(), force_locale("en"):  # a known code keeps its sentence
        assert failure_label("sound_tracks: 2 tracks").startswith("The file has more than one")


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
