"""The staff pages about consent: a person's grid and history, paper forms and scans, the class
overview, asking for consent by e-mail (preview, send, progress), roles and languages."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import force_locale, gettext
from PIL import Image
from werkzeug.datastructures import MultiDict
from werkzeug.test import TestResponse

from consent_registry.audit import SYSTEM, AuditEvent, verify
from consent_registry.consent.models import ConsentRecipient, ConsentRecord, ConsentRequest
from consent_registry.consent.requests import create_request
from consent_registry.consent.service import record_decision
from consent_registry.db import db, utcnow
from consent_registry.people.models import Person
from consent_registry.people.schemas import GuardianIn, PersonCreate, PersonPatch
from consent_registry.people.service import create_person, update_person

from conftest import StaffUser, csrf_token

LoggedIn = Callable[[str], FlaskClient]
ROLES = ("admin", "staff", "communications", "dpo")
RECORDERS = ("admin", "staff")
READERS = ("communications", "dpo")
PURPOSES = ("facebook", "website", "newsletter", "schoolguide", "biometric")
FACEBOOK_NL, FACEBOOK_EN = "Facebookpagina van de school", "The school's Facebook page"
LINK = re.compile(r"http://127\.0\.0\.1:5000(/[cmw]/[^\s<\"]+)")


# --- helpers -------------------------------------------------------------------------------


def english(logged_in: LoggedIn, role: str) -> FlaskClient:
    """A logged-in client that asks for English pages, so assertions read the msgids."""
    client = logged_in(role)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def born_years_ago(years: int) -> date:
    """A birth date some whole years (and a bit) before today."""
    today = date.today()
    return date(today.year - years, 1, 1) if (today.month, today.day) != (1, 1) else date(
        today.year - years - 1, 6, 1)


def add_person(external_id: str, *, age: int = 10, role: str = "pupil", group: str | None = "2B",
               email: str | None = None, guardians: tuple[str, ...] = ()) -> Person:
    """A person put straight into the register, with guardians given by e-mail address."""
    person = create_person(PersonCreate(
        external_id=external_id, given_name=f"Kid{external_id}", family_name=f"Fam{external_id}",
        birth_date=born_years_ago(age), role=role, email=email, group=group,  # type: ignore[arg-type]
        guardians=[GuardianIn(name=f"Parent {mail.split('@')[0]}", email=mail) for mail in guardians],
    ), actor=SYSTEM)
    db.session.commit()
    return person


def guardian_ids(person_id: int) -> list[int]:
    """The ids of a person's guardians, ascending."""
    person = db.session.get(Person, person_id)
    return sorted(link.guardian_id for link in person.guardian_links)


def decide(person_id: int, channel: str = "facebook", decision: str = "granted", *,
           days_ago: int = 0, guardian: int | None = None) -> int:
    """Record a decision through the service (as an import) and return the record's id."""
    person = db.session.get(Person, person_id)
    guardian = guardian if guardian is not None else (guardian_ids(person_id) or [None])[0]
    kind = "guardian" if guardian is not None else ("self" if person.role == "staff" else "pupil")
    row = record_decision(person=person, channel=channel, decision=decision, decider_kind=kind,
                          guardian_id=guardian, method="import", actor=SYSTEM,
                          at=utcnow() - timedelta(days=days_ago))
    db.session.commit()
    return row.id


def count(model: type[Any]) -> int:
    """Rows in a table."""
    db.session.expire_all()
    return db.session.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


def events(action: str) -> list[AuditEvent]:
    """Audit events with this action, oldest first."""
    db.session.expire_all()
    return list(db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).scalars())


def text(response: TestResponse) -> str:
    """The response body as text."""
    return response.get_data(as_text=True)


def grid(page: str) -> dict[str, str]:
    """The person page's grid: channel title -> state class."""
    rows = re.findall(r'<tr class="state-(\w+)">\s*<th scope="row">([^<]+)</th>', page)
    return {html.unescape(title): state for state, title in rows}


def history_ids(page: str) -> list[int]:
    """Record ids in the person page's history table, top to bottom."""
    return [int(i) for i in re.findall(r'<tr id="r(\d+)">', page)]


def has_paper_form(page: str, person_id: int) -> bool:
    """Whether the person page offers the paper form."""
    return f'action="/people/{person_id}/consents"' in page


def uploads(app: Flask) -> list[Path]:
    """Every file under UPLOAD_DIR."""
    root = Path(app.config["UPLOAD_DIR"])
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def image_bytes(kind: str) -> bytes:
    """A tiny but valid PNG, JPEG or PDF, made by Pillow."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 30, 30)).save(buffer, kind)
    return buffer.getvalue()


def paper_form(**changes: Any) -> dict[str, Any]:
    """A paper form as a staff member fills it in (the decider is given by the caller)."""
    form: dict[str, Any] = {"channel": "facebook", "decision": "granted", "method": "paper",
                            "decided_by": "pupil", "note": "form in the red folder"}
    form.update(changes)
    return form


def post_paper(client: FlaskClient, person_id: int, form: dict[str, Any]) -> TestResponse:
    """Submit the paper form with the page's CSRF token, as multipart like the browser does."""
    token = csrf_token(client, f"/people/{person_id}/consents")
    return client.post(f"/people/{person_id}/consents", data={**form, "csrf_token": token},
                       content_type="multipart/form-data")


# --- the person page ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_person_page_shows_grid_and_history_newest_first(logged_in: LoggedIn, role: str) -> None:
    """Every role sees the state per channel and the history newest first; only recorders the form."""
    pupil = add_person("P1", guardians=("anna@ouders.nl",))
    older = decide(pupil.id, "facebook", "granted", days_ago=3)
    newer = decide(pupil.id, "website", "refused", days_ago=1)
    newest = decide(pupil.id, "facebook", "withdrawn", days_ago=0)
    page = text(english(logged_in, role).get(f"/people/{pupil.id}/consents"))
    assert "Consents of KidP1 FamP1" in page
    assert grid(page) == {FACEBOOK_EN: "withdrawn", "The school's website": "refused",
                          "Newsletter": "none", "School guide": "none",
                          "Face and voice recognition": "none"}
    assert history_ids(page) == [newest, newer, older]
    assert has_paper_form(page, pupil.id) == (role in RECORDERS)


def test_person_page_without_decisions_says_no_answer_means_no(logged_in: LoggedIn) -> None:
    """An empty history says so; every channel is "no answer yet"."""
    pupil = add_person("P1", guardians=("anna@ouders.nl",))
    page = text(english(logged_in, "dpo").get(f"/people/{pupil.id}/consents"))
    assert "No decisions yet. No answer means no." in page
    assert set(grid(page).values()) == {"none"} and len(grid(page)) == len(PURPOSES)
    assert history_ids(page) == []


@pytest.mark.parametrize("path", ["/people/424242/consents", "/people/0/consents",
                                  "/people/99999999999999999999/consents"])
def test_unknown_person_page_is_404(logged_in: LoggedIn, path: str) -> None:
    """A person that does not exist has no consent page."""
    assert logged_in("staff").get(path).status_code == 404


def test_no_paper_form_for_someone_who_left(logged_in: LoggedIn) -> None:
    """A person who left keeps their page, but new decisions cannot be recorded."""
    pupil = add_person("P1", guardians=("anna@ouders.nl",))
    update_person(pupil, PersonPatch(status="left", left_on=utcnow().date()), actor=SYSTEM)
    db.session.commit()
    client = english(logged_in, "staff")
    page = client.get(f"/people/{pupil.id}/consents")
    assert page.status_code == 200 and not has_paper_form(text(page), pupil.id)
    refused = post_paper(client, pupil.id, paper_form(decided_by=f"guardian:{guardian_ids(pupil.id)[0]}"))
    assert refused.status_code == 422 and count(ConsentRecord) == 0


@pytest.mark.parametrize("role", READERS)
def test_readers_cannot_post_the_paper_form(logged_in: LoggedIn, role: str) -> None:
    """Communications and the DPO get 403 and nothing is recorded."""
    staff = add_person("S1", role="staff", group=None, age=40)
    response = post_paper(english(logged_in, role), staff.id, paper_form(decided_by="self"))
    assert response.status_code == 403
    assert count(ConsentRecord) == 0 and events("consent:grant") == []


# --- the paper form ----------------------------------------------------------------------------


def test_paper_form_records_on_the_deciders_behalf(logged_in: LoggedIn,
                                                   users: dict[str, StaffUser]) -> None:
    """A guardian's paper form: method paper, entered by the staff member, audited, shown."""
    pupil = add_person("P1", guardians=("anna@ouders.nl", "bert@ouders.nl"))
    guardian = guardian_ids(pupil.id)[1]
    client = english(logged_in, "staff")
    response = post_paper(client, pupil.id, paper_form(decided_by=f"guardian:{guardian}"))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/people/{pupil.id}/consents")

    row = db.session.execute(sa.select(ConsentRecord)).scalar_one()
    assert (row.method, row.decider_kind, row.guardian_id) == ("paper", "guardian", guardian)
    assert row.entered_by == users["staff"].id and row.note == "form in the red folder"
    assert row.scan_key is None
    [event] = events("consent:grant")
    assert (event.actor_type, event.actor_id) == ("user", users["staff"].id)
    assert event.details["record_id"] == row.id and event.details["method"] == "paper"

    page = text(client.get(f"/people/{pupil.id}/consents"))
    assert "The decision has been recorded." in page
    assert grid(page)[FACEBOOK_EN] == "granted" and history_ids(page) == [row.id]
    assert "Parent bert" in page and "(entered by staff)" in page


def test_in_person_decision_of_a_pupil_of_16(logged_in: LoggedIn, users: dict[str, StaffUser]) -> None:
    """A pupil of 16 or older decides in person; the admin records it."""
    pupil = add_person("P1", age=17, guardians=("anna@ouders.nl",))
    response = post_paper(english(logged_in, "admin"), pupil.id,
                          paper_form(decided_by="pupil", method="in-person", decision="refused"))
    assert response.status_code == 302
    row = db.session.execute(sa.select(ConsentRecord)).scalar_one()
    assert (row.method, row.decider_kind, row.decision) == ("in-person", "pupil", "refused")
    assert row.entered_by == users["admin"].id and row.valid_until is None


def test_the_paper_form_lists_only_todays_deciders(logged_in: LoggedIn) -> None:
    """Under 16 the guardians are offered, from 16 the pupil, for staff the staff member."""
    young = add_person("P1", guardians=("anna@ouders.nl",))
    older = add_person("P2", age=17, guardians=("bert@ouders.nl",))
    staff = add_person("S1", role="staff", age=40, group=None)
    client = english(logged_in, "staff")
    options = {
        pid: re.findall(r'<option value="(guardian:\d+|pupil|self)">',
                        text(client.get(f"/people/{pid}/consents")))
        for pid in (young.id, older.id, staff.id)
    }
    assert options == {young.id: [f"guardian:{guardian_ids(young.id)[0]}"], older.id: ["pupil"],
                       staff.id: ["self"]}


REFUSED_FORMS: list[tuple[str, dict[str, Any]]] = [
    ("e-mail link is not a paper method", {"method": "email-link"}),
    ("nobody decided", {"decided_by": ""}),
    ("decider is not a decider", {"decided_by": "nobody"}),
    ("pupil under 16 cannot decide", {"decided_by": "pupil"}),
    ("guardian of someone else", {"decided_by": "guardian:999"}),
    ("guardian id too large", {"decided_by": "guardian:99999999999999999999"}),
    ("guardian id in other digits", {"decided_by": "guardian:\u00b2"}),
    ("unknown channel", {"channel": "tiktok"}),
    ("unknown decision", {"decision": "perhaps"}),
]


@pytest.mark.parametrize(("label", "changes"), REFUSED_FORMS, ids=[c[0] for c in REFUSED_FORMS])
def test_refused_paper_forms_record_nothing(app: Flask, logged_in: LoggedIn, label: str,
                                            changes: dict[str, Any]) -> None:
    """Invalid forms get the page again with an error (422); no record, no event, no file."""
    pupil = add_person("P1", guardians=("anna@ouders.nl",))
    form = {**paper_form(decided_by=f"guardian:{guardian_ids(pupil.id)[0]}"), **changes}
    form["scan"] = (io.BytesIO(image_bytes("PNG")), "form.png")
    response = post_paper(english(logged_in, "staff"), pupil.id, form)
    assert response.status_code == 422, label
    assert 'class="flash error"' in text(response)
    assert count(ConsentRecord) == 0 and events("consent:grant") == []
    assert uploads(app) == []


# --- scans -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "filename", "media_type"), [
    ("PDF", "form.pdf", "application/pdf"),
    ("JPEG", "form.jpg", "image/jpeg"),
    ("PNG", "form.png", "image/png"),
])
def test_scan_is_stored_and_downloaded_by_whom_may(
        app: Flask, logged_in: LoggedIn, users: dict[str, StaffUser], kind: str, filename: str,
        media_type: str) -> None:
    """A real scan is kept under UPLOAD_DIR; admin, staff and DPO download it (audited), others 403."""
    pupil = add_person("P1", guardians=("anna@ouders.nl",))
    data = image_bytes(kind)
    form = paper_form(decided_by=f"guardian:{guardian_ids(pupil.id)[0]}",
                      scan=(io.BytesIO(data), filename))
    assert post_paper(english(logged_in, "staff"), pupil.id, form).status_code == 302

    row = db.session.execute(sa.select(ConsentRecord)).scalar_one()
    assert row.scan_type == media_type and row.scan_key
    [stored] = uploads(app)
    assert stored == Path(app.config["UPLOAD_DIR"]) / row.scan_key
    assert stored.read_bytes() == data

    path = f"/people/{pupil.id}/consents/{row.id}/scan"
    for role in ("admin", "staff", "dpo"):
        client = logged_in(role)
        assert f'href="{path}"' in text(client.get(f"/people/{pupil.id}/consents"))
        download = client.get(path)
        assert download.status_code == 200, role
        assert download.get_data() == data and download.mimetype == media_type
        assert download.headers["Content-Disposition"].startswith("attachment")
    views = events("consent:scan_view")
    assert [e.actor_id for e in views] == [users[r].id for r in ("admin", "staff", "dpo")]
    assert {e.details["record_id"] for e in views} == {row.id}
    assert {e.subject_id for e in views} == {str(pupil.id)}

    assert logged_in("communications").get(path).status_code == 403
    assert len(events("consent:scan_view")) == 3


def test_scan_with_the_wrong_content_is_refused(app: Flask, logged_in: LoggedIn) -> None:
    """A .pdf that is really text, or a .png that is a PDF-looking nothing: 422, no file, no record."""
    pupil = add_person("P1", guardians=("anna@ouders.nl",))
    client = english(logged_in, "staff")
    for content, name in ((b"just some text, honestly a PDF", "form.pdf"),
                          (b"GIF89a\x01\x00\x01\x00", "form.png"), (b"", "empty.jpg")):
        form = paper_form(decided_by=f"guardian:{guardian_ids(pupil.id)[0]}",
                          scan=(io.BytesIO(content), name))
        response = post_paper(client, pupil.id, form)
        if content:
            assert response.status_code == 422, name
            assert "The scan must be a PDF, JPEG or PNG file." in text(response)
        else:
            assert response.status_code == 422, "an empty file is not a scan either"
    assert uploads(app) == [] and count(ConsentRecord) == 0
    assert events("consent:grant") == []


def test_scan_over_the_limit_is_refused(app: Flask, logged_in: LoggedIn) -> None:
    """A scan larger than MAX_SCAN_BYTES: 422, no file, no record; one at the limit is accepted."""
    app.config["MAX_SCAN_BYTES"] = 2000
    pupil = add_person("P1", guardians=("anna@ouders.nl",))
    client = english(logged_in, "staff")
    decider = f"guardian:{guardian_ids(pupil.id)[0]}"
    pdf = image_bytes("PDF")
    too_big = pdf + b"\n%" + b"x" * (2001 - len(pdf) - 2)
    assert len(too_big) == 2001
    refused = post_paper(client, pupil.id, paper_form(decided_by=decider,
                                                      scan=(io.BytesIO(too_big), "big.pdf")))
    assert refused.status_code == 422 and "larger than" in text(refused)
    assert uploads(app) == [] and count(ConsentRecord) == 0

    just_fits = too_big[:2000]
    accepted = post_paper(client, pupil.id, paper_form(decided_by=decider,
                                                       scan=(io.BytesIO(just_fits), "ok.pdf")))
    assert accepted.status_code == 302 and len(uploads(app)) == 1


def test_scan_download_needs_the_right_person_and_a_scan(app: Flask, logged_in: LoggedIn) -> None:
    """A record of another person, a record without a scan and unknown ids are all 404, unaudited."""
    pupil = add_person("P1", guardians=("anna@ouders.nl",))
    other = add_person("P2", guardians=("bert@ouders.nl",))
    client = english(logged_in, "staff")
    form = paper_form(decided_by=f"guardian:{guardian_ids(pupil.id)[0]}",
                      scan=(io.BytesIO(image_bytes("PNG")), "form.png"))
    assert post_paper(client, pupil.id, form).status_code == 302
    with_scan = db.session.execute(sa.select(ConsentRecord)).scalar_one().id
    without_scan = decide(pupil.id, "website")
    for path in (f"/people/{other.id}/consents/{with_scan}/scan",
                 f"/people/{pupil.id}/consents/{without_scan}/scan",
                 f"/people/{pupil.id}/consents/424242/scan",
                 f"/people/{pupil.id}/consents/99999999999999999999/scan"):
        assert client.get(path).status_code == 404, path
    assert events("consent:scan_view") == []
    assert client.get(f"/people/{pupil.id}/consents/{with_scan}/scan").status_code == 200


# --- the class overview -----------------------------------------------------------------------


def overview_rows(page: str) -> dict[int, list[str]]:
    """Overview table: person id -> state per purpose, in column order."""
    rows = re.findall(r'<tr><th scope="row"><a href="/people/(\d+)/consents">.*?</a></th>(.*?)</tr>',
                      page, flags=re.S)
    return {int(pid): re.findall(r'class="state-(\w+)"', cells) for pid, cells in rows}


def test_class_overview_and_the_unanswered_filter(logged_in: LoggedIn) -> None:
    """Each active pupil of the class with a state per purpose; the filter keeps who has gaps."""
    some = add_person("A1", guardians=("anna@ouders.nl",))
    complete = add_person("A2", guardians=("bert@ouders.nl",))
    nothing = add_person("A3", guardians=("carla@ouders.nl",))
    other_class = add_person("B1", group="3C", guardians=("dirk@ouders.nl",))
    left = add_person("A4", guardians=("els@ouders.nl",))
    update_person(left, PersonPatch(status="left", left_on=utcnow().date()), actor=SYSTEM)
    db.session.commit()
    decide(some.id, "facebook", "granted")
    decide(some.id, "website", "refused")
    for purpose in PURPOSES:
        decide(complete.id, purpose, "refused" if purpose == "biometric" else "granted")

    client = english(logged_in, "communications")
    page = text(client.get("/consents?group=2B"))
    assert "Class 2B" in page
    assert overview_rows(page) == {
        some.id: ["granted", "refused", "none", "none", "none"],
        complete.id: ["granted", "granted", "granted", "granted", "refused"],
        nothing.id: ["none"] * 5,
    }
    assert other_class.id not in overview_rows(page)

    missing = text(client.get("/consents?group=2B&missing=1"))
    assert set(overview_rows(missing)) == {some.id, nothing.id}
    assert 'name="missing" value="1" checked' in missing

    assert set(overview_rows(text(client.get("/consents?group=3C")))) == {other_class.id}
    assert overview_rows(text(client.get("/consents?group=9Z"))) == {}
    assert overview_rows(text(client.get("/consents"))) == {}


@pytest.mark.parametrize("role", ROLES)
def test_every_role_sees_the_overview_and_requests(logged_in: LoggedIn, role: str) -> None:
    """The overview, the request list and a request's page are open to every staff role."""
    add_person("A1", guardians=("anna@ouders.nl",))
    client = logged_in(role)
    assert client.get("/consents?group=2B").status_code == 200
    assert client.get("/consent-requests").status_code == 200
    form = client.get("/consent-requests/new")
    assert form.status_code == (403 if role == "dpo" else 200)


# --- asking for consent by e-mail --------------------------------------------------------------


@dataclass
class School:
    """Class 2B and 3C for the request tests."""

    two_guardians: int  # 2B, under 16, two guardians with addresses
    no_address: int  # 2B, 17 and no e-mail address: decides, but cannot be mailed
    answered: int  # 2B, under 16, one guardian; facebook granted already
    other_class: int  # 3C, under 16, one guardian


@pytest.fixture
def school(app: Flask) -> School:
    """Pupils in two classes, one with a valid answer for facebook."""
    a = add_person("A1", guardians=("anna@ouders.nl", "bert@ouders.nl"))
    b = add_person("A2", age=17, guardians=("carla@ouders.nl",))
    c = add_person("A3", guardians=("dirk@ouders.nl",))
    d = add_person("B1", group="3C", guardians=("els@ouders.nl",))
    decide(c.id, "facebook", "granted")
    return School(a.id, b.id, c.id, d.id)


def outbox(app: Flask) -> list[Any]:
    """The messages the default outbox mailer wrote, parsed."""
    folder = Path(app.instance_path) / "outbox"
    files = sorted(folder.glob("*.eml")) if folder.exists() else []
    return [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]


def request_form(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    """The request form's fields with the page's CSRF token."""
    return {"csrf_token": csrf_token(client, "/consent-requests/new"), **fields}


def preview_fields(page: str) -> list[tuple[str, str]]:
    """The hidden fields of the preview's send form, in order."""
    form = page.split('<form method="post" action="/consent-requests/new">', 1)[1].split("</form>")[0]
    return [(html.unescape(n), html.unescape(v))
            for n, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', form)]


def stored_nothing(before_events: int) -> bool:
    """No request, no recipient and no new audit event."""
    return (count(ConsentRequest), count(ConsentRecipient), count(AuditEvent)) == (0, 0, before_events)


def test_preview_shows_the_mail_and_stores_nothing_then_send(
        app: Flask, logged_in: LoggedIn, school: School, users: dict[str, StaffUser]) -> None:
    """Preview: mail text, counts, dead links, nothing stored. Confirm: sent and followed."""
    client = english(logged_in, "communications")
    before = count(AuditEvent)
    preview = client.post("/consent-requests/new", data=request_form(
        client, target="group", group="2B", channels=["facebook", "website"],
        note="schoolreis naar Berlijn"))
    assert preview.status_code == 200, text(preview)
    page = text(preview)
    assert "3 people" in page and "3 e-mails will be sent" in page
    assert "1 decider has no e-mail address" in page
    mail = html.unescape(page.split('<section class="mail-preview"', 1)[1].split("</section>")[0])
    assert "schoolreis naar Berlijn" in mail and "KidA1 FamA1" in mail
    assert FACEBOOK_NL in mail  # the guardian's language is Dutch
    assert stored_nothing(before)

    links = LINK.findall(mail)
    assert {link.split("/")[1] for link in links} == {"c", "m"}
    for link in links:
        dead = client.get(link)
        assert dead.status_code in (404, 410), link
    assert count(AuditEvent) == before and not outbox(app)

    fields = preview_fields(page)
    assert ("confirm", "1") in fields and ("channels", "website") in fields
    sent = client.post("/consent-requests/new", data=MultiDict(fields))
    assert sent.status_code == 302
    request_ = db.session.execute(sa.select(ConsentRequest)).scalar_one()
    assert sent.headers["Location"].endswith(f"/consent-requests/{request_.id}")
    assert request_.channels == ["facebook", "website"] and request_.note == "schoolreis naar Berlijn"
    assert request_.created_by == users["communications"].id
    assert sorted(m["To"] for m in outbox(app)) == ["anna@ouders.nl", "bert@ouders.nl",
                                                    "dirk@ouders.nl"]
    assert len(events("consent_request:create")) == 1

    detail = text(client.get(sent.headers["Location"]))
    assert "3 sent, 0 waiting, 0 failed, 1 without address, 0 answered" in detail
    states = re.findall(r"<td>(sent|no e-mail address|waiting|failed)</td>", detail)
    assert sorted(states) == ["no e-mail address", "sent", "sent", "sent"]
    listing = text(client.get("/consent-requests"))
    assert f'href="/consent-requests/{request_.id}"' in listing and "3 / 4" in listing


def test_preview_links_are_not_answer_links(logged_in: LoggedIn, school: School) -> None:
    """The example links in a preview point at no recipient: the link page says it is invalid."""
    client = english(logged_in, "staff")
    page = text(client.post("/consent-requests/new", data=request_form(
        client, target="person", person_id=str(school.two_guardians), channels=["facebook"])))
    links = LINK.findall(html.unescape(page))
    assert links and all(link.endswith("/preview") for link in links)
    answer = client.get(links[0])
    assert answer.status_code == 404 and "This link is not valid." in text(answer)
    assert client.post(links[0], data={"choice_facebook": "granted"}).status_code in (400, 404)
    assert count(ConsentRecord) == 1  # only the fixture's grant


def test_request_sent_over_smtp(logged_in: LoggedIn, school: School, smtp: Any) -> None:
    """With SMTP configured, confirming sends the mails through the server."""
    client = english(logged_in, "staff")
    sent = client.post("/consent-requests/new", data=request_form(
        client, target="person", person_id=str(school.two_guardians), channels=["facebook"],
        confirm="1"))
    assert sent.status_code == 302
    messages = smtp.wait_for_messages(2)
    assert sorted(m["To"] for m in messages) == ["anna@ouders.nl", "bert@ouders.nl"]
    detail = text(client.get(sent.headers["Location"]))
    assert "2 sent, 0 waiting, 0 failed, 0 without address, 0 answered" in detail


def sent_to(client: FlaskClient, **fields: Any) -> set[int]:
    """Confirm a request with these form fields; the people it was sent about."""
    response = client.post("/consent-requests/new", data=request_form(client, confirm="1", **fields))
    assert response.status_code == 302, text(response)
    request_id = int(response.headers["Location"].rsplit("/", 1)[1])
    return set(db.session.execute(sa.select(ConsentRecipient.person_id).where(
        ConsentRecipient.request_id == request_id)).scalars())


def test_targets_pick_the_right_people(logged_in: LoggedIn, school: School) -> None:
    """One person; a class; everyone without a valid answer, optionally in one class."""
    client = english(logged_in, "admin")
    assert sent_to(client, target="person", person_id=str(school.other_class),
                   channels=["website"]) == {school.other_class}
    assert sent_to(client, target="group", group="2B", channels=["website"]) == {
        school.two_guardians, school.no_address, school.answered}
    assert sent_to(client, target="missing", missing_channel="facebook", channels=["facebook"]) == {
        school.two_guardians, school.no_address, school.other_class}
    assert sent_to(client, target="missing", missing_channel="facebook", group="2B",
                   channels=["facebook"]) == {school.two_guardians, school.no_address}
    assert sent_to(client, target="missing", missing_channel="website", group="3C",
                   channels=["website"]) == {school.other_class}


def test_the_form_can_start_from_a_person(logged_in: LoggedIn, school: School) -> None:
    """The person page links to the form, which then offers that person."""
    client = english(logged_in, "staff")
    page = text(client.get(f"/people/{school.two_guardians}/consents"))
    assert f'href="/consent-requests/new?person_id={school.two_guardians}"' in page
    form = text(client.get(f"/consent-requests/new?person_id={school.two_guardians}"))
    assert f'name="person_id" value="{school.two_guardians}"' in form and "KidA1 FamA1" in form
    assert logged_in("dpo").get(f"/people/{school.two_guardians}/consents").status_code == 200
    assert "/consent-requests/new" not in text(logged_in("dpo").get(
        f"/people/{school.two_guardians}/consents"))


BAD_REQUEST_FORMS: list[tuple[str, dict[str, Any], str]] = [
    ("no channel", {"target": "group", "group": "2B"}, "channel"),
    ("unknown channel", {"target": "group", "group": "2B", "channels": ["tiktok"]}, "tiktok"),
    ("nobody to ask", {"target": "group", "group": "9Z", "channels": ["facebook"]}, "person"),
    ("no target", {"channels": ["facebook"]}, "Choose whom to ask."),
    ("unknown target", {"target": "everyone", "channels": ["facebook"]}, "Choose whom to ask."),
    ("missing without a channel", {"target": "missing", "missing_channel": "tiktok",
                                   "channels": ["facebook"]}, "Choose a channel."),
    ("person that does not exist", {"target": "person", "person_id": "424242",
                                    "channels": ["facebook"]}, "424242"),
    ("person id too large", {"target": "person", "person_id": "99999999999999999999",
                             "channels": ["facebook"]}, ""),
    ("person id not a number", {"target": "person", "person_id": "abc",
                                "channels": ["facebook"]}, ""),
    ("person id in other digits", {"target": "person", "person_id": "\u00b2",
                                   "channels": ["facebook"]}, ""),
    ("note too long", {"target": "group", "group": "2B", "channels": ["facebook"],
                       "note": "x" * 301}, "300"),
]


@pytest.mark.parametrize(("label", "fields", "message"), BAD_REQUEST_FORMS,
                         ids=[c[0] for c in BAD_REQUEST_FORMS])
@pytest.mark.parametrize("confirm", ["", "1"])
def test_bad_request_forms_store_nothing(app: Flask, logged_in: LoggedIn, school: School,
                                         label: str, fields: dict[str, Any], message: str,
                                         confirm: str) -> None:
    """Preview or send with a mistake: the form again with an error (422), nothing stored or sent."""
    client = english(logged_in, "staff")
    before = count(AuditEvent)
    response = client.post("/consent-requests/new", data=request_form(client, confirm=confirm,
                                                                      **fields))
    assert response.status_code == 422, (label, text(response)[:500])
    page = text(response)
    assert 'class="flash error"' in page and message in page
    assert stored_nothing(before) and not outbox(app)


def test_dpo_cannot_ask_for_consent(logged_in: LoggedIn, school: School) -> None:
    """The DPO may not send requests: 403, nothing stored."""
    client = logged_in("dpo")
    before = count(AuditEvent)
    response = client.post("/consent-requests/new", data={
        "csrf_token": csrf_token(client, "/consent-requests"), "target": "group", "group": "2B",
        "channels": ["facebook"], "confirm": "1"})
    assert response.status_code == 403 and stored_nothing(before)


def test_forms_without_csrf_token_are_refused(logged_in: LoggedIn, school: School) -> None:
    """Paper form and request form need the session's CSRF token."""
    client = logged_in("staff")
    assert client.post(f"/people/{school.two_guardians}/consents", data=paper_form()).status_code == 400
    assert client.post("/consent-requests/new", data={
        "target": "group", "group": "2B", "channels": ["facebook"], "confirm": "1"}).status_code == 400
    assert count(ConsentRequest) == 0 and count(ConsentRecord) == 1


@pytest.mark.parametrize("path", ["/consent-requests/424242", "/consent-requests/0",
                                  "/consent-requests/99999999999999999999"])
def test_unknown_request_page_is_404(logged_in: LoggedIn, path: str) -> None:
    """A request that does not exist has no page."""
    assert logged_in("dpo").get(path).status_code == 404


def test_new_request_form_with_an_impossible_person_id(logged_in: LoggedIn) -> None:
    """A person id that cannot exist in the query string just shows the form without a person."""
    client = english(logged_in, "staff")
    for value in ("424242", "99999999999999999999", "abc", "%C2%B2", "%D9%A3"):
        page = client.get(f"/consent-requests/new?person_id={value}")
        assert page.status_code == 200, value
        assert 'name="person_id"' not in text(page)


# --- languages -------------------------------------------------------------------------------


Heading = tuple[str, dict[str, Any]]


def in_language(language: str, heading: Heading) -> str:
    """A page heading (msgid and values) as the catalog writes it in a language."""
    with force_locale(language):
        return gettext(heading[0], **heading[1])


@pytest.fixture
def pages(app: Flask, school: School, users: dict[str, StaffUser]) -> dict[str, Heading]:
    """Each staff page: path -> its heading as msgid and values."""
    request_ = create_request(people=[db.session.get(Person, school.two_guardians)],
                              channels=["facebook"], note=None, actor=SYSTEM,
                              created_by=users["staff"].id)
    db.session.commit()
    return {
        f"/people/{school.two_guardians}/consents": ("Consents of %(name)s", {"name": "KidA1 FamA1"}),
        "/consents?group=2B": ("Consent overview", {}),
        "/consent-requests/new": ("Ask for consent by e-mail", {}),
        "/consent-requests": ("Consent requests", {}),
        f"/consent-requests/{request_.id}": ("Consent request %(id)d", {"id": request_.id}),
    }


def test_staff_pages_are_dutch_by_default_and_english_on_request(
        logged_in: LoggedIn, pages: dict[str, Heading]) -> None:
    """Without a preference the pages are Dutch; Accept-Language: en makes them English."""
    client = logged_in("admin")
    for path, heading in pages.items():
        english_heading, dutch_heading = in_language("en", heading), in_language("nl", heading)
        assert dutch_heading != english_heading, f"no Dutch translation of {heading[0]!r}"

        nl = client.get(path)
        assert nl.status_code == 200, path
        body = html.unescape(text(nl))
        assert '<html lang="nl">' in body and f"<h1>{dutch_heading}</h1>" in body, path
        assert "Uitloggen" in body and FACEBOOK_NL in body, path
        assert "Log out" not in body and FACEBOOK_EN not in body and english_heading not in body, path

        en = client.get(path, headers={"Accept-Language": "en-GB,en;q=0.9"})
        body = html.unescape(text(en))
        assert '<html lang="en">' in body and f"<h1>{english_heading}</h1>" in body, path
        assert "Log out" in body and FACEBOOK_EN in body and FACEBOOK_NL not in body, path


def test_preview_follows_the_page_language(logged_in: LoggedIn, school: School) -> None:
    """The preview page is Dutch or English; the mail itself is in the recipient's language."""
    client = logged_in("staff")
    fields = {"target": "person", "person_id": str(school.two_guardians), "channels": ["facebook"]}
    nl = html.unescape(text(client.post("/consent-requests/new", data=request_form(client, **fields))))
    heading = ("Preview of the request", {})
    assert '<html lang="nl">' in nl and f"<h1>{in_language('nl', heading)}</h1>" in nl
    assert "Uitloggen" in nl and in_language("nl", heading) != in_language("en", heading)
    en = html.unescape(text(client.post("/consent-requests/new", data=request_form(client, **fields),
                                        headers={"Accept-Language": "en"})))
    assert '<html lang="en">' in en and "Preview of the request" in en
    assert "2 e-mails will be sent" in en and FACEBOOK_NL in en  # the guardians read Dutch
    assert count(ConsentRequest) == 0
    assert verify().ok
