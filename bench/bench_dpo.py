"""The DPO's audit tools as ratios: CSV export, a filtered page, a person's file.

One temporary SQLite app holds ~20,000 audit events written through `audit.record` (a few
transactions) about 500 people, 40 each: 24 with the person as subject, 12 naming them as
`details.person_id` (subject: a consent record) and 4 naming them in a `details.person_ids` list
(subject: a media item). One person also has a guardian, three consent records and a photo with an
identified appearance.

1. Export: GET /dpo/audit.csv through the test client as a logged-in dpo user (and the view's
   generator alone), against `SELECT * FROM audit_events` fetched and written with csv.writer to
   an in-memory buffer. Printed as ratios of seconds (= inverse ratio of rows per second), plus
   rows per second.
2. Filter: `filter_events(person_id=..., page=1)` (count + page of 50), against a plain select of
   that person's events on the (subject_type, subject_id) index; with SQLite's query plan.
3. File: `person_file(person)` against the plain selects of the person, guardians, consent
   records, media with appearances and audit events (subject index) of that person.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import sqlalchemy as sa

from bench.common import best_of, report
from consent_registry import create_app
from consent_registry.audit import SYSTEM, Actor, AuditEvent, record
from consent_registry.auth.service import create_user
from consent_registry.consent.models import ConsentRecord, ConsentText
from consent_registry.db import db
from consent_registry.dpo.audit_query import AuditFilters, conditions, filter_events, newest_id
from consent_registry.dpo.audit_views import _csv_lines
from consent_registry.dpo.person_file import person_file
from consent_registry.media.models import Appearance, Media
from consent_registry.people.models import Guardian, GuardianLink, Person

PEOPLE = 500
PER_PERSON = 40  # 24 as subject, 12 as details.person_id, 4 in details.person_ids
BATCHES = 4
FILTER_CALLS = 20
FILE_CALLS = 20
EMAIL = "dpo@school.test"


def _app(folder: Path):
    """A migrated app on a SQLite file."""
    app = create_app({"DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
                      "UPLOAD_DIR": str(folder / "uploads"), "PASSWORD_HASH_FAST": True},
                     environ={"CONSENT_REGISTRY_INSTANCE_PATH": str(folder / "instance")})
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
    return app


def _people() -> list[int]:
    """PEOPLE pupils, committed; their ids."""
    people = [Person(external_id=f"B{i:05}", role="pupil", given_name=f"Kind{i}",
                     family_name=f"Achter{i}", birth_date=date(2012, 1 + i % 12, 1 + i % 28),
                     group="1A") for i in range(PEOPLE)]
    db.session.add_all(people)
    db.session.commit()
    return [p.id for p in people]


def _events(ids: list[int]) -> int:
    """PER_PERSON events per person through record(), interleaved as a real log would be."""
    actor = Actor("user", 1)
    per_batch = -(-PER_PERSON // BATCHES)
    written = 0
    for batch in range(BATCHES):
        for k in range(batch * per_batch, min(PER_PERSON, (batch + 1) * per_batch)):
            for n, pid in enumerate(ids):
                if k < 24:
                    record("person:updated", actor=actor, subject_type="person", subject_id=pid,
                           details={"field": "group", "old": "1A", "new": "1A", "k": k})
                elif k < 36:
                    record("consent:recorded", actor=actor, subject_type="consent_record",
                           subject_id=pid * 100 + k, details={"person_id": pid, "channel": "web"})
                else:
                    other = ids[(n + 1) % len(ids)]
                    record("media:tagged", actor=actor, subject_type="media", subject_id=pid,
                           details={"person_ids": [pid, other], "media_id": pid})
                written += 1
        db.session.commit()
    return written


def _file_rows(pid: int) -> None:
    """A guardian, three consent records and a photo with an identified appearance for one person."""
    guardian = Guardian(name="Ouder B", email="ouder.b@example.nl")
    db.session.add(guardian)
    db.session.flush()
    db.session.add(GuardianLink(person_id=pid, guardian_id=guardian.id, relation="mother"))
    text = ConsentText(sha256="a" * 64, channel="web", version="1", language="nl", title="Website",
                       body="Mogen wij foto's van uw kind op de website plaatsen?")
    db.session.add(text)
    db.session.flush()
    for decision in ("granted", "withdrawn", "granted"):
        db.session.add(ConsentRecord(person_id=pid, channel="web", decision=decision,
                                     decider_kind="guardian", guardian_id=guardian.id,
                                     method="paper", text_sha256=text.sha256,
                                     valid_from=date(2025, 9, 1)))
    media = Media(kind="photo", status="ready", sha256="b" * 64, storage_key="media/b",
                  content_type="image/jpeg", size_bytes=1000, width=800, height=600,
                  title="Sportdag", taken_on=date(2025, 6, 1))
    db.session.add(media)
    db.session.flush()
    db.session.add(Appearance(media_id=media.id, kind="face", box_x=10, box_y=10, box_w=50,
                              box_h=50, person_id=pid, resolution="identified",
                              resolved_at=datetime(2025, 6, 2, tzinfo=UTC)))
    db.session.commit()


def _logged_in_client(app):
    """A test client logged in as a dpo user through the real login form."""
    with app.app_context():
        create_user(email=EMAIL, role="dpo", password="bench password 123", actor=SYSTEM)
        db.session.commit()
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token, "no CSRF token on /login"
    response = client.post("/login", data={"email": EMAIL, "password": "bench password 123",
                                           "csrf_token": token.group(1)})
    assert response.status_code == 302, response.status_code
    return client


def _export(app, client) -> None:
    """CSV export (HTTP and generator) against SELECT * + csv.writer."""
    def plain() -> None:
        with app.app_context():
            rows = db.session.execute(sa.text("SELECT * FROM audit_events")).fetchall()
            db.session.rollback()
        out = io.StringIO()
        csv.writer(out).writerows(rows)

    def http() -> None:
        response = client.get("/dpo/audit.csv")
        assert response.status_code == 200
        response.get_data()

    def generator() -> None:
        with app.app_context():
            up_to = newest_id()
            db.session.rollback()
            for _ in _csv_lines(AuditFilters(), up_to):
                pass

    with app.app_context():
        rows = newest_id()
    body = client.get("/dpo/audit.csv").get_data(as_text=True)
    assert body.count("\n") >= rows, (body.count("\n"), rows)
    baseline = best_of(plain, repeat=3)
    through_http = best_of(http, repeat=3)
    alone = best_of(generator, repeat=3)
    report(f"export: GET /dpo/audit.csv, ~{rows} rows", through_http, baseline,
           "SELECT * + csv.writer to a buffer")
    report("export: the view's CSV generator alone", alone, baseline,
           "SELECT * + csv.writer to a buffer")
    print(f"    rows/s: http {rows / through_http:,.0f}, generator {rows / alone:,.0f}, "
          f"plain {rows / baseline:,.0f}")


def _filter(pid: int) -> None:
    """A filtered page for one person against a plain indexed select of their events."""
    rows, total = filter_events(person_id=pid, page=1)
    # Their 40 events and the 4 list events of the neighbour that name them too.
    assert total == PER_PERSON + 4 and len(rows) == min(total, 50), (total, len(rows))
    db.session.expunge_all()

    def filtered() -> None:
        for _ in range(FILTER_CALLS):
            filter_events(person_id=pid, page=1)
            db.session.expunge_all()
        db.session.rollback()

    def plain() -> None:
        for _ in range(FILTER_CALLS):
            db.session.execute(sa.text(
                "SELECT * FROM audit_events WHERE subject_type = 'person' AND subject_id = :s "
                "ORDER BY id DESC LIMIT 50"), {"s": str(pid)}).fetchall()
        db.session.rollback()

    report(f"filter: filter_events(person_id), {total} of ~{PEOPLE * PER_PERSON}",
           best_of(filtered, repeat=3), best_of(plain, repeat=3),
           "plain select on the subject index")
    query = sa.select(AuditEvent.id).where(*conditions(AuditFilters(person_id=pid)))
    compiled = query.compile(db.engine, compile_kwargs={"literal_binds": True})
    plan = db.session.execute(sa.text(f"EXPLAIN QUERY PLAN {compiled}")).fetchall()
    db.session.rollback()
    print("    filter plan: " + "; ".join(str(row[-1]) for row in plan))


def _file(pid: int) -> None:
    """person_file against the plain selects of the same rows."""
    document = person_file(db.session.get(Person, pid))
    # The audit browser's events for them: their 40 and the neighbour's 4 list events naming them.
    assert len(document["audit_events"]) == PER_PERSON + 4, len(document["audit_events"])
    assert len(document["consent_records"]) == 3 and len(document["media"]) == 1
    db.session.expunge_all()

    def full() -> None:
        for _ in range(FILE_CALLS):
            person_file(db.session.get(Person, pid))
            db.session.expunge_all()
        db.session.rollback()

    selects = [
        "SELECT * FROM people WHERE id = :p",
        "SELECT * FROM guardian_links JOIN guardians ON guardians.id = guardian_links.guardian_id "
        "WHERE guardian_links.person_id = :p",
        "SELECT * FROM consent_records LEFT JOIN consent_texts "
        "ON consent_texts.sha256 = consent_records.text_sha256 WHERE consent_records.person_id = :p",
        "SELECT * FROM appearances JOIN media ON media.id = appearances.media_id "
        "WHERE appearances.person_id = :p",
        "SELECT * FROM audit_events WHERE subject_type = 'person' AND subject_id = :s ORDER BY id",
    ]

    def plain() -> None:
        for _ in range(FILE_CALLS):
            for sql in selects:
                db.session.execute(sa.text(sql), {"p": pid, "s": str(pid)}).fetchall()
        db.session.rollback()

    report(f"file: person_file, {len(document['audit_events'])} events, 3 consents, 1 media",
           best_of(full, repeat=3), best_of(plain, repeat=3), "plain selects of those rows")


def run() -> None:
    """Every DPO benchmark."""
    with tempfile.TemporaryDirectory() as tmp:
        app = _app(Path(tmp))
        with app.app_context():
            ids = _people()
            start = time.perf_counter()
            written = _events(ids)
            print(f"    setup: {written} events through record() in {BATCHES} transactions, "
                  f"{time.perf_counter() - start:.1f} s")
            target = ids[PEOPLE // 2]
            _file_rows(target)
            db.session.remove()
        client = _logged_in_client(app)
        _export(app, client)
        with app.app_context():
            _filter(target)
            _file(target)
            db.session.remove()
