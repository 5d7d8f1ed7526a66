"""The DPO's audit browser: filters, paging, streamed and audited exports, verification and its alert."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from test_audit import _tamper

from consent_registry import audit as audit_module
from consent_registry.audit import SYSTEM, Actor, AuditEvent, record
from consent_registry.auth.service import create_user
from consent_registry.db import db
from consent_registry.dpo.audit_query import BadFilter, filter_events, parse_filters
from consent_registry.dpo.audit_verify import daily_audit_verify, verify_and_alert
from consent_registry.jobs import registered_jobs
from consent_registry.school import set_school_names

from api_helpers import api_caller, conforms

PAGES = ("/dpo/audit", "/dpo/audit.csv", "/dpo/audit.jsonl", "/dpo/audit/verify")


# The assertions below read English; the site defaults to Dutch.
PAGES_IN_ENGLISH = True


def _at(day: int, hour: int = 12) -> datetime:
    """A moment in January 2026, UTC."""
    return datetime(2026, 1, day, hour, tzinfo=UTC)


def _event(monkeypatch: pytest.MonkeyPatch, when: datetime, action: str, *, actor: Actor = SYSTEM,
           subject_type: str | None = None, subject_id: int | None = None,
           details: dict[str, Any] | None = None) -> int:
    """Record one event at a chosen moment; returns its id."""
    monkeypatch.setattr(audit_module, "utcnow", lambda: when)
    event = record(action, actor=actor, subject_type=subject_type, subject_id=subject_id,
                   details=details)
    db.session.flush()
    monkeypatch.undo()
    return event.id


@pytest.fixture
def story(app: Flask, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """A small log: people, media, a publication naming people in a list, a free-text detail."""
    ids = {
        "created": _event(monkeypatch, _at(1), "person:created", actor=Actor("user", 7),
                          subject_type="person", subject_id=5, details={"role": "pupil"}),
        "tagged": _event(monkeypatch, _at(2), "appearance:tagged", actor=Actor("user", 8),
                         subject_type="appearance", subject_id=30,
                         details={"media_id": 9, "person_id": 5}),
        "uploaded": _event(monkeypatch, _at(3), "media:uploaded", actor=Actor("user", 8),
                           subject_type="media", subject_id=9, details={"kind": "photo"}),
        "published": _event(monkeypatch, _at(4), "publication:requested", actor=Actor("user", 8),
                             subject_type="publication", subject_id=2,
                             details={"media_id": 9, "person_ids": [5, 6], "channel": "website"}),
        "other": _event(monkeypatch, _at(5), "person:created", actor=Actor("user", 7),
                        subject_type="person", subject_id=6, details={"note": "Sports_Day 100%"}),
        "system": _event(monkeypatch, _at(6), "consent_mail:confirmation", subject_type="person",
                         subject_id=55, details={"decider": "guardian:3"}),
    }
    db.session.commit()
    return ids


def _ids(**filters: Any) -> list[int]:
    """The ids matching the filters, newest first."""
    rows, total = filter_events(**filters)
    assert total == len(rows)
    return [row.id for row in rows]


def test_filters_select_the_right_events(story: dict[str, int]) -> None:
    """Time, actor, action (exact or subject), person and media (subject or details), text."""
    s = story
    assert _ids() == [s["system"], s["other"], s["published"], s["uploaded"], s["tagged"], s["created"]]
    assert _ids(since=_at(3), until=_at(5)) == [s["published"], s["uploaded"]]
    assert _ids(actor_id=7) == [s["other"], s["created"]]
    assert _ids(actor_type="system") == [s["system"]]
    assert _ids(action="person:created") == [s["other"], s["created"]]
    assert _ids(action="person") == [s["other"], s["created"]]
    # Person 5: their own event, the tagging naming them, the publication listing them; not 55.
    assert _ids(person_id=5) == [s["published"], s["tagged"], s["created"]]
    assert _ids(person_id=6) == [s["other"], s["published"]]
    assert _ids(media_id=9) == [s["published"], s["uploaded"], s["tagged"]]
    assert _ids(text="sports_day 100%") == [s["other"]]
    assert _ids(text="%") == [s["other"]]  # LIKE wildcards are literal
    assert _ids(text="guardian:3") == [s["system"]]
    assert _ids(person_id=5, media_id=9, actor_id=8) == [s["published"], s["tagged"]]


def test_filters_parse_and_refuse_bad_values() -> None:
    """A bare `until` date includes the day; nonsense names the parameter."""
    parsed = parse_filters({"since": "2026-01-02", "until": "2026-01-03", "action": "media",
                            "person_id": "4", "text": " x "})
    assert parsed.since == _at(2, 0) and parsed.until == _at(4, 0)
    assert parsed.person_id == 4 and parsed.text == "x"
    assert parse_filters({"since": "2026-01-02T10:00:00+01:00"}).since == _at(2, 9)
    for args, field in [({"since": "yesterday"}, "since"), ({"person_id": "abc"}, "person_id"),
                        ({"media_id": "0"}, "media_id"), ({"action": "a:b:c"}, "action"),
                        ({"action": "drop table;"}, "action"), ({"actor_type": "robot"}, "actor_type"),
                        ({"text": "x" * 201}, "text"), ({"person_id": "9" * 30}, "person_id"),
                        ({"since": "2026-01-05", "until": "2026-01-01"}, "until")]:
        with pytest.raises(BadFilter) as caught:
            parse_filters(args)
        assert caught.value.field == field


def test_the_page_filters_pages_and_links_subjects(app: Flask, logged_in, story: dict[str, int]) -> None:
    """The DPO filters on the page; events link to their subject; pages of PAGE_SIZE."""
    client = logged_in("dpo")
    html = client.get("/dpo/audit?person_id=5").get_data(as_text=True)
    assert "3 events" in html
    assert f'id="event-{story["published"]}"' in html and f'id="event-{story["other"]}"' not in html
    assert '/publications/2"' in html and "/media/9" in html
    assert '/dpo/people/5"' in html or '/people/5"' in html
    assert "person_id=5" in html.split("Export as CSV")[0].rsplit("<a", 1)[1]
    app.config["PAGE_SIZE"] = 2
    first = client.get("/dpo/audit?actor_type=user&actor_id=8").get_data(as_text=True)
    assert "Page 1 of 2" in first and f'id="event-{story["tagged"]}"' not in first
    assert "actor_id=8" in first.split("Next")[0].rsplit("<a", 1)[1]
    second = client.get("/dpo/audit?actor_type=user&actor_id=8&page=2").get_data(as_text=True)
    assert f'id="event-{story["tagged"]}"' in second and f'id="event-{story["published"]}"' not in second


@pytest.mark.parametrize("query", ["since=soon", "person_id=x", "page=0", "page=abc",
                                   "actor_type=robot", "action=%27%3B", "media_id=-3"])
def test_bad_page_parameters_answer_400(logged_in, story: dict[str, int], query: str) -> None:
    """Bad filters are a 400 page saying what is wrong, never a 500; exports too."""
    client = logged_in("dpo")
    response = client.get(f"/dpo/audit?{query}")
    assert response.status_code == 400 and "Invalid filter" in response.get_data(as_text=True)
    if not query.startswith("page"):
        assert client.get(f"/dpo/audit.csv?{query}").status_code == 400
        assert client.get(f"/dpo/audit.jsonl?{query}").status_code == 400
    assert db.session.query(AuditEvent).filter_by(action="audit:export").count() == 0


def _exports() -> list[AuditEvent]:
    """The audit:export events."""
    return db.session.query(AuditEvent).filter_by(action="audit:export").order_by(AuditEvent.id).all()


def test_csv_export_is_streamed_filtered_and_audited(logged_in, users, story: dict[str, int]) -> None:
    """CSV of the filtered events, oldest first, streamed; the export is an audit event by the DPO."""
    response = logged_in("dpo").get("/dpo/audit.csv?media_id=9")
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [int(r["id"]) for r in rows] == [story["tagged"], story["uploaded"], story["published"]]
    assert json.loads(rows[0]["details"]) == {"media_id": 9, "person_id": 5}
    assert rows[2]["action"] == "publication:requested" and len(rows[2]["hash"]) == 64
    [export] = _exports()
    assert export.actor_type == "user" and export.actor_id == users["dpo"].id
    assert export.details["format"] == "csv" and export.details["filters"] == {"media_id": "9"}


def test_csv_cells_cannot_start_a_formula(logged_in, monkeypatch: pytest.MonkeyPatch) -> None:
    """A subject id that looks like a formula is written with a leading quote."""
    _event(monkeypatch, _at(1), "import:done", subject_type="import", subject_id="=1+1")  # type: ignore[arg-type]
    db.session.commit()
    text = logged_in("admin").get("/dpo/audit.csv").get_data(as_text=True)
    assert "'=1+1" in text and ",=1+1" not in text


def test_jsonl_export_holds_every_event_once(logged_in, story: dict[str, int]) -> None:
    """JSON Lines: one object per event, all of them, in chain order; the export is audited."""
    client = logged_in("admin")
    response = client.get("/dpo/audit.jsonl")
    assert response.status_code == 200 and response.is_streamed
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    ids = [line["id"] for line in lines]
    assert ids == sorted(ids) and set(story.values()) <= set(ids)
    # The export's own event was written first and is the last line: the log shows every export.
    assert lines[-1]["action"] == "audit:export" and lines[-1]["details"]["format"] == "jsonl"
    assert all(line["prev_hash"] != line["hash"] for line in lines)
    later = client.get("/dpo/audit.jsonl?action=audit:export").get_data(as_text=True).splitlines()
    assert len(later) == 2 and len(_exports()) == 2


def test_export_streams_in_batches(app: Flask, logged_in, monkeypatch: pytest.MonkeyPatch) -> None:
    """More events than a batch come out complete and in order."""
    from consent_registry.dpo import audit_query

    monkeypatch.setattr(audit_query, "EXPORT_BATCH", 3)
    for i in range(10):
        record("person:viewed", actor=SYSTEM, subject_type="person", subject_id=i)
    db.session.commit()
    text = logged_in("dpo").get("/dpo/audit.jsonl?action=person:viewed").get_data(as_text=True)
    assert [json.loads(line)["subject_id"] for line in text.splitlines()] == [str(i) for i in range(10)]


def test_verify_page_shows_an_intact_chain_and_the_last_run(logged_in, users, story) -> None:
    """Each visit verifies, records the run, and lists earlier runs."""
    client = logged_in("dpo")
    count = db.session.query(AuditEvent).count()
    last = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id.desc())).scalars().first()
    first = client.get("/dpo/audit/verify").get_data(as_text=True)
    assert f"Intact: {count} events verified" in first and "This is the first run." in first
    assert f"Chain head: {last.hash}:{count}" in first
    second = client.get("/dpo/audit/verify").get_data(as_text=True)
    assert f"Intact: {count + 1} events verified" in second and "Last run before this one" in second
    runs = db.session.query(AuditEvent).filter_by(action="audit:verified").all()
    assert len(runs) == 2 and runs[0].actor_id == users["dpo"].id and runs[0].details["ok"] is True


def test_a_broken_chain_fails_verification_and_mails_admins_and_the_dpo(
    app: Flask, logged_in, users, story: dict[str, int], smtp: Any
) -> None:
    """A row changed by hand: the page says BROKEN; the daily job mails active admins and DPOs."""
    gone, _password = create_user(email="old-admin@school.test", role="admin", name="Old",
                                  password=None, actor=SYSTEM)
    gone.active = False
    db.session.commit()
    tampered = story["tagged"]
    _tamper(f"UPDATE audit_events SET details = '{{\"media_id\": 10}}' WHERE id = {tampered}")

    page = logged_in("dpo").get("/dpo/audit/verify").get_data(as_text=True)
    assert "BROKEN" in page and f"First broken event: {tampered}" in page

    report = verify_and_alert()
    assert not report.ok and report.broken_event_id == tampered
    received = {address for r in smtp.received for address in r.rcpt_tos}
    assert received == {"admin@school.test", "dpo@school.test"}
    message = smtp.messages[0]
    assert str(tampered) in message.get_body(("plain",)).get_content()
    assert "/dpo/audit/verify" in message.get_body(("plain",)).get_content()
    mailed = db.session.query(AuditEvent).filter_by(action="audit:alert_mailed").all()
    assert sorted(int(e.subject_id) for e in mailed) == sorted([users["admin"].id, users["dpo"].id])
    last = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "audit:verified")
                              .order_by(AuditEvent.id.desc())).scalars().first()
    assert last.actor_type == "system" and last.details["broken_event_id"] == tampered


def test_the_daily_job_mails_the_dpo_the_head_of_an_intact_chain(
    app: Flask, users, story, smtp: Any
) -> None:
    """Registered as a periodic job; an intact chain: the run is recorded with its head, and each
    DPO (not the admins) gets that head by mail, which `flask audit verify --expect` accepts."""
    job = registered_jobs()["consent_registry.dpo.audit_verify.daily_audit_verify"]
    assert job.schedule is not None
    set_school_names(school_name="Het Baken", sender_name="Het Baken (privacy)", actor=SYSTEM)
    db.session.commit()
    daily_audit_verify()
    events = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
    run = next(e for e in events if e.action == "audit:verified")
    verified = events[:events.index(run)]
    head = f"{verified[-1].hash}:{len(verified)}"
    assert run.details == {"ok": True, "checked": len(verified), "broken_event_id": None,
                           "reason": None, "head": head}
    assert {address for r in smtp.received for address in r.rcpt_tos} == {"dpo@school.test"}
    body = smtp.messages[0].get_body(("plain",)).get_content()
    assert head in body and f"flask audit verify --expect {head}" in body
    # The names the admin chose at set-up, as every other mail of the school carries them.
    assert smtp.messages[0]["From"].startswith('"Het Baken (privacy)"')
    mailed = db.session.query(AuditEvent).filter_by(action="audit:head_mailed").one()
    assert int(mailed.subject_id) == users["dpo"].id
    result = app.test_cli_runner().invoke(args=["audit", "verify", "--expect", head])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("role", ["staff", "communications"])
def test_only_the_dpo_and_admins_reach_the_audit(app: Flask, logged_in, tokens, story, role) -> None:
    """Other roles get 403 on every page, export and the API; nothing is exported or verified."""
    client = logged_in(role)
    for path in PAGES:
        assert client.get(path).status_code == 403, path
    assert api_caller(app, tokens, role)("GET", "/audit").status_code == 403
    assert db.session.query(AuditEvent).filter(
        AuditEvent.action.in_(["audit:export", "audit:verified"])).count() == 0
    assert "/dpo/audit" not in client.get("/people/").get_data(as_text=True)


def test_the_nav_links_to_the_audit_for_dpo_and_admin(logged_in) -> None:
    """The "Audit" menu entry."""
    for role in ("dpo", "admin"):
        assert 'href="/dpo/audit"' in logged_in(role).get("/people/").get_data(as_text=True)


def test_anonymous_visitors_are_sent_to_log_in(client) -> None:
    """No session: the login page."""
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_api_lists_filters_and_pages_conforming_to_openapi(app: Flask, tokens, story) -> None:
    """GET /api/v1/audit for the DPO and admins, filtered and paged, as documented."""
    api = api_caller(app, tokens, "dpo")
    body = conforms(api("GET", "/audit?person_id=5&since=2026-01-02&until=2026-01-04")).get_json()
    assert [e["id"] for e in body["items"]] == [story["published"], story["tagged"]]
    assert body["total"] == 2 and body["page"] == 1
    page2 = conforms(api("GET", "/audit?actor_type=user&actor_id=8&per_page=2&page=2",
                         role="admin")).get_json()
    assert page2["total"] == 3 and [e["id"] for e in page2["items"]] == [story["tagged"]]
    only = conforms(api("GET", "/audit?action=publication:requested&media_id=9&text=website")).get_json()
    assert only["items"][0]["details"]["person_ids"] == [5, 6]
    assert only["items"][0]["subject_type"] == "publication"


@pytest.mark.parametrize("query", ["since=nope", "until=2026-13-01", "person_id=abc", "media_id=0",
                                   "page=0", "per_page=1000", "action=%3B%3B", "actor_type=robot",
                                   "actor_id=-1", "since=2026-01-05&until=2026-01-01"])
def test_api_bad_parameters_answer_400_in_the_error_shape(app: Flask, tokens, query: str) -> None:
    """Bad query parameters: 400 naming the parameter, never 500."""
    response = conforms(api_caller(app, tokens, "dpo")("GET", f"/audit?{query}"), check_request=False)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "bad_request" and error["fields"]
