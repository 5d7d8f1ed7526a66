"""Tests for importing pupil exports: upload, preview, mapping and apply on the web, and the CLI."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from consent_registry.audit import SYSTEM, AuditEvent
from consent_registry.db import db
from consent_registry.people.importing import MAX_IMPORT_BYTES, ImportBatch
from consent_registry.people.models import Guardian, GuardianLink, Person
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person

from conftest import StaffUser, csrf_token

LoggedIn = Callable[[str], FlaskClient]
HEADER = ("Leerlingnummer;Roepnaam;Tussenvoegsel;Achternaam;Geboortedatum;Klas;"
          "E-mail ouder/verzorger 1;Naam ouder/verzorger 1;E-mail ouder/verzorger 2;Naam ouder/verzorger 2")
DAAN = "100234;Daan;de;Vries;14-03-2012;1A;marieke.devries@example.nl;Marieke de Vries;;"
SANNE = ("100235;Sanne;de;Vries;02-09-2014;3B;Marieke.deVries@example.nl;Marieke de Vries;"
         "johan.devries@example.nl;Johan de Vries")
MOHAMMED = "100301;Mohammed;;El Amrani;30-11-2009;4C;f.elamrani@example.nl;Fatima El Amrani;;"
GOOD_ROWS = (DAAN, SANNE, MOHAMMED)
PREVIEW_PATH = re.compile(r"/people/import/(\d+)$")


# --- helpers -------------------------------------------------------------------------------


def magister(*rows: str, header: str = HEADER, encoding: str = "utf-8") -> bytes:
    """A Magister-like export: semicolons, Windows line ends, a header and the given rows."""
    return "\r\n".join([header, *rows, ""]).encode(encoding)


def count(model: type[Any]) -> int:
    """Rows in a table."""
    return db.session.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


def actions() -> list[str]:
    """Every audit action so far, oldest first."""
    db.session.expire_all()
    return list(db.session.execute(sa.select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


def events(action: str) -> list[AuditEvent]:
    """Audit events with this action, oldest first."""
    db.session.expire_all()
    return list(db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
    ).scalars())


def people() -> dict[str, Person]:
    """Everyone in the register by number, as stored now."""
    db.session.expire_all()
    return {p.external_id: p for p in db.session.execute(sa.select(Person)).scalars()}


def snapshot() -> list[tuple[Any, ...]]:
    """The register's content, to compare before and after a refused import."""
    rows = []
    for person in sorted(people().values(), key=lambda p: p.external_id):
        guardians = sorted((ln.guardian.email, ln.guardian.name, ln.relation) for ln in person.guardian_links)
        rows.append((person.external_id, person.given_name, person.family_name, person.birth_date,
                     person.email, person.group, person.status, tuple(guardians)))
    return rows


def admin(logged_in: LoggedIn) -> FlaskClient:
    """An admin's browser asking for English pages."""
    client = logged_in("admin")
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def upload(client: FlaskClient, content: bytes | None, filename: str = "leerlingen.csv") -> TestResponse:
    """Post a file to the upload form (or no file at all when content is None)."""
    data: dict[str, Any] = {"csrf_token": csrf_token(client, "/people/import/")}
    if content is not None:
        data["file"] = (io.BytesIO(content), filename)
    return client.post("/people/import/", data=data, content_type="multipart/form-data")


def uploaded(client: FlaskClient, content: bytes) -> int:
    """Upload a file that must be accepted; the id of its batch."""
    response = upload(client, content)
    assert response.status_code == 302, response.get_data(as_text=True)
    match = PREVIEW_PATH.search(response.headers["Location"])
    assert match, response.headers["Location"]
    return int(match.group(1))


def post(client: FlaskClient, path: str, data: dict[str, str] | None = None) -> TestResponse:
    """A form POST with the client's CSRF token."""
    return client.post(path, data={**(data or {}), "csrf_token": csrf_token(client, "/people/import/")})


def apply(client: FlaskClient, batch_id: int) -> TestResponse:
    """Press 'Import now'."""
    return post(client, f"/people/import/{batch_id}/apply")


def import_via_web(client: FlaskClient, content: bytes) -> TestResponse:
    """Upload and apply a file that must be applicable."""
    response = apply(client, uploaded(client, content))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def summary_counts(html: str) -> dict[str, int]:
    """The numbers in the preview's summary table, by row label."""
    return {label: int(number) for label, number in
            re.findall(r'<th scope="row">([^<]+)</th><td>(\d+)</td>', html)}


REJECTED_ROW = re.compile(r'<tr><td>(\d+)</td><td>([^<]*)</td><td data-field="([^"]*)">([^<]*)</td>'
                          r"<td>([^<]*)</td></tr>")


def rejected_cells(html: str, heading: str = "Rejected rows") -> list[tuple[str, str, str, str, str]]:
    """(row, number, field name, field label, reason) of every row in the preview's rejected table."""
    table = html.split(f"<h2>{heading}</h2>", 1)
    if len(table) == 1:
        return []
    return REJECTED_ROW.findall(table[1])


def rejected_rows(html: str) -> list[tuple[str, str, str, str]]:
    """(row, number, field name, reason) of every row in the preview's rejected table."""
    return [(row, number, field, reason) for row, number, field, _label, reason in rejected_cells(html)]


def done_counts(html: str) -> dict[str, int]:
    """The counts on the 'import done' page."""
    return {label: int(number) for label, number in re.findall(r"<li>([^<:]+): (\d+)</li>", html)}


def add_pupil(external_id: str, group: str = "8A") -> Person:
    """A pupil already in the register."""
    person = create_person(PersonCreate(external_id=external_id, given_name="Bestaand",
                                        family_name="Kind", birth_date=date(2011, 1, 1),
                                        role="pupil", group=group), actor=SYSTEM)
    db.session.commit()
    return person


def run_cli(app: Flask, *args: str) -> Result:
    """Run `flask people import ...`."""
    return app.test_cli_runner().invoke(args=["people", "import", *args])


# --- who may import ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["communications", "staff", "dpo"])
def test_only_admins_reach_the_import(logged_in: LoggedIn, role: str) -> None:
    """Every import page and action is 403 for other roles, and they store nothing."""
    batch_id = uploaded(admin(logged_in), magister(*GOOD_ROWS))
    client = logged_in(role)
    assert client.get("/people/import/").status_code == 403
    token = csrf_token(client, "/people/")
    response = client.post("/people/import/", data={"csrf_token": token,
                                                     "file": (io.BytesIO(magister(DAAN)), "a.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 403
    assert client.get(f"/people/import/{batch_id}").status_code == 403
    assert client.post(f"/people/import/{batch_id}/mapping",
                       data={"csrf_token": token, "birth_date": "X"}).status_code == 403
    assert client.post(f"/people/import/{batch_id}/apply", data={"csrf_token": token}).status_code == 403
    assert count(ImportBatch) == 1
    assert count(Person) == 0
    assert 'href="/people/import/"' not in client.get("/people/").get_data(as_text=True)


def test_anonymous_visitor_is_sent_to_login(client: FlaskClient) -> None:
    """The import page needs a login."""
    response = client.get("/people/import/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_apply_without_csrf_token_is_refused(logged_in: LoggedIn) -> None:
    """Applying needs the CSRF token; without it nothing is imported."""
    client = admin(logged_in)
    batch_id = uploaded(client, magister(*GOOD_ROWS))
    assert client.post(f"/people/import/{batch_id}/apply").status_code == 400
    assert count(Person) == 0
    assert db.session.get(ImportBatch, batch_id).status == "previewed"


# --- upload, preview, apply --------------------------------------------------------------------


def test_upload_preview_apply(logged_in: LoggedIn, users: dict[str, StaffUser]) -> None:
    """Upload shows a preview and changes nothing; applying imports everyone, audited, then wipes the file."""
    client = admin(logged_in)
    assert 'enctype="multipart/form-data"' in client.get("/people/import/").get_data(as_text=True)
    content = magister(*GOOD_ROWS)
    response = upload(client, content, "export <1>.csv")
    assert response.status_code == 302
    batch_id = int(PREVIEW_PATH.search(response.headers["Location"]).group(1))
    batch = db.session.get(ImportBatch, batch_id)
    assert (batch.sha256, batch.content, batch.status) == (hashlib.sha256(content).hexdigest(), content,
                                                         "previewed")
    assert batch.uploaded_by == users["admin"].id

    preview = client.get(f"/people/import/{batch_id}")
    assert preview.status_code == 200
    html = preview.get_data(as_text=True)
    assert summary_counts(html) == {"New pupils": 3, "Changed pupils": 0, "Unchanged": 0, "Rejected rows": 0}
    assert "export &lt;1&gt;.csv" in html
    assert f'action="/people/import/{batch_id}/apply"' in html
    assert count(Person) == 0 and count(Guardian) == 0
    assert "people:import" not in actions()

    done = apply(client, batch_id)
    assert done.status_code == 200
    assert done_counts(done.get_data(as_text=True)) == {"New pupils": 3, "Changed pupils": 0, "Unchanged": 0}
    register = people()
    assert set(register) == {"100234", "100235", "100301"}
    daan, sanne = register["100234"], register["100235"]
    assert (daan.given_name, daan.family_name, daan.birth_date, daan.group, daan.role, daan.status) == (
        "Daan", "de Vries", date(2012, 3, 14), "1A", "pupil", "active")
    assert register["100301"].family_name == "El Amrani"
    assert count(Guardian) == 3  # Marieke once, for both children
    marieke = db.session.execute(
        sa.select(Guardian).where(Guardian.email == "marieke.devries@example.nl")).scalar_one()
    assert {link.person_id for link in marieke.child_links} == {daan.id, sanne.id}
    assert {ln.guardian.email for ln in sanne.guardian_links} == {"marieke.devries@example.nl",
                                                                   "johan.devries@example.nl"}
    assert count(GuardianLink) == 4

    [imported] = events("people:import")
    assert imported.details == {"sha256": hashlib.sha256(content).hexdigest(), "created": 3, "updated": 0,
                                "unchanged": 0, "missing": 0}
    assert (imported.actor_type, imported.actor_id) == ("user", users["admin"].id)
    assert len(events("person:create")) == 3 and len(events("guardian:create")) == 3
    assert all(e.actor_id == users["admin"].id for e in events("person:create"))

    db.session.expire_all()
    batch = db.session.get(ImportBatch, batch_id)
    assert (batch.content, batch.status) == (b"", "applied")
    assert batch.sha256 == hashlib.sha256(content).hexdigest()
    assert batch.applied_at is not None
    assert batch.summary["created"] == 3 and batch.summary["applied"] is True

    before = actions()
    assert apply(client, batch_id).status_code == 404
    assert client.get(f"/people/import/{batch_id}").status_code == 404
    assert post(client, f"/people/import/{batch_id}/mapping", {"birth_date": "X"}).status_code == 404
    assert actions() == before
    assert count(Person) == 3


def test_unknown_batch_is_404(logged_in: LoggedIn) -> None:
    """A batch that does not exist cannot be previewed or applied."""
    client = admin(logged_in)
    assert client.get("/people/import/424242").status_code == 404
    assert client.get(f"/people/import/{2**40}").status_code == 404
    assert apply(client, 424242).status_code == 404


def test_windows_1252_file_with_accents(logged_in: LoggedIn) -> None:
    """An export saved by Excel in Windows-1252 keeps its accented names."""
    client = admin(logged_in)
    content = magister("200001;Zoë;van;Müller-Çelik;01-02-2013;2B;bjorn@example.nl;Björn Müller;;",
                       encoding="cp1252")
    with pytest.raises(UnicodeDecodeError):
        content.decode("utf-8")
    import_via_web(client, content)
    zoe = people()["200001"]
    assert (zoe.given_name, zoe.family_name) == ("Zoë", "van Müller-Çelik")
    assert zoe.guardian_links[0].guardian.name == "Björn Müller"
    assert "Zoë van Müller-Çelik" in client.get(f"/people/{zoe.id}").get_data(as_text=True)


def test_reimport_of_the_same_file_changes_nothing(logged_in: LoggedIn) -> None:
    """Importing the same export again leaves everyone unchanged and only logs the import."""
    client = admin(logged_in)
    content = magister(*GOOD_ROWS)
    import_via_web(client, content)
    before, register = actions(), snapshot()
    batch_id = uploaded(client, content)
    assert summary_counts(client.get(f"/people/import/{batch_id}").get_data(as_text=True)) == {
        "New pupils": 0, "Changed pupils": 0, "Unchanged": 3, "Rejected rows": 0}
    done = apply(client, batch_id)
    assert done_counts(done.get_data(as_text=True)) == {"New pupils": 0, "Changed pupils": 0, "Unchanged": 3}
    assert actions() == [*before, "import:upload", "people:import"]
    assert events("people:import")[-1].details["unchanged"] == 3
    assert snapshot() == register


def test_changed_class_is_one_update(logged_in: LoggedIn) -> None:
    """A new class for one pupil is one update, audited by field name."""
    client = admin(logged_in)
    import_via_web(client, magister(*GOOD_ROWS))
    before = actions()
    batch_id = uploaded(client, magister(DAAN.replace(";1A;", ";2A;"), SANNE, MOHAMMED))
    html = client.get(f"/people/import/{batch_id}").get_data(as_text=True)
    assert summary_counts(html) == {"New pupils": 0, "Changed pupils": 1, "Unchanged": 2, "Rejected rows": 0}
    assert "100234 Daan de Vries: Group</li>" in html
    done = apply(client, batch_id)
    assert done_counts(done.get_data(as_text=True))["Changed pupils"] == 1
    assert people()["100234"].group == "2A"
    assert actions() == [*before, "import:upload", "person:update", "people:import"]
    assert events("person:update")[-1].details == {"fields": ["group"]}


def test_pupil_missing_from_the_file_is_listed_not_deleted(logged_in: LoggedIn) -> None:
    """A pupil who is not in the new export is reported as missing and kept."""
    client = admin(logged_in)
    import_via_web(client, magister(*GOOD_ROWS))
    batch_id = uploaded(client, magister(DAAN, SANNE))
    html = client.get(f"/people/import/{batch_id}").get_data(as_text=True)
    assert "Active pupils not in this file" in html
    assert "<p>100301</p>" in html
    done = apply(client, batch_id).get_data(as_text=True)
    assert "100301" in done
    mohammed = people()["100301"]
    assert (mohammed.status, mohammed.left_on) == ("active", None)
    assert count(Person) == 3
    assert events("people:import")[-1].details["missing"] == 1


def test_guardian_change_in_the_file_relinks(logged_in: LoggedIn) -> None:
    """A guardian dropped from a row is unlinked from that pupil but kept for the sibling."""
    client = admin(logged_in)
    import_via_web(client, magister(*GOOD_ROWS))
    sanne_without_marieke = "100235;Sanne;de;Vries;02-09-2014;3B;johan.devries@example.nl;Johan de Vries;;"
    import_via_web(client, magister(DAAN, sanne_without_marieke, MOHAMMED))
    register = people()
    assert [ln.guardian.email for ln in register["100235"].guardian_links] == ["johan.devries@example.nl"]
    assert [ln.guardian.email for ln in register["100234"].guardian_links] == ["marieke.devries@example.nl"]
    assert count(Guardian) == 3
    assert events("person:update")[-1].details == {"fields": ["guardians"]}


# --- bad rows ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_row", "field", "reason"),
    [
        ("100400;Lisa;;Bakker;31-02-2013;2C;;;;", "birth_date", "Birth date 31-02-2013 does not exist"),
        ("100234;Dubbel;;Kind;01-01-2013;2C;;;;", "external_id",
         "Pupil number 100234 already appears on an earlier row"),
        ("100400;Lisa;;Bakker;01-01-2013;2C;lisa-ouder(at)example.nl;Ouder Bakker;;", "guardian1_email",
         "Guardian 1 e-mail address is not a valid e-mail address"),
    ],
    ids=["impossible-date", "duplicate-number", "broken-email"],
)
def test_one_bad_row_stops_the_whole_import(
    logged_in: LoggedIn, bad_row: str, field: str, reason: str
) -> None:
    """The preview names the bad row and why; applying is refused and nothing at all is imported."""
    existing = add_pupil("100301", group="3C")  # the file would move Mohammed to 4C
    client = admin(logged_in)
    register, before = snapshot(), actions()
    batch_id = uploaded(client, magister(DAAN, SANNE, bad_row, MOHAMMED))
    html = client.get(f"/people/import/{batch_id}").get_data(as_text=True)
    rows = rejected_rows(html)
    assert [(row, f, why) for row, _number, f, why in rows] == [("4", field, reason)]
    counts = summary_counts(html)
    assert (counts["New pupils"], counts["Changed pupils"], counts["Rejected rows"]) == (2, 1, 1)
    assert f'action="/people/import/{batch_id}/apply"' not in html
    assert "the import is all or nothing" in html

    response = apply(client, batch_id)
    assert response.status_code == 422
    refused = response.get_data(as_text=True)
    assert "Nothing was imported" in refused
    assert [r[2:] for r in rejected_rows(refused)] == [(field, reason)]
    assert snapshot() == register
    assert people()["100301"].group == "3C" and people()["100301"].id == existing.id
    assert count(Guardian) == 0
    assert actions() == [*before, "import:upload"]  # the upload itself is logged, nothing more
    db.session.expire_all()
    assert db.session.get(ImportBatch, batch_id).status == "previewed"


def test_every_bad_row_is_listed(logged_in: LoggedIn) -> None:
    """Several bad rows are each listed with their row number, number and reason."""
    client = admin(logged_in)
    content = magister(
        DAAN,
        "100500;Bo;;Smit;2013-13-01;5A;;;;",
        "100501;;;Smit;01-01-2013;5A;;;;",
        "100502;Bas;;Smit;01-01-2013;5A;;Alleen Naam;;",
        "100503;Bram;;Smit;01-01-13;5A;;;;",
    )
    html = client.get(f"/people/import/{uploaded(client, content)}").get_data(as_text=True)
    rows = rejected_rows(html)
    assert [(row, number, field) for row, number, field, _ in rows] == [
        ("3", "100500", "birth_date"), ("4", "100501", "given_name"),
        ("5", "100502", "guardian1_email"), ("6", "100503", "birth_date")]
    assert "needs a four-digit year" in rows[3][3]
    assert summary_counts(html)["Rejected rows"] == 4


def test_rejected_rows_are_counted_as_rows_and_every_problem_is_listed(
    logged_in: LoggedIn, app: Flask, tmp_path: Path
) -> None:
    """A row with three problems is one rejected row; its three problems are all still listed."""
    client = admin(logged_in)
    content = magister(DAAN, "100500;;;Smit;31-02-2013;5A;kapot@;;;",
                       "100501;Bo;;Smit;01-01-13;5A;;;;")
    html = client.get(f"/people/import/{uploaded(client, content)}").get_data(as_text=True)
    assert [(row, field) for row, _n, field, _r in rejected_rows(html)] == [
        ("3", "given_name"), ("3", "birth_date"), ("3", "guardian1_email"), ("4", "birth_date")]
    counts = summary_counts(html)
    assert (counts["Rejected rows"], counts["Problems in the rejected rows"]) == (2, 4)
    path = tmp_path / "export.csv"
    path.write_bytes(content)
    result = run_cli(app, str(path), "--dry-run")
    assert "created 1, updated 0, unchanged 0, rejected 2" in result.output
    assert result.output.count("row 3:") == 3


def test_pupil_and_guardian_addresses_without_guardian_names_are_imported(
    logged_in: LoggedIn,
) -> None:
    """An upper-years export: the pupils' own (school) addresses and the guardians' addresses only."""
    client = admin(logged_in)
    header = "Leerlingnummer;Roepnaam;Achternaam;Geboortedatum;Klas;E-mailadres school;E-mail ouder 1"
    content = magister("200001;Noor;Visser;01-02-2008;5V;Noor.Visser@Leerling.School.nl;"
                       "ouders.visser@example.nl", "200002;Sem;Bos;03-04-2008;5V;;", header=header)
    done = import_via_web(client, content).get_data(as_text=True)
    assert done_counts(done)["New pupils"] == 2
    noor, sem = people()["200001"], people()["200002"]
    assert (noor.email, sem.email) == ("noor.visser@leerling.school.nl", None)
    [link] = noor.guardian_links
    assert (link.guardian.email, link.guardian.name) == ("ouders.visser@example.nl", "")
    assert link.guardian.display_name == "ouders.visser@example.nl"
    again = client.get(f"/people/import/{uploaded(client, content)}").get_data(as_text=True)
    assert summary_counts(again)["Unchanged"] == 2
    # A name the school adds later is not wiped by the next address-only import.
    link.guardian.name = "Eva Visser"
    db.session.commit()
    html = client.get(f"/people/import/{uploaded(client, content)}").get_data(as_text=True)
    assert summary_counts(html)["Unchanged"] == 2


# --- the wrong shape and the mapping form --------------------------------------------------------


def test_missing_column_is_shown_and_fixed_by_mapping(logged_in: LoggedIn) -> None:
    """A file without a known birth-date column shows the file error until the mapping names it."""
    client = admin(logged_in)
    content = magister(*GOOD_ROWS, header=HEADER.replace("Geboortedatum", "Geb.dat"))
    batch_id = uploaded(client, content)
    html = client.get(f"/people/import/{batch_id}").get_data(as_text=True)
    assert "The file cannot be imported:" in html
    assert "<li>The file lacks these required columns: Geboortedatum</li>" in html
    assert "missing_columns" not in html  # the code is for scripts, not for people
    assert summary_counts(html)["New pupils"] == 0
    assert f'action="/people/import/{batch_id}/apply"' not in html
    assert apply(client, batch_id).status_code == 422
    assert count(Person) == 0

    response = post(client, f"/people/import/{batch_id}/mapping", {"birth_date": " Geb.dat ", "email": ""})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/people/import/{batch_id}")
    db.session.expire_all()
    assert db.session.get(ImportBatch, batch_id).mapping == {"birth_date": "Geb.dat"}
    html = client.get(f"/people/import/{batch_id}").get_data(as_text=True)
    assert "The file cannot be imported:" not in html
    assert 'id="m-birth_date" name="birth_date" value="Geb.dat"' in html
    assert summary_counts(html)["New pupils"] == 3
    assert apply(client, batch_id).status_code == 200
    assert people()["100234"].birth_date == date(2012, 3, 14)


def test_mapping_to_an_unknown_column_is_a_file_error(logged_in: LoggedIn) -> None:
    """A mapping that names a column the file lacks is reported, not guessed."""
    client = admin(logged_in)
    batch_id = uploaded(client, magister(*GOOD_ROWS))
    post(client, f"/people/import/{batch_id}/mapping", {"group": "Stamgroep X"})
    html = client.get(f"/people/import/{batch_id}").get_data(as_text=True)
    assert "<li>The column mapping names columns the file does not have: Stamgroep X</li>" in html
    assert apply(client, batch_id).status_code == 422
    assert count(Person) == 0


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (None, 422, "Choose a file."),
        (b"", 422, "The file is empty."),
        (b" \r\n\r\n  ", 422, "The file is empty."),
        (magister(DAAN) + b"x" * MAX_IMPORT_BYTES, 413, "The file is larger than 10 MB."),
    ],
    ids=["no-file", "empty", "blank", "too-large"],
)
def test_refused_uploads_store_nothing(
    logged_in: LoggedIn, content: bytes | None, status: int, message: str
) -> None:
    """A missing, empty or oversized file gets a clear error and no batch is stored."""
    client = admin(logged_in)
    response = upload(client, content)
    assert response.status_code == status
    html = response.get_data(as_text=True)
    assert f'<p class="flash error" role="alert">{message}</p>' in html
    assert 'name="file"' in html  # the form is shown again
    assert count(ImportBatch) == 0
    assert count(Person) == 0


def test_file_of_exactly_the_limit_is_accepted(logged_in: LoggedIn) -> None:
    """The 10 MB limit is inclusive: a file of exactly that size is kept for its preview."""
    client = admin(logged_in)
    head = magister(DAAN)
    content = head + b" " * (MAX_IMPORT_BYTES - len(head))
    assert len(content) == MAX_IMPORT_BYTES
    batch_id = uploaded(client, content)
    assert len(db.session.get(ImportBatch, batch_id).content) == MAX_IMPORT_BYTES


# --- the command line ------------------------------------------------------------------------------


def test_cli_dry_run_changes_nothing(app: Flask, tmp_path: Path) -> None:
    """--dry-run prints the counts and leaves the register and the audit log alone."""
    path = tmp_path / "export.csv"
    path.write_bytes(magister(*GOOD_ROWS))
    before = actions()
    result = run_cli(app, str(path), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "created 3, updated 0, unchanged 0, rejected 0" in result.output
    assert "dry run: nothing was changed" in result.output
    assert count(Person) == 0 and count(Guardian) == 0
    assert actions() == before


def test_cli_imports_and_reimports(app: Flask, tmp_path: Path) -> None:
    """The command imports a file as the system; a second run finds everyone unchanged."""
    path = tmp_path / "export.csv"
    content = magister(*GOOD_ROWS)
    path.write_bytes(content)
    result = run_cli(app, str(path))
    assert result.exit_code == 0, result.output
    assert "created 3, updated 0, unchanged 0, rejected 0" in result.output
    assert set(people()) == {"100234", "100235", "100301"}
    assert count(Guardian) == 3
    [imported] = events("people:import")
    assert imported.actor_type == "system"
    assert imported.details["sha256"] == hashlib.sha256(content).hexdigest()

    path.write_bytes(magister(DAAN, SANNE))
    again = run_cli(app, str(path))
    assert again.exit_code == 0, again.output
    assert "created 0, updated 0, unchanged 2, rejected 0" in again.output
    assert "not in this file (kept, check them): 100301" in again.output
    assert count(Person) == 3


def test_cli_imports_a_windows_1252_file(app: Flask, tmp_path: Path) -> None:
    """The command reads Windows-1252 exports too."""
    path = tmp_path / "export.csv"
    path.write_bytes(magister("200002;Anaïs;;Lefèvre;05-06-2012;3A;;;;", encoding="cp1252"))
    result = run_cli(app, str(path))
    assert result.exit_code == 0, result.output
    assert people()["200002"].given_name == "Anaïs"


@pytest.mark.parametrize(
    ("bad_row", "expected"),
    [
        ("100400;Lisa;;Bakker;31-02-2013;2C;;;;", "row 3: birth_date: Birth date 31-02-2013 does not exist"),
        ("100234;Dubbel;;Kind;01-01-2013;2C;;;;",
         "row 3: external_id: Pupil number 100234 already appears on an earlier row"),
        ("100400;Lisa;;Bakker;01-01-2013;2C;lisa(at)example.nl;Ouder;;",
         "row 3: guardian1_email: Guardian 1 e-mail address is not a valid e-mail address"),
        ("100400;Lisa;;Bakker;01-01-2099;2C;;;;",
         "row 3: birth_date: Birth date: must not be in the future."),
    ],
    ids=["impossible-date", "duplicate-number", "broken-email", "future-date"],
)
def test_cli_bad_file_imports_nothing(app: Flask, tmp_path: Path, bad_row: str, expected: str) -> None:
    """A file with a bad row exits non-zero, names the row and reason, and imports nothing."""
    add_pupil("100301", group="3C")
    register, before = snapshot(), actions()
    path = tmp_path / "export.csv"
    path.write_bytes(magister(DAAN, bad_row, MOHAMMED))
    result = run_cli(app, str(path))
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert expected in result.stderr
    assert "nothing was imported" in result.stderr
    assert "rejected 1" in result.stdout
    assert snapshot() == register
    assert actions() == before


def test_cli_dry_run_of_a_bad_file_reports_the_rows(app: Flask, tmp_path: Path) -> None:
    """A dry run of a bad file lists the rejected rows too, and exits non-zero for scripts."""
    path = tmp_path / "export.csv"
    path.write_bytes(magister(DAAN, "100400;Lisa;;Bakker;31-02-2013;2C;;;;"))
    result = run_cli(app, str(path), "--dry-run")
    assert result.exit_code == 1
    assert "row 3: birth_date: Birth date 31-02-2013 does not exist" in result.output
    assert "created 1, updated 0, unchanged 0, rejected 1" in result.output
    assert count(Person) == 0


def test_cli_wrong_shape_fails_and_map_fixes_it(app: Flask, tmp_path: Path) -> None:
    """A file lacking a known column fails with the file error; --map names the column."""
    path = tmp_path / "export.csv"
    path.write_bytes(magister(*GOOD_ROWS, header=HEADER.replace("Geboortedatum", "Geb.dat")
                              .replace("Leerlingnummer", "Llnummer")))
    result = run_cli(app, str(path))
    assert result.exit_code == 1
    assert ("file: missing_columns: The file lacks these required columns: Leerlingnummer, Geboortedatum"
            in result.stderr)
    assert count(Person) == 0

    result = run_cli(app, str(path), "--map", "birth_date=Geb.dat", "--map", "external_id=Llnummer")
    assert result.exit_code == 0, result.output
    assert "created 3" in result.output
    assert people()["100301"].birth_date == date(2009, 11, 30)


def test_cli_map_can_switch_a_column_off(app: Flask, tmp_path: Path) -> None:
    """--map field= (empty) leaves a recognised column out of the import."""
    path = tmp_path / "export.csv"
    path.write_bytes(magister(*GOOD_ROWS))
    result = run_cli(app, str(path), "--map", "group=")
    assert result.exit_code == 0, result.output
    assert {p.group for p in people().values()} == {None}


def test_cli_refuses_a_missing_or_oversized_file(app: Flask, tmp_path: Path) -> None:
    """A path that does not exist or a file over 10 MB is an error before anything is read."""
    assert run_cli(app, str(tmp_path / "nope.csv")).exit_code == 2
    big = tmp_path / "big.csv"
    big.write_bytes(magister(DAAN) + b" " * MAX_IMPORT_BYTES)
    result = run_cli(app, str(big))
    assert result.exit_code == 1
    assert "larger than 10 MB" in result.output
    assert count(Person) == 0


# --- language ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "heading", "expected"),
    [
        ("nl", "Afgekeurde regels", [
            ("4", "100400", "birth_date", "Geboortedatum", "Geboortedatum 31-02-2013 bestaat niet"),
            ("4", "100400", "guardian1_email", "E-mailadres ouder/verzorger 1",
             "Ouder/verzorger 1 heeft geen e-mailadres"),
        ]),
        ("en", "Rejected rows", [
            ("4", "100400", "birth_date", "Birth date", "Birth date 31-02-2013 does not exist"),
            ("4", "100400", "guardian1_email", "Guardian 1 e-mail address",
             "Guardian 1 has no e-mail address"),
        ]),
    ],
    ids=["dutch", "english"],
)
def test_preview_shows_reasons_and_fields_in_the_pages_language(
    logged_in: LoggedIn, language: str, heading: str, expected: list[tuple[str, ...]]
) -> None:
    """Reasons and field names on the preview follow the browser's language; field codes stay put."""
    client = logged_in("admin")
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    bad_row = "100400;Lisa;;Bakker;31-02-2013;2C;;Lisa's ouder;;"
    batch_id = uploaded(client, magister(DAAN, SANNE, bad_row))
    html = client.get(f"/people/import/{batch_id}").get_data(as_text=True)
    assert rejected_cells(html, heading) == expected
    label = expected[1][3]
    assert f'<label for="m-guardian1_email">{label}</label>' in html
    assert 'name="guardian1_email"' in html  # the form still posts the field codes
    assert ">guardian1_email<" not in html and ">birth_date<" not in html


def test_a_guardian_imported_without_a_name_can_be_kept_named_and_unlinked(logged_in: LoggedIn) -> None:
    """The person page copes with a nameless guardian: shown as a dash, kept when another is removed."""
    client = admin(logged_in)
    header = "Leerlingnummer;Roepnaam;Achternaam;Geboortedatum;E-mail ouder 1;E-mail ouder 2;Naam ouder 2"
    import_via_web(client, magister("300001;Fenna;Kok;01-02-2013;a.kok@example.nl;b.kok@example.nl;Bob Kok",
                                    header=header))
    fenna = people()["300001"]
    page = client.get(f"/people/{fenna.id}").get_data(as_text=True)
    assert "<td>\N{EN DASH}</td>\n    <td>a.kok@example.nl</td>" in page
    bob = next(link.guardian_id for link in fenna.guardian_links if link.guardian.name == "Bob Kok")
    removed = post(client, f"/people/{fenna.id}/guardians/{bob}/remove")
    assert removed.status_code == 302, removed.get_data(as_text=True)[:300]
    [left] = people()["300001"].guardian_links
    assert (left.guardian.email, left.guardian.name) == ("a.kok@example.nl", "")
    named = post(client, f"/people/{fenna.id}/guardians", {"name": "Anna Kok", "email": "a.kok@example.nl"})
    assert named.status_code == 302
    [left] = people()["300001"].guardian_links
    assert left.guardian.name == "Anna Kok"
