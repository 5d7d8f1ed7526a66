"""Tests for the web pages of the people register: list, roles, create, edit, guardians, display."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from consent_registry.audit import SYSTEM, AuditEvent
from consent_registry.db import db, utcnow
from consent_registry.people.models import Guardian, GuardianLink, Person
from consent_registry.people.schemas import GuardianIn, PersonCreate, PersonPatch
from consent_registry.people.service import create_person, update_person

from conftest import StaffUser, csrf_token

LoggedIn = Callable[[str], FlaskClient]
READERS = ("communications", "dpo")
WRITERS = ("staff", "admin")
PERSON_LINK = re.compile(r'href="/people/(\d+)"')


# --- helpers -------------------------------------------------------------------------------


def browser(logged_in: LoggedIn, role: str) -> FlaskClient:
    """A logged-in client that asks for English pages, so assertions read the msgids."""
    client = logged_in(role)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def add_person(
    external_id: str,
    given_name: str = "Anna",
    family_name: str = "Jansen",
    *,
    role: str = "pupil",
    birth_date: date = date(2012, 5, 1),
    email: str | None = None,
    group: str | None = None,
    guardians: tuple[tuple[str, str], ...] = (),
    commit: bool = True,
) -> Person:
    """A person put straight into the register through the service."""
    person = create_person(
        PersonCreate(
            external_id=external_id, given_name=given_name, family_name=family_name,
            birth_date=birth_date, role=role, email=email, group=group,  # type: ignore[arg-type]
            guardians=[GuardianIn(name=name, email=mail) for name, mail in guardians],
        ),
        actor=SYSTEM,
    )
    if commit:
        db.session.commit()
    return person


def count(model: type[Any]) -> int:
    """Rows in a table."""
    return db.session.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


def register_counts() -> tuple[int, int, int, int]:
    """People, guardians, links and audit events: what a refused change must not touch."""
    return count(Person), count(Guardian), count(GuardianLink), count(AuditEvent)


def events(action: str) -> list[AuditEvent]:
    """Audit events with this action, oldest first."""
    db.session.expire_all()
    return list(db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
    ).scalars())


def fresh(person_id: int) -> Person:
    """The person as stored now, not as cached in the session."""
    db.session.expire_all()
    person = db.session.get(Person, person_id)
    assert person is not None
    return person


def listed_ids(response: TestResponse) -> list[int]:
    """The ids of the people linked from a list page, in page order."""
    assert response.status_code == 200
    return [int(i) for i in PERSON_LINK.findall(response.get_data(as_text=True))]


def post(client: FlaskClient, path: str, data: dict[str, str] | None = None) -> TestResponse:
    """A form POST with the client's CSRF token."""
    return client.post(path, data={**(data or {}), "csrf_token": csrf_token(client, "/people/")})


def pupil_form(**changes: str) -> dict[str, str]:
    """A complete, valid create form for a pupil with two guardians."""
    form = {
        "external_id": "L2001", "given_name": "Sanne", "family_name": "de Vries",
        "birth_date": "2013-04-12", "role": "pupil", "email": "", "group": "5B",
        "guardian1_name": "Marieke de Vries", "guardian1_email": "Marieke@Example.NL",
        "guardian1_relation": "mother",
        "guardian2_name": "Johan de Vries", "guardian2_email": "johan@example.nl",
        "guardian2_relation": "",
    }
    form.update(changes)
    return form


def edit_form(person: Person, **changes: str) -> dict[str, str]:
    """The edit form as the browser would send it back unchanged, with some changes."""
    form = {
        "external_id": person.external_id, "given_name": person.given_name,
        "family_name": person.family_name, "birth_date": person.birth_date.isoformat(),
        "role": person.role, "email": person.email or "", "group": person.group or "",
        "status": person.status, "left_on": person.left_on.isoformat() if person.left_on else "",
        "language": person.language,
    }
    form.update(changes)
    return form


def field_error(html: str, name: str) -> str | None:
    """The error message shown beside an input, or None."""
    match = re.search(rf'<p class="error" id="e-{re.escape(name)}">(.*?)</p>', html, re.S)
    return match.group(1) if match else None


def years_before(day: date, years: int) -> date:
    """The same calendar day some years earlier (29 February becomes 28 February)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


# --- list page -------------------------------------------------------------------------------


@pytest.fixture
def three(app: Flask) -> dict[str, Person]:
    """Three people in two classes, one of whom has left."""
    anna = add_person("L1001", "Anna", "Jansen", email="anna.jansen@school.example", group="1A")
    piet = add_person("L1002", "Piet", "Bakker", email="piet@example.org", group="2B")
    sara = add_person("M3003", "Sara", "Jansen-Smit", group="1A")
    update_person(sara, PersonPatch(status="left", left_on=date(2024, 7, 1)), actor=SYSTEM)
    db.session.commit()
    return {"anna": anna, "piet": piet, "sara": sara}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("jansen", {"anna", "sara"}),
        ("Piet", {"piet"}),
        ("L100", {"anna", "piet"}),
        ("M3003", {"sara"}),
        ("piet@example", {"piet"}),
        ("SCHOOL.EXAMPLE", {"anna"}),
        ("anna jansen", {"anna"}),
        ("%", set()),
        ("_", set()),
        ("nobody", set()),
        ("", {"anna", "piet", "sara"}),
    ],
)
def test_list_searches_name_number_and_email(
    logged_in: LoggedIn, three: dict[str, Person], q: str, expected: set[str]
) -> None:
    """The search box matches given and family name, number and e-mail; wildcards are literal."""
    client = browser(logged_in, "communications")
    ids = listed_ids(client.get("/people/", query_string={"q": q}))
    assert set(ids) == {three[name].id for name in expected}


def test_list_orders_by_family_name_and_counts(logged_in: LoggedIn, three: dict[str, Person]) -> None:
    """People are listed by family name with the total shown."""
    response = browser(logged_in, "dpo").get("/people/")
    assert listed_ids(response) == [three["piet"].id, three["anna"].id, three["sara"].id]
    html = response.get_data(as_text=True)
    assert "3 people" in html
    assert "Bakker, Piet" in html


def test_list_filters_by_class(logged_in: LoggedIn, three: dict[str, Person]) -> None:
    """The class filter shows only that class, and the class list offers every class."""
    client = browser(logged_in, "staff")
    response = client.get("/people/", query_string={"group": "1A"})
    assert set(listed_ids(response)) == {three["anna"].id, three["sara"].id}
    html = response.get_data(as_text=True)
    assert '<option value="1A" selected>1A</option>' in html
    assert '<option value="2B" >2B</option>' in html
    assert listed_ids(client.get("/people/", query_string={"group": "9Z"})) == []
    both = client.get("/people/", query_string={"group": "1A", "q": "sara"})
    assert listed_ids(both) == [three["sara"].id]


@pytest.mark.parametrize(
    ("status", "expected"),
    [("active", {"anna", "piet"}), ("left", {"sara"}), ("", {"anna", "piet", "sara"}),
     ("nonsense", {"anna", "piet", "sara"})],
)
def test_list_filters_by_status(
    logged_in: LoggedIn, three: dict[str, Person], status: str, expected: set[str]
) -> None:
    """The status filter shows active or left people; an unknown status means everyone."""
    ids = listed_ids(browser(logged_in, "staff").get("/people/", query_string={"status": status}))
    assert set(ids) == {three[name].id for name in expected}


@pytest.fixture
def crowd(app: Flask) -> list[int]:
    """More people than fit on one page, in family-name order."""
    made = [
        add_person(f"P{i:03d}", "Kind", f"Familie{i:03d}", group="7C", commit=False).id
        for i in range(app.config["PAGE_SIZE"] + 3)
    ]
    db.session.commit()
    return made


def test_list_pages_through_everyone(app: Flask, logged_in: LoggedIn, crowd: list[int]) -> None:
    """The first page holds PAGE_SIZE people, the second the rest, with links between them."""
    size = app.config["PAGE_SIZE"]
    client = browser(logged_in, "staff")
    first = client.get("/people/")
    assert listed_ids(first) == crowd[:size]
    html = first.get_data(as_text=True)
    assert f"{len(crowd)} people" in html
    assert "Page 1 of 2" in html
    assert "page=2" in html and "Next" in html
    second = client.get("/people/", query_string={"page": "2"})
    assert listed_ids(second) == crowd[size:]
    assert "Page 2 of 2" in second.get_data(as_text=True)
    assert "Previous" in second.get_data(as_text=True)
    filtered = client.get("/people/", query_string={"group": "7C", "q": "Familie", "page": "2"})
    assert listed_ids(filtered) == crowd[size:]
    assert "group=7C" in filtered.get_data(as_text=True)


@pytest.mark.parametrize("page", ["3", "99", "100000", "9" * 5000, "abc", "0", "-1", "1.5", "²", "٣", ""])
def test_list_page_out_of_range_or_nonsense_does_not_fail(
    app: Flask, logged_in: LoggedIn, crowd: list[int], page: str
) -> None:
    """A page past the end shows nobody; a page that is no number shows the first page."""
    response = browser(logged_in, "staff").get("/people/", query_string={"page": page})
    ids = listed_ids(response)
    if page.isascii() and page.isdigit() and page.lstrip("0") not in ("", "1"):
        assert ids == []
    else:
        assert ids == crowd[: app.config["PAGE_SIZE"]]
    assert f"{len(crowd)} people" in response.get_data(as_text=True)


# --- roles -----------------------------------------------------------------------------------


def test_anonymous_visitor_is_sent_to_login(client: FlaskClient, three: dict[str, Person]) -> None:
    """Nobody sees the register without logging in."""
    for path in ("/people/", f"/people/{three['anna'].id}", "/people/new"):
        response = client.get(path)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


@pytest.mark.parametrize("role", READERS)
def test_readers_see_but_cannot_change(
    logged_in: LoggedIn, three: dict[str, Person], role: str
) -> None:
    """Communications and the DPO read the list and person pages; every change is 403."""
    client = browser(logged_in, role)
    anna = three["anna"]
    listing = client.get("/people/")
    assert listing.status_code == 200
    assert 'href="/people/new"' not in listing.get_data(as_text=True)
    page = client.get(f"/people/{anna.id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Jansen" in html
    assert f"/people/{anna.id}/edit" not in html
    assert "Add a guardian" not in html
    before = register_counts()
    assert client.get("/people/new").status_code == 403
    assert post(client, "/people/new", pupil_form()).status_code == 403
    assert client.get(f"/people/{anna.id}/edit").status_code == 403
    assert post(client, f"/people/{anna.id}/edit", edit_form(anna, group="9Z")).status_code == 403
    assert post(client, f"/people/{anna.id}/guardians",
                {"name": "X", "email": "x@example.org"}).status_code == 403
    assert register_counts() == before
    assert fresh(anna.id).group == "1A"


@pytest.mark.parametrize("role", READERS)
def test_readers_cannot_remove_a_guardian(logged_in: LoggedIn, app: Flask, role: str) -> None:
    """Removing a guardian is a change too: 403 for readers, and the link stays."""
    pupil = add_person("L1", guardians=(("Ma", "ma@example.org"),))
    guardian_id = pupil.guardian_links[0].guardian_id
    client = browser(logged_in, role)
    response = post(client, f"/people/{pupil.id}/guardians/{guardian_id}/remove")
    assert response.status_code == 403
    assert count(GuardianLink) == 1


@pytest.mark.parametrize("role", WRITERS)
def test_writers_may_create(logged_in: LoggedIn, users: dict[str, StaffUser], role: str) -> None:
    """Staff and admins see the add button and the form, and may add a person."""
    client = browser(logged_in, role)
    assert 'href="/people/new"' in client.get("/people/").get_data(as_text=True)
    form_page = client.get("/people/new")
    assert form_page.status_code == 200
    assert 'name="guardian1_email"' in form_page.get_data(as_text=True)
    response = post(client, "/people/new", pupil_form())
    assert response.status_code == 302
    [created] = events("person:create")
    assert (created.actor_type, created.actor_id) == ("user", users[role].id)


# --- create form -----------------------------------------------------------------------------


def test_create_pupil_with_two_guardians(logged_in: LoggedIn, users: dict[str, StaffUser]) -> None:
    """A valid form adds the pupil and both guardians, audited, and opens the person's page."""
    client = browser(logged_in, "staff")
    response = post(client, "/people/new", pupil_form())
    assert response.status_code == 302
    person = db.session.execute(sa.select(Person).where(Person.external_id == "L2001")).scalar_one()
    assert response.headers["Location"].endswith(f"/people/{person.id}")
    assert (person.given_name, person.family_name, person.group) == ("Sanne", "de Vries", "5B")
    assert (person.birth_date, person.role, person.status, person.email) == (
        date(2013, 4, 12), "pupil", "active", None)
    links = {link.guardian.email: link for link in person.guardian_links}
    assert set(links) == {"marieke@example.nl", "johan@example.nl"}
    assert links["marieke@example.nl"].guardian.name == "Marieke de Vries"
    assert links["marieke@example.nl"].relation == "mother"
    assert links["johan@example.nl"].relation is None
    assert [e.subject_id for e in events("person:create")] == [str(person.id)]
    assert events("person:create")[0].details == {"role": "pupil"}
    assert len(events("guardian:create")) == 2
    linked = events("guardian:link")
    assert [e.subject_id for e in linked] == [str(person.id)] * 2
    assert {e.details["guardian_id"] for e in linked} == {link.guardian_id for link in links.values()}
    staff_id = users["staff"].id
    for action in ("person:create", "guardian:create", "guardian:link"):
        assert all((e.actor_type, e.actor_id) == ("user", staff_id) for e in events(action))
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Sanne de Vries has been added." in page
    assert "marieke@example.nl" in page and "Johan de Vries" in page


def test_create_staff_member_without_guardians(logged_in: LoggedIn) -> None:
    """A staff member needs no guardians and gets none."""
    client = browser(logged_in, "admin")
    form = pupil_form(external_id="T77", role="staff", birth_date="1980-01-31", email="t@school.example",
                      guardian1_name="", guardian1_email="", guardian1_relation="",
                      guardian2_name="", guardian2_email="")
    assert post(client, "/people/new", form).status_code == 302
    person = db.session.execute(sa.select(Person).where(Person.external_id == "T77")).scalar_one()
    assert (person.role, person.email, person.guardian_links) == ("staff", "t@school.example", [])
    assert count(Guardian) == 0


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"family_name": ""}, "family_name", "This field is required."),
        ({"family_name": "   "}, "family_name", "This field is required."),
        ({"external_id": ""}, "external_id", "This field is required."),
        ({"birth_date": (date.today() + timedelta(days=400)).isoformat()}, "birth_date",
         "Must not be in the future."),
        ({"birth_date": "2010-02-31"}, "birth_date", None),
        ({"birth_date": "31-01-2010"}, "birth_date", "Must be a date written as YYYY-MM-DD."),
        ({"birth_date": "1899-12-31"}, "birth_date", "Must be 1900 or later."),
        ({"email": "not-an-address"}, "email", "Not a valid e-mail address."),
        ({"email": "a@b@example.org"}, "email", "Not a valid e-mail address."),
        ({"guardian1_email": "marieke(at)example.nl"}, "guardian1_email",
         "Not a valid e-mail address."),
        ({"guardian2_email": ""}, "guardian2_email", "Not a valid e-mail address."),
        ({"guardian2_name": ""}, "guardian2_name", None),
        ({"role": "teacher"}, "role", None),
        ({"given_name": "x" * 101}, "given_name", "Too long: at most 100 characters."),
    ],
)
def test_create_refuses_invalid_input(
    logged_in: LoggedIn, changes: dict[str, str], field: str, message: str | None
) -> None:
    """Invalid input re-shows the form (422) with the error beside the field; nothing is written."""
    client = browser(logged_in, "staff")
    before = register_counts()
    response = post(client, "/people/new", pupil_form(**changes))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Please correct the marked fields." in html
    if field == "role":
        assert '<div class="field invalid">\n    <label for="f-role">' in html
    else:
        shown = field_error(html, field)
        assert shown, f"no error beside {field}"
        assert message is None or shown == message
        assert f'id="f-{field}"' in html and 'aria-invalid="true"' in html
    assert 'value="5B"' in html and 'value="Marieke de Vries"' in html  # typed values are kept
    assert register_counts() == before


def test_create_refuses_guardians_for_staff(logged_in: LoggedIn) -> None:
    """A staff member with a guardian is refused with the message under the guardians."""
    client = browser(logged_in, "staff")
    before = register_counts()
    response = post(client, "/people/new", pupil_form(role="staff", birth_date="1985-06-01"))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'role="alert">Guardians: Staff members have no guardians.</p>' in html
    assert register_counts() == before


def test_create_refuses_the_same_guardian_twice(logged_in: LoggedIn) -> None:
    """Naming one guardian in both rows is refused."""
    client = browser(logged_in, "staff")
    before = register_counts()
    response = post(client, "/people/new", pupil_form(guardian2_email="MARIEKE@example.nl"))
    assert response.status_code == 422
    assert "The same guardian is named twice." in response.get_data(as_text=True)
    assert register_counts() == before


def test_create_refuses_a_duplicate_external_id(logged_in: LoggedIn, app: Flask) -> None:
    """A number already in the register is an error beside the number; nothing is written."""
    add_person("L2001", "Someone", "Else")
    client = browser(logged_in, "staff")
    before = register_counts()
    response = post(client, "/people/new", pupil_form())
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "external_id")
    assert register_counts() == before
    assert count(Guardian) == 0


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_create_without_a_valid_csrf_token_is_refused(logged_in: LoggedIn, token: str | None) -> None:
    """A form without the session's CSRF token is a 400 and writes nothing."""
    client = browser(logged_in, "staff")
    before = register_counts()
    data = pupil_form() if token is None else {**pupil_form(), "csrf_token": token}
    response = client.post("/people/new", data=data)
    assert response.status_code == 400
    assert "The form had expired" in response.get_data(as_text=True)
    assert register_counts() == before


def test_csrf_token_of_another_session_is_refused(logged_in: LoggedIn) -> None:
    """A token from one browser does not work in another."""
    alice, bob = browser(logged_in, "staff"), browser(logged_in, "admin")
    before = register_counts()
    response = bob.post("/people/new", data={**pupil_form(), "csrf_token": csrf_token(alice, "/people/")})
    assert response.status_code == 400
    assert register_counts() == before


# --- edit ------------------------------------------------------------------------------------


@pytest.fixture
def pupil(app: Flask) -> Person:
    """A pupil with one guardian."""
    return add_person("L5001", "Daan", "Visser", email="daan@school.example", group="3A",
                      guardians=(("Eva Visser", "eva@example.org"),))


def test_edit_form_is_prefilled(logged_in: LoggedIn, pupil: Person) -> None:
    """The edit form shows the stored values."""
    html = browser(logged_in, "staff").get(f"/people/{pupil.id}/edit").get_data(as_text=True)
    for value in ("L5001", "Daan", "Visser", "2012-05-01", "daan@school.example", "3A"):
        assert f'value="{value}"' in html
    assert '<option value="active" selected>' in html


def test_edit_saves_group_and_email_and_audits_field_names_only(
    logged_in: LoggedIn, pupil: Person, users: dict[str, StaffUser]
) -> None:
    """Changed fields are saved; the audit event names the fields but holds no values."""
    client = browser(logged_in, "staff")
    response = post(client, f"/people/{pupil.id}/edit",
                    edit_form(pupil, group="4B", email="Daan.Visser@School.example"))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/people/{pupil.id}")
    saved = fresh(pupil.id)
    assert (saved.group, saved.email) == ("4B", "daan.visser@school.example")
    assert len(saved.guardian_links) == 1  # the edit form leaves guardians alone
    [event] = events("person:update")
    assert event.details == {"fields": ["email", "group"]}
    assert (event.actor_type, event.actor_id, event.subject_id) == ("user", users["staff"].id,
                                                                     str(pupil.id))
    assert "4B" not in str(event.details) and "daan" not in str(event.details).lower()
    assert "The changes have been saved." in client.get(f"/people/{pupil.id}").get_data(as_text=True)


def test_edit_without_changes_writes_no_audit_event(logged_in: LoggedIn, pupil: Person) -> None:
    """Saving an untouched form changes nothing and records nothing."""
    client = browser(logged_in, "staff")
    assert post(client, f"/people/{pupil.id}/edit", edit_form(pupil)).status_code == 302
    assert events("person:update") == []


def test_edit_clears_optional_fields(logged_in: LoggedIn, pupil: Person) -> None:
    """Emptying e-mail and class removes them."""
    client = browser(logged_in, "staff")
    assert post(client, f"/people/{pupil.id}/edit", edit_form(pupil, email="", group="")).status_code == 302
    saved = fresh(pupil.id)
    assert (saved.email, saved.group) == (None, None)


def test_mark_as_left_with_a_date_and_return(logged_in: LoggedIn, pupil: Person) -> None:
    """Leaving stores the date; coming back makes the person active and clears the date."""
    client = browser(logged_in, "staff")
    response = post(client, f"/people/{pupil.id}/edit",
                    edit_form(pupil, status="left", left_on="2025-07-11"))
    assert response.status_code == 302
    saved = fresh(pupil.id)
    assert (saved.status, saved.left_on) == ("left", date(2025, 7, 11))
    assert events("person:update")[-1].details == {"fields": ["left_on", "status"]}
    assert len(events("person:leave")) == 1
    page = client.get(f"/people/{pupil.id}").get_data(as_text=True)
    assert "Left school" in page
    assert listed_ids(client.get("/people/", query_string={"status": "left"})) == [pupil.id]

    response = post(client, f"/people/{pupil.id}/edit", edit_form(saved, status="active", left_on=""))
    assert response.status_code == 302
    back = fresh(pupil.id)
    assert (back.status, back.left_on) == ("active", None)
    assert len(events("person:return")) == 1


def test_return_with_the_prefilled_leaving_date_still_clears_it(
    logged_in: LoggedIn, pupil: Person
) -> None:
    """Choosing 'active' on the edit form, which still shows the old leaving date, brings the person back."""
    update_person(pupil, PersonPatch(status="left", left_on=date(2025, 1, 31)), actor=SYSTEM)
    db.session.commit()
    client = browser(logged_in, "staff")
    html = client.get(f"/people/{pupil.id}/edit").get_data(as_text=True)
    assert 'value="2025-01-31"' in html
    response = post(client, f"/people/{pupil.id}/edit", edit_form(fresh(pupil.id), status="active"))
    assert response.status_code == 302
    back = fresh(pupil.id)
    assert (back.status, back.left_on) == ("active", None)


def test_mark_as_left_without_a_date_uses_today(logged_in: LoggedIn, pupil: Person) -> None:
    """Leaving without a date means leaving today."""
    client = browser(logged_in, "staff")
    assert post(client, f"/people/{pupil.id}/edit", edit_form(pupil, status="left")).status_code == 302
    saved = fresh(pupil.id)
    assert (saved.status, saved.left_on) == ("left", utcnow().date())


@pytest.mark.parametrize("field", ["external_id", "given_name", "family_name", "birth_date"])
def test_edit_refuses_clearing_a_required_field(logged_in: LoggedIn, pupil: Person, field: str) -> None:
    """A required field may be changed but not emptied: 422, error beside it, nothing saved."""
    client = browser(logged_in, "staff")
    before = register_counts()
    response = post(client, f"/people/{pupil.id}/edit", edit_form(pupil, **{field: "", "group": "9Z"}))
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), field) == "May be changed but not cleared."
    assert register_counts() == before
    assert fresh(pupil.id).group == "3A"


def test_edit_refuses_a_number_of_someone_else(logged_in: LoggedIn, pupil: Person) -> None:
    """Taking another person's number is refused beside the number field."""
    add_person("L9999", "Other", "Person")
    client = browser(logged_in, "staff")
    response = post(client, f"/people/{pupil.id}/edit", edit_form(pupil, external_id="L9999"))
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "external_id")
    assert fresh(pupil.id).external_id == "L5001"


def test_edit_refuses_a_leaving_date_for_an_unknown_status(logged_in: LoggedIn, pupil: Person) -> None:
    """An invalid leaving date is shown beside its field."""
    client = browser(logged_in, "staff")
    response = post(client, f"/people/{pupil.id}/edit", edit_form(pupil, status="left", left_on="11-07-2025"))
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "left_on")
    assert fresh(pupil.id).status == "active"


def test_pages_of_unknown_people_are_404(logged_in: LoggedIn, app: Flask) -> None:
    """Unknown or absurd ids give 404, never 500."""
    client = browser(logged_in, "staff")
    for path in ("/people/12345", "/people/0", f"/people/{2**40}", "/people/12345/edit"):
        assert client.get(path).status_code == 404
    assert post(client, "/people/12345/edit", {"given_name": "x"}).status_code == 404
    assert post(client, "/people/12345/guardians", {"name": "x", "email": "x@example.org"}).status_code == 404


# --- guardians on the person page -----------------------------------------------------------


def test_add_a_new_guardian(logged_in: LoggedIn, pupil: Person) -> None:
    """A new guardian is created, linked and audited; the existing one stays."""
    client = browser(logged_in, "staff")
    response = post(client, f"/people/{pupil.id}/guardians",
                    {"name": "Bram Visser", "email": "Bram@Example.org", "relation": "father"})
    assert response.status_code == 302
    saved = fresh(pupil.id)
    assert {(link.guardian.email, link.relation) for link in saved.guardian_links} == {
        ("eva@example.org", None), ("bram@example.org", "father")}
    assert len(events("guardian:create")) == 2  # Eva when the fixture made her, then Bram
    assert events("guardian:link")[-1].subject_id == str(pupil.id)
    html = client.get(f"/people/{pupil.id}").get_data(as_text=True)
    assert "Bram Visser" in html and "The guardian has been saved." in html


def test_known_guardian_is_shared_by_siblings_and_survives_removal(
    logged_in: LoggedIn, pupil: Person
) -> None:
    """A guardian known by e-mail is linked, not copied; removing them from one child keeps the row."""
    sibling = add_person("L5002", "Noor", "Visser", birth_date=date(2015, 2, 3))
    client = browser(logged_in, "staff")
    response = post(client, f"/people/{sibling.id}/guardians",
                    {"name": "Eva Visser", "email": "EVA@example.org", "relation": "mother"})
    assert response.status_code == 302
    assert count(Guardian) == 1
    [eva] = db.session.execute(sa.select(Guardian)).scalars()
    assert {link.person_id for link in eva.child_links} == {pupil.id, sibling.id}
    assert len(events("guardian:create")) == 1

    response = post(client, f"/people/{pupil.id}/guardians/{eva.id}/remove")
    assert response.status_code == 302
    assert fresh(pupil.id).guardian_links == []
    db.session.expire_all()
    assert db.session.get(Guardian, eva.id) is not None
    assert [link.guardian_id for link in fresh(sibling.id).guardian_links] == [eva.id]
    [unlinked] = events("guardian:unlink")
    assert (unlinked.subject_id, unlinked.details) == (str(pupil.id), {"guardian_id": eva.id})
    assert "The guardian has been removed." in client.get(f"/people/{pupil.id}").get_data(as_text=True)


def test_removing_a_guardian_who_is_not_linked_is_404(logged_in: LoggedIn, pupil: Person) -> None:
    """Only a linked guardian can be removed; another child's guardian or an unknown id is 404."""
    other = add_person("L5003", "Mila", "de Boer", guardians=(("Kees de Boer", "kees@example.org"),))
    kees_id = other.guardian_links[0].guardian_id
    client = browser(logged_in, "staff")
    before = register_counts()
    assert post(client, f"/people/{pupil.id}/guardians/{kees_id}/remove").status_code == 404
    assert post(client, f"/people/{pupil.id}/guardians/987654/remove").status_code == 404
    assert register_counts() == before


def test_add_guardian_with_bad_input_is_refused(logged_in: LoggedIn, pupil: Person) -> None:
    """A guardian without a valid e-mail address or name is shown as an error beside the field."""
    client = browser(logged_in, "staff")
    before = register_counts()
    response = post(client, f"/people/{pupil.id}/guardians", {"name": "Bram", "email": "bram@"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert field_error(html, "email") == "Not a valid e-mail address."
    assert 'value="Bram"' in html
    response = post(client, f"/people/{pupil.id}/guardians", {"name": "", "email": "bram@example.org"})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "name")
    assert register_counts() == before


def test_add_guardian_to_a_staff_member_is_refused(logged_in: LoggedIn, app: Flask) -> None:
    """Staff members cannot get a guardian, even by a hand-made POST."""
    staff = add_person("T1", "Leraar", "Smit", role="staff", birth_date=date(1980, 1, 1))
    client = browser(logged_in, "admin")
    before = register_counts()
    response = post(client, f"/people/{staff.id}/guardians", {"name": "X", "email": "x@example.org"})
    assert response.status_code == 422
    assert register_counts() == before


# --- display ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age_shift", "decider"),
    [
        ("15", "a guardian (under 16)"),
        ("16-tomorrow", "a guardian (under 16)"),
        ("16-today", "the pupil (16 or older)"),
        ("17", "the pupil (16 or older)"),
    ],
)
def test_person_page_shows_who_decides(
    logged_in: LoggedIn, app: Flask, age_shift: str, decider: str
) -> None:
    """A guardian decides for a pupil under 16; from the 16th birthday the pupil decides."""
    today = utcnow().date()
    birth = {
        "15": years_before(today, 15),
        "16-tomorrow": years_before(today + timedelta(days=1), 16),
        "16-today": years_before(today, 16),
        "17": years_before(today, 17) - timedelta(days=30),
    }[age_shift]
    person = add_person("L8", birth_date=birth)
    html = browser(logged_in, "dpo").get(f"/people/{person.id}").get_data(as_text=True)
    assert "Decides about consent" in html
    assert decider in html
    other = "the pupil (16 or older)" if decider.startswith("a guardian") else "a guardian (under 16)"
    assert other not in html


def test_person_page_of_staff_has_no_decider_or_guardians(logged_in: LoggedIn, app: Flask) -> None:
    """Staff members decide for themselves; their page has no guardian section."""
    staff = add_person("T2", "Leraar", "Smit", role="staff", birth_date=date(1975, 3, 3))
    html = browser(logged_in, "staff").get(f"/people/{staff.id}").get_data(as_text=True)
    assert "Leraar Smit" in html
    assert "Decides about consent" not in html
    assert "Add a guardian" not in html


def test_person_page_lists_guardians_with_remove_buttons_for_writers(
    logged_in: LoggedIn, pupil: Person
) -> None:
    """Writers see each guardian with a remove form; the page shows the person's facts."""
    eva_id = pupil.guardian_links[0].guardian_id
    html = browser(logged_in, "staff").get(f"/people/{pupil.id}").get_data(as_text=True)
    assert "Daan Visser" in html and "L5001" in html and "3A" in html and "daan@school.example" in html
    assert "Eva Visser" in html and "eva@example.org" in html
    assert f'action="/people/{pupil.id}/guardians/{eva_id}/remove"' in html


def test_names_are_html_escaped(logged_in: LoggedIn) -> None:
    """A name holding markup is shown as text on the person page, the flash and the list."""
    client = browser(logged_in, "staff")
    evil = '<script>alert("x")</script>'
    response = post(client, "/people/new", pupil_form(given_name=evil, guardian1_name=f"Ma {evil}"))
    assert response.status_code == 302
    person = db.session.execute(sa.select(Person).where(Person.external_id == "L2001")).scalar_one()
    assert person.given_name == evil
    for path in (response.headers["Location"], "/people/", f"/people/{person.id}/edit"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in html, path
        assert "&lt;script&gt;alert(" in html, path
