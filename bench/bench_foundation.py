"""Foundation costs as ratios: audit appends and verification, CSV import, API listing."""

from __future__ import annotations

import csv
import io
import tempfile
from datetime import date
from pathlib import Path

import sqlalchemy as sa

from bench.common import best_of, report
from consent_registry import create_app
from consent_registry.audit import SYSTEM, AuditEvent, record, verify
from consent_registry.auth.service import create_user
from consent_registry.auth.tokens import issue_token
from consent_registry.db import db
from consent_registry.people.csv_import import parse_pupil_csv
from consent_registry.people.importing import import_file

EVENTS = 2000
PUPILS = 1500


def _pupil_file(n: int, *, klas: str = "1A", first_year: int = 2010) -> bytes:
    """A Magister-like export of n pupils with two guardians each."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";")
    writer.writerow(["Leerlingnummer", "Roepnaam", "Tussenvoegsel", "Achternaam", "Geboortedatum",
                     "Klas", "E-mail ouder/verzorger 1", "Naam ouder/verzorger 1",
                     "E-mail ouder/verzorger 2", "Naam ouder/verzorger 2"])
    for i in range(n):
        born = date(first_year + i % 5, 1 + i % 12, 1 + i % 28)
        writer.writerow([f"{100000 + i}", f"Kind{i}", "van" if i % 3 == 0 else "", f"Achter{i}",
                         born.strftime("%d-%m-%Y"), klas, f"ouder{i}a@example.nl", f"Ouder {i} A",
                         f"ouder{i}b@example.nl", f"Ouder {i} B"])
    return out.getvalue().encode()


def _app(folder: Path):
    """A migrated app on a SQLite file."""
    app = create_app({"DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
                      "UPLOAD_DIR": str(folder / "uploads"), "PASSWORD_HASH_FAST": True},
                     environ={"CONSENT_REGISTRY_INSTANCE_PATH": str(folder / "instance")})
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
    return app


def _audit(app) -> None:
    """Appending to the chain against plain inserts of the same rows; verifying against reading."""
    def plain_inserts() -> None:
        for i in range(EVENTS):
            db.session.execute(sa.text(
                "INSERT INTO login_attempts (email_key, address_key, at, succeeded) "
                "VALUES (:e, :a, CURRENT_TIMESTAMP, 0)"), {"e": f"{i:064}", "a": "x" * 64})
        db.session.rollback()

    def chained_appends() -> None:
        for i in range(EVENTS):
            record("bench:event", actor=SYSTEM, subject_type="person", subject_id=i, details={"i": i})
        db.session.flush()
        db.session.rollback()

    report(f"audit: {EVENTS} chained appends", best_of(chained_appends, repeat=3),
           best_of(plain_inserts, repeat=3), "plain inserts of as many rows")
    for i in range(EVENTS):
        record("bench:event", actor=SYSTEM, details={"i": i})
    db.session.commit()

    def read_all() -> None:
        db.session.execute(sa.select(AuditEvent)).scalars().all()
        db.session.expunge_all()

    report(f"audit: verify {EVENTS} events", best_of(verify, repeat=3), best_of(read_all, repeat=3),
           "loading the same events")


def _csv() -> None:
    """Parsing and validating an export against splitting it with the csv module."""
    data = _pupil_file(PUPILS)
    parsed = parse_pupil_csv(data)
    assert len(parsed.pupils) == PUPILS and not parsed.errors
    report(f"import: parse+validate {PUPILS} rows", best_of(lambda: parse_pupil_csv(data)),
           best_of(lambda: list(csv.reader(io.StringIO(data.decode()), delimiter=";"))),
           "csv.reader alone")


def _import(app) -> None:
    """A first import and a re-import against the parse alone."""
    data = _pupil_file(PUPILS)
    parse = best_of(lambda: parse_pupil_csv(data), repeat=3)
    first = best_of(lambda: import_file(data, actor=SYSTEM), repeat=1)
    again = best_of(lambda: import_file(data, actor=SYSTEM), repeat=3)
    changed = _pupil_file(PUPILS, klas="2A")
    update = best_of(lambda: import_file(changed, actor=SYSTEM), repeat=1)
    report(f"import: first import of {PUPILS} pupils", first, parse, "parse+validate alone")
    report("import: re-import, nothing changed", again, parse, "parse+validate alone")
    report("import: re-import, every class changed", update, parse, "parse+validate alone")


def _api(app) -> None:
    """Listing a page of 50 people with guardians against the health check."""
    with app.app_context():
        user, _ = create_user(email="bench@school.test", role="dpo", password="bench password 123",
                              actor=SYSTEM)
        token = issue_token(user, label="bench", actor=SYSTEM)
        db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/people?per_page=50", headers=headers).status_code == 200

    def listing() -> None:
        for _ in range(20):
            client.get("/api/v1/people?per_page=50&page=3", headers=headers)

    def search() -> None:
        for _ in range(20):
            client.get("/api/v1/people?q=achter12&per_page=50", headers=headers)

    def health() -> None:
        for _ in range(20):
            client.get("/healthz")

    baseline = best_of(health)
    report("api: GET /people, page of 50", best_of(listing), baseline, "GET /healthz")
    report("api: GET /people?q=, search", best_of(search), baseline, "GET /healthz")


def run() -> None:
    """Every foundation benchmark."""
    with tempfile.TemporaryDirectory() as tmp:
        app = _app(Path(tmp))
        _csv()
        with app.app_context():
            _audit(app)
            _import(app)
            db.session.remove()
        _api(app)
