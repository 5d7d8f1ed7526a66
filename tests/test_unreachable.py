"""Deciders a consent request cannot reach by e-mail: listed with the reason before and after
sending, and a printable form for each with the same answer link (and a QR code of it)."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import segno
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from test_consent_pages import add_person, decide
from test_gate_service import gate_section, page
from test_tagging import face, make_photo

from consent_registry.audit import SYSTEM, AuditEvent
from consent_registry.consent.forms import QR_ERROR, answer_link
from consent_registry.consent.links import answer_token
from consent_registry.consent.models import ConsentRecipient, ConsentRequest
from consent_registry.consent.paper_links import paper_token
from consent_registry.consent.reach import reason_for
from consent_registry.db import db, utcnow
from consent_registry.people.models import Person
from consent_registry.school import set_school_names

from conftest import bearer, csrf_token

SHORT_TOKEN = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}(?:-[0-9A-HJKMNP-TV-Z]{4}){5}")


# --- helpers -------------------------------------------------------------------------------


def client_in(logged_in: Any, role: str, language: str = "en") -> FlaskClient:
    """A logged-in client asking for pages in a language."""
    client = logged_in(role)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    return client


def upper_years() -> dict[str, Person]:
    """Class 5V as an import without pupil addresses leaves it, plus a few who can be reached."""
    people = {
        "noor": add_person("501", age=17, group="5V"),  # decides herself, no address
        "sem": add_person("502", age=17, group="5V", email="sem@leerling.school.nl"),
        "ivo": add_person("503", age=12, group="5V"),  # under 16, no guardian in the register
        "lot": add_person("504", age=12, group="5V", guardians=("ouder.lot@example.nl",)),
    }
    noor = db.session.get(Person, people["noor"].id)
    noor.given_name, noor.family_name = "Noor", "Visser"
    db.session.commit()
    return people


def ask_class(client: FlaskClient, *, confirm: bool, group: str = "5V") -> Any:
    """Post the request form for a class: the preview, or (confirm) the real request."""
    data = {"csrf_token": csrf_token(client, "/consent-requests/new"), "target": "group",
            "group": group, "channels": ["facebook", "website"], "note": "Profielwerkstukavond"}
    if confirm:
        data["confirm"] = "1"
    return client.post("/consent-requests/new", data=data)


def only_request() -> ConsentRequest:
    """The single request made so far."""
    db.session.expire_all()
    return db.session.execute(sa.select(ConsentRequest)).scalar_one()


def recipient_of(request_: ConsentRequest, person: Person) -> ConsentRecipient:
    """The recipient about one person (who has one decider)."""
    [row] = [r for r in request_.recipients if r.person_id == person.id]
    return row


def unreachable_rows(text: str) -> list[tuple[str, str, str]]:
    """(person, decider, reason) of each row of the unreachable table."""
    section = text.split('id="unreachable"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr class="reason-(\w+)" data-person="\d+">\s*<td><a [^>]*>([^<]+)</a></td>'
                      r"\s*<td>[^<]*</td>\s*<td>([^<]*)</td>", section)
    return [(html.unescape(name), html.unescape(decider), reason) for reason, name, decider in rows]


def print_forms(client: FlaskClient, request_id: int, *recipient_ids: int,
                token: bool = True) -> Any:
    """Press a print button on the request's page."""
    data: dict[str, Any] = {"recipient_id": [str(i) for i in recipient_ids]}
    if token:
        data["csrf_token"] = csrf_token(client, f"/consent-requests/{request_id}")
    return client.post(f"/consent-requests/{request_id}/forms", data=data)


def forms_in(text: str) -> dict[int, str]:
    """Each printed form's HTML by recipient id."""
    return {int(i): body for i, body in
            re.findall(r'<article class="consent-form" lang="\w+" id="form-(\d+)">(.*?)</article>',
                       text, re.S)}


def printed_link(form: str) -> str:
    """The answer link written out on a form."""
    match = re.search(r'<p class="link"><code>([^<]+)</code></p>', form)
    assert match, form
    return html.unescape(match.group(1))


def qr_modules(form: str) -> set[tuple[int, int]]:
    """The dark modules of the form's QR code, read back from the SVG path segno drew."""
    svg = re.search(r"<svg[^>]*>.*?</svg>", form, re.S)
    assert svg, form
    path = re.search(r'class="qrline"[^>]*\bd="([^"]+)"', svg.group(0))
    assert path, svg.group(0)
    border = 4  # segno's quiet zone, in modules
    dark: set[tuple[int, int]] = set()
    x = y = 0.0
    for command, first, second in re.findall(r"([MmHh])(-?[\d.]+)(?:\s(-?[\d.]+))?", path.group(1)):
        if command == "M":
            x, y = float(first), float(second)
        elif command == "m":
            x, y = x + float(first), y + float(second)
        else:  # a horizontal run of dark modules
            length = float(first)
            dark.update((int(x) + i - border, int(y - 0.5) - border) for i in range(int(length)))
            x += length
    return dark


def modules_of(link: str) -> set[tuple[int, int]]:
    """The dark modules segno itself encodes the link into."""
    matrix = segno.make(link, error=QR_ERROR, micro=False).matrix
    return {(x, y) for y, row in enumerate(matrix) for x, value in enumerate(row) if value}


def heading(text: str) -> str:
    """A page's first heading."""
    match = re.search(r"<h1>([^<]+)</h1>", text)
    assert match, text[:500]
    return html.unescape(match.group(1))


def events(action: str) -> list[AuditEvent]:
    """Audit events with this action, oldest first."""
    db.session.expire_all()
    return list(db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).scalars())


# --- the rule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "has_guardian", "email", "delivery", "expected"),
    [
        ("pupil", False, None, "skipped", "no_pupil_address"),
        ("pupil", False, "a@b.nl", "pending", None),
        ("self", False, None, "skipped", "no_staff_address"),
        ("guardian", False, None, "skipped", "no_guardian"),
        ("guardian", True, None, "skipped", "no_guardian_address"),
        ("guardian", True, "a@b.nl", "sent", None),
        ("guardian", True, "a@b.nl", "failed", "delivery_failed"),
    ],
)
def test_reason_for(kind: str, has_guardian: bool, email: str | None, delivery: str,
                    expected: str | None) -> None:
    assert reason_for(decider_kind=kind, has_guardian=has_guardian, email=email,
                      delivery=delivery) == expected


# --- before sending ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "pupil_reason", "guardian_reason", "pupil_word"),
    [
        ("en", "The pupil decides (16 or older) but has no e-mail address in the register.",
         "No guardian in the register: nobody can answer for this pupil.", "the pupil"),
        ("nl", "De leerling beslist zelf (16 of ouder) maar heeft geen e-mailadres in het register.",
         "Geen ouder of verzorger in het register: niemand kan voor deze leerling antwoorden.",
         "de leerling"),
    ],
    ids=["english", "dutch"],
)
def test_the_preview_names_who_cannot_be_reached_and_why(
    logged_in: Any, language: str, pupil_reason: str, guardian_reason: str, pupil_word: str,
) -> None:
    """Before anything is sent: each unreachable decider by name, with the reason, in the page's language."""
    people = upper_years()
    response = ask_class(client_in(logged_in, "staff", language), confirm=False)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    nobody = "een ouder of verzorger" if language == "nl" else "a parent or guardian"
    assert unreachable_rows(text) == [("Kid503 Fam503", nobody, "no_guardian"),
                                      ("Noor Visser", pupil_word, "no_pupil_address")]
    assert html.unescape(text).count(pupil_reason) == 1
    assert html.unescape(text).count(guardian_reason) == 1
    assert "Kid502" not in text.split('id="unreachable"', 1)[1].split("</table>", 1)[0]
    assert people["sem"].email  # reachable, so not listed
    assert db.session.execute(sa.select(sa.func.count()).select_from(ConsentRequest)).scalar_one() == 0


def test_the_media_page_names_the_unreachable_before_the_button(app: Flask, logged_in: Any) -> None:
    """On an item's page, before asking: whose deciders no e-mail would reach."""
    people = upper_years()
    photo = make_photo(app)
    for n, key in enumerate(("noor", "sem", "lot")):
        face(photo, (10 + 50 * n, 10, 40, 40), person_id=people[key].id, resolution="identified")
    section = gate_section(page(client_in(logged_in, "communications"), photo))
    assert "1 decider cannot be reached by e-mail" in section
    assert ("Noor Visser: The pupil decides (16 or older) but has no e-mail address in the register."
            in section)
    assert "Kid502" not in section.split('id="gate-unreachable"', 1)[1].split("</div>", 1)[0]
    # After asking, the section points at the request whose page prints the forms.
    officer = client_in(logged_in, "communications")
    token = csrf_token(officer, f"/media/{photo.id}")
    officer.post(f"/media/{photo.id}/gate/request", data={"csrf_token": token, "channel": "facebook"})
    request_ = only_request()
    assert f"/consent-requests/{request_.id}#unreachable" in gate_section(page(officer, photo))


# --- after sending: the request's page and the printed forms ------------------------------------


def test_the_request_page_lists_the_unreachable_and_prints_a_working_form(
    app: Flask, logged_in: Any, users: Any,
) -> None:
    """The mentor's story: the form's link and QR code open the same answer page as an e-mail."""
    people = upper_years()
    staff = client_in(logged_in, "staff")
    assert ask_class(staff, confirm=True).status_code == 302
    request_ = only_request()
    noor = recipient_of(request_, people["noor"])
    ivo = recipient_of(request_, people["ivo"])
    detail = staff.get(f"/consent-requests/{request_.id}").get_data(as_text=True)
    assert unreachable_rows(detail) == [("Kid503 Fam503", "a parent or guardian", "no_guardian"),
                                        ("Noor Visser", "the pupil", "no_pupil_address")]
    assert "Print all 2 forms in one document" in detail
    # The recipients' table no longer calls the missing guardian "the staff member".
    ivo_row = detail.split(f'href="/people/{people["ivo"].id}/consents">', 2)[-1].split("</tr>", 1)[0]
    assert "a parent or guardian" in ivo_row and "the staff member" not in ivo_row
    assert f'href="/people/{people["noor"].id}/consents#paper-form"' in detail

    set_school_names(school_name="Het Baken", sender_name="Het Baken (privacy)", actor=SYSTEM)
    db.session.commit()
    printed = print_forms(staff, request_.id, noor.id)
    assert printed.status_code == 200
    assert printed.headers["Cache-Control"] == "no-store"  # live links are not cached
    text = printed.get_data(as_text=True)
    forms = forms_in(text)
    assert list(forms) == [noor.id]
    form = forms[noor.id]
    # Written in Noor's language (Dutch, the register's default) like her e-mail would be.
    assert "Uw toestemming" in form and "Voor Noor Visser, die zelf beslist." in form
    assert "Profielwerkstukavond" in form
    assert '<p class="school">Het Baken</p>' in form  # the name set up, as on the e-mail
    assert form.count('class="box"') == 4  # yes and no for each of the two channels, none ticked
    assert "Handtekening" in form
    assert f'href="/people/{people["noor"].id}/consents#paper-form"' in text  # the paper-form entry

    link = printed_link(form)
    today = utcnow().date()
    assert link == answer_link(noor.id, today=today)
    assert link.startswith(app.config["PUBLIC_URL"].rstrip("/") + "/c/")  # the e-mail's answer page
    path = urlsplit(link).path
    token = path.removeprefix("/c/")
    assert SHORT_TOKEN.fullmatch(token), token  # 24 characters to type, in groups of four
    assert qr_modules(form) == modules_of(link)
    assert qr_modules(form) != modules_of(answer_link(ivo.id, today=today))

    # The printed link opens the same answer page as the e-mail's, and answering through it counts.
    family = app.test_client()
    answer = family.get(path)
    assert answer.status_code == 200
    answer_text = answer.get_data(as_text=True)
    assert "Profielwerkstukavond" in answer_text
    by_mail = app.test_client().get(f"/c/{answer_token(noor.id)}").get_data(as_text=True)
    assert heading(by_mail) == heading(answer_text) == "Uw toestemming"
    assert app.test_client().get(path.lower()).status_code == 200  # typed in lower case
    posted = family.post(path, data={
        "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', answer_text).group(1),
        "choice_facebook": "granted", "choice_website": "refused"})
    assert posted.status_code == 200
    db.session.expire_all()
    assert db.session.get(ConsentRecipient, noor.id).answered_at is not None

    [opened] = events("consent_link:open")
    assert opened.details == {"recipient_id": noor.id, "printed": True}
    # The proof of each decision says it came through the printed form's link, not an e-mail.
    decided = events("consent:grant") + events("consent:refuse")
    assert len(decided) == 2 and all(e.details["printed_link"] is True for e in decided)
    # Printing is audited with the recipients it exposed.
    [event] = events("consent_form:print")
    assert event.actor_type == "user" and event.actor_id == users["staff"].id
    assert (event.subject_type, event.subject_id) == ("consent_request", str(request_.id))
    assert event.details == {"recipient_ids": [noor.id], "person_ids": [people["noor"].id]}
    # Once answered, a form for her is refused and she leaves the list.
    assert print_forms(staff, request_.id, noor.id).status_code == 409
    again = staff.get(f"/consent-requests/{request_.id}").get_data(as_text=True)
    assert [row[0] for row in unreachable_rows(again)] == ["Kid503 Fam503"]


def test_batch_print_holds_every_unreachable_decider_in_their_own_language(
    logged_in: Any,
) -> None:
    """One document for the mentor: each form in its decider's language, the page in the mentor's."""
    people = upper_years()
    noor = db.session.get(Person, people["noor"].id)
    noor.language = "en"
    db.session.commit()
    mentor = client_in(logged_in, "admin", "nl")
    ask_class(mentor, confirm=True)
    request_ = only_request()
    printed = print_forms(mentor, request_.id)
    assert printed.status_code == 200
    text = printed.get_data(as_text=True)
    forms = forms_in(text)
    noor_id = recipient_of(request_, people["noor"]).id
    ivo_id = recipient_of(request_, people["ivo"]).id
    assert set(forms) == {noor_id, ivo_id}
    assert "2 toestemmingsformulieren om af te drukken" in text
    assert "Yes, I consent" in forms[noor_id]  # Noor reads English
    assert f'lang="en" id="form-{noor_id}"' in text
    assert "Ja, ik geef toestemming" in forms[ivo_id]
    # Nobody who may answer for Ivo is known: no link, room for the guardian's details instead.
    assert 'class="link"' not in forms[ivo_id] and "<svg" not in forms[ivo_id]
    assert "Naam van de ouder of verzorger" in forms[ivo_id]
    assert "@media print" in open_stylesheet(mentor)
    [event] = events("consent_form:print")
    assert sorted(event.details["recipient_ids"]) == sorted([noor_id, ivo_id])


def open_stylesheet(client: FlaskClient) -> str:
    """The printable forms' stylesheet."""
    return client.get("/static/consent_form.css").get_data(as_text=True)


@pytest.mark.parametrize("role", ["communications", "dpo"])
def test_only_those_who_record_paper_answers_print_forms(logged_in: Any, role: str) -> None:
    """A printed form is a live answer link: communications and the DPO cannot print one."""
    upper_years()
    ask_class(client_in(logged_in, "staff"), confirm=True)
    request_ = only_request()
    client = client_in(logged_in, role)
    assert "Print a form" not in client.get(f"/consent-requests/{request_.id}").get_data(as_text=True)
    assert print_forms(client, request_.id).status_code == 403
    assert events("consent_form:print") == []


def test_printing_needs_a_csrf_token_a_login_and_a_recipient_of_the_request(
    app: Flask, logged_in: Any,
) -> None:
    """No token: 400; not logged in: to the login page; another request's recipient: 404."""
    people = upper_years()
    staff = client_in(logged_in, "staff")
    ask_class(staff, confirm=True)
    first = only_request()
    assert print_forms(staff, first.id, token=False).status_code == 400
    anonymous = app.test_client().post(f"/consent-requests/{first.id}/forms")
    assert anonymous.status_code in (302, 401) and "/login" in anonymous.headers.get("Location", "/login")
    add_person("601", age=17, group="6V")
    ask_class(staff, confirm=True, group="6V")
    db.session.expire_all()
    second = db.session.execute(
        sa.select(ConsentRequest).order_by(ConsentRequest.id.desc())).scalars().first()
    assert print_forms(staff, first.id, second.recipients[0].id).status_code == 404
    assert print_forms(staff, 999999).status_code == 404
    assert print_forms(staff, first.id, recipient_of(first, people["noor"]).id).status_code == 200
    assert len(events("consent_form:print")) == 1


def test_a_request_everyone_can_be_reached_in_prints_nothing_and_audits_nothing(
    logged_in: Any,
) -> None:
    add_person("701", age=17, group="7V", email="a@leerling.school.nl")
    staff = client_in(logged_in, "staff")
    ask_class(staff, confirm=True, group="7V")
    request_ = only_request()
    detail = staff.get(f"/consent-requests/{request_.id}").get_data(as_text=True)
    assert 'id="unreachable"' not in detail
    text = print_forms(staff, request_.id).get_data(as_text=True)
    assert forms_in(text) == {} and "nothing to print" in text
    assert events("consent_form:print") == []


# --- the API ------------------------------------------------------------------------------------


def test_the_api_says_who_cannot_be_reached(app: Flask, tokens: dict[str, str]) -> None:
    people = upper_years()
    staff_member = add_person("801", role="staff", group=None)
    api = app.test_client()
    ids = [people[k].id for k in ("noor", "sem", "ivo", "lot")] + [staff_member.id]
    created = api.post("/api/v1/consent-requests", headers=bearer(tokens["staff"]),
                       json={"person_ids": ids, "channels": ["facebook"]})
    assert created.status_code == 202, created.get_json()
    body = created.get_json()
    assert [(u["person_id"], u["decider"], u["reason"]) for u in body["unreachable"]] == [
        (staff_member.id, "self", "no_staff_address"),
        (people["ivo"].id, "guardian", "no_guardian"),
        (people["noor"].id, "pupil", "no_pupil_address")]
    assert all(u["message"] for u in body["unreachable"])
    shown = api.get(f"/api/v1/consent-requests/{body['id']}", headers=bearer(tokens["dpo"]))
    assert shown.get_json()["unreachable"] == body["unreachable"]


def test_decisions_already_given_do_not_hide_an_unreachable_decider(logged_in: Any) -> None:
    """Listing is about reaching people, not about their consent: a refusal on file changes nothing."""
    people = upper_years()
    decide(people["noor"].id, "facebook", "refused")
    text = ask_class(client_in(logged_in, "staff"), confirm=False).get_data(as_text=True)
    assert ("Noor Visser", "the pupil", "no_pupil_address") in unreachable_rows(text)


def test_an_altered_or_old_printed_link_opens_nothing(app: Flask, logged_in: Any) -> None:
    """The answer page refuses a short link with one character changed (404) or past its days (410)."""
    people = upper_years()
    ask_class(client_in(logged_in, "staff"), confirm=True)
    noor = recipient_of(only_request(), people["noor"])
    today = utcnow().date()
    token = paper_token(noor.id, today=today)
    altered = ("1" if token[0] != "1" else "2") + token[1:]
    visitor = app.test_client()
    assert visitor.get(f"/c/{token}").status_code == 200
    assert visitor.get(f"/c/{altered}").status_code == 404
    days = app.config["CONSENT_LINK_DAYS"]
    old = paper_token(noor.id, today=today - timedelta(days=days + 1))
    assert visitor.get(f"/c/{old}").status_code == 410
    assert visitor.get(f"/c/{paper_token(noor.id, today=today - timedelta(days=days))}").status_code == 200


def test_who_left_or_got_a_guardian_since_the_request_is_no_longer_listed(logged_in: Any) -> None:
    """A leaver needs no form (409 when asked for one); a pupil with a guardian now is asked anew."""
    people = upper_years()
    staff = client_in(logged_in, "staff")
    ask_class(staff, confirm=True)
    request_ = only_request()
    noor_id = recipient_of(request_, people["noor"]).id
    db.session.get(Person, people["noor"].id).status = "left"
    ivo = db.session.get(Person, people["ivo"].id)
    db.session.commit()
    add_guardian = staff.post(f"/people/{ivo.id}/guardians", data={
        "csrf_token": csrf_token(staff, f"/people/{ivo.id}"), "name": "Ivo's vader",
        "email": "vader.ivo@example.nl"})
    assert add_guardian.status_code == 302
    detail = staff.get(f"/consent-requests/{request_.id}").get_data(as_text=True)
    assert 'id="unreachable"' not in detail
    assert print_forms(staff, request_.id, noor_id).status_code == 409
    assert events("consent_form:print") == []


def test_a_class_nobody_can_be_e_mailed_in_still_gets_a_request_to_print_forms_for(
    logged_in: Any,
) -> None:
    """The issue's class: five pupils of 16 or older without addresses, 0 of 5 e-mails. The preview
    no longer offers only a disabled button: the request is made for its printed forms."""
    for n in range(5):
        add_person(f"90{n}", age=17, group="6A")
    staff = client_in(logged_in, "staff")
    preview = ask_class(staff, confirm=False, group="6A").get_data(as_text=True)
    assert len(unreachable_rows(preview)) == 5
    assert re.search(r"<button type=\"submit\" >Create the request to print its forms</button>", preview)
    created = ask_class(staff, confirm=True, group="6A")
    assert created.status_code == 302
    request_ = only_request()
    assert created.headers["Location"].endswith(f"/consent-requests/{request_.id}#unreachable")
    landed = staff.get(created.headers["Location"]).get_data(as_text=True)
    assert "Nobody in this request can be e-mailed: print their forms below." in landed
    assert "Print all 5 forms in one document" in landed
    assert len(forms_in(print_forms(staff, request_.id).get_data(as_text=True))) == 5


def test_a_staff_member_without_an_address_is_listed_and_can_be_given_a_form(logged_in: Any) -> None:
    """Staff decide for themselves: without an address they are named, and the request can be made."""
    add_person("950", age=40, role="staff", group="6B")
    text = ask_class(client_in(logged_in, "staff"), confirm=False, group="6B").get_data(as_text=True)
    assert "Create the request to print its forms</button>" in text
    assert "disabled>Create the request" not in text
    assert unreachable_rows(text) == [("Kid950 Fam950", "the staff member", "no_staff_address")]
