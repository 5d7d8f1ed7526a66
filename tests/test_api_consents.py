"""The consent API: recording decisions, reading effective consent, and consent requests.

Every answer is checked against the OpenAPI document; refused input must record nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent_registry.audit import SYSTEM, AuditEvent, verify
from consent_registry.consent.models import ConsentRecipient, ConsentRecord, ConsentRequest
from consent_registry.db import db, utcnow
from consent_registry.people.models import Person
from consent_registry.people.schemas import GuardianIn, PersonCreate, PersonPatch
from consent_registry.people.service import create_person, update_person

from api_helpers import Api, api_caller, conforms
from conftest import StaffUser

LINK = re.compile(r"http://127\.0\.0\.1:5000(/c/[A-Za-z0-9_.\-]+)")


@pytest.fixture
def api(app: Flask, tokens: dict[str, str]) -> Api:
    """A function that calls the API as a role."""
    return api_caller(app, tokens, "staff")


def born_years_ago(years: int) -> date:
    """A birth date some whole years (and a bit) before today."""
    today = date.today()
    return date(today.year - years, 1, 1) if (today.month, today.day) != (1, 1) else date(
        today.year - years - 1, 6, 1)


def add_person(external_id: str, *, age: int, role: str = "pupil", email: str | None = None,
               group: str | None = "2B", guardians: tuple[tuple[str, str], ...] = ()) -> Person:
    """A person put straight into the register through the service, committed."""
    person = create_person(PersonCreate(
        external_id=external_id, given_name=f"Given{external_id}", family_name=f"Family{external_id}",
        birth_date=born_years_ago(age), role=role, email=email, group=group,  # type: ignore[arg-type]
        guardians=[GuardianIn(name=name, email=mail) for name, mail in guardians],
    ), actor=SYSTEM)
    db.session.commit()
    return person


@dataclass
class Register:
    """The people of one test: two young pupils, an older pupil and a staff member."""

    young: int
    young_guardians: list[int]
    other: int
    other_guardian: int
    older: int
    older_guardian: int
    staff: int


@pytest.fixture
def register(app: Flask) -> Register:
    """A young pupil with two guardians, another young pupil, a 17-year-old and a staff member."""
    young = add_person("Y1", age=10, guardians=(("Anna", "anna@ouders.nl"), ("Bert", "bert@ouders.nl")))
    other = add_person("Y2", age=11, guardians=(("Carla", "carla@ouders.nl"),))
    older = add_person("O1", age=17, email="o1@leerling.nl", guardians=(("Dirk", "dirk@ouders.nl"),))
    staff = add_person("S1", age=40, role="staff", email="s1@school.nl", group=None)
    return Register(
        young=young.id, young_guardians=sorted(link.guardian_id for link in young.guardian_links),
        other=other.id, other_guardian=other.guardian_links[0].guardian_id,
        older=older.id, older_guardian=older.guardian_links[0].guardian_id, staff=staff.id,
    )


def decision(**changes: Any) -> dict[str, Any]:
    """A valid body for POST /people/{id}/consents (the decider is filled in by the caller)."""
    body: dict[str, Any] = {"channel": "facebook", "decision": "granted", "method": "paper",
                            "decided_by": "self"}
    body.update(changes)
    return body


def next_31_july(today: date) -> date:
    """The default end of a grant: the end of the current school year."""
    end = date(today.year, 7, 31)
    return end if today <= end else date(today.year + 1, 7, 31)


def consent_events() -> list[AuditEvent]:
    """Audit events of recorded decisions, oldest first."""
    db.session.expire_all()
    return list(db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action.like("consent:%")).order_by(AuditEvent.id)).scalars())


def count(model: type[Any]) -> int:
    """Rows in a table."""
    return db.session.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


# --- recording decisions -------------------------------------------------------------------


def test_each_decider_kind_records_and_get_shows_it(api: Api, register: Register,
                                                     users: dict[str, StaffUser]) -> None:
    """Guardian (under 16), pupil (16+) and staff member (self) each record with their method."""
    guardian = register.young_guardians[0]
    cases = [
        (register.young, f"guardian:{guardian}", "paper"),
        (register.older, "pupil", "import"),
        (register.staff, "self", "in-person"),
    ]
    today = utcnow().date()
    for person_id, decided_by, method in cases:
        created = conforms(api("POST", f"/people/{person_id}/consents",
                               json=decision(decided_by=decided_by, method=method, note="form 12")))
        assert created.status_code == 201, created.get_json()
        row = created.get_json()
        assert (row["person_id"], row["decided_by"], row["method"]) == (person_id, decided_by, method)
        assert row["entered_by"] == users["staff"].id and row["note"] == "form 12"
        assert row["valid_until"] == next_31_july(today).isoformat() and row["has_scan"] is False

        shown = conforms(api("GET", f"/people/{person_id}/consents")).get_json()
        assert set(shown["effective"]) == {"facebook", "website", "newsletter", "schoolguide",
                                           "biometric"}
        assert shown["effective"]["facebook"] == {
            "state": "granted", "valid_until": next_31_july(today).isoformat(),
            "record_ids": [row["id"]]}
        assert shown["effective"]["biometric"] == {"state": "none", "valid_until": None,
                                                   "record_ids": []}
        assert [r["id"] for r in shown["history"]] == [row["id"]]

    events = consent_events()
    assert [e.action for e in events] == ["consent:grant"] * 3
    assert all(e.actor_type == "user" and e.actor_id == users["staff"].id for e in events)
    assert all(e.details["entered_by"] == users["staff"].id for e in events)
    assert [e.details["method"] for e in events] == ["paper", "import", "in-person"]
    assert events[0].details["guardian_id"] == guardian and events[0].details["decider"] == "guardian"
    assert verify().ok


def test_biometric_is_decided_separately(api: Api, register: Register) -> None:
    """A grant for biometric matching changes only that purpose."""
    row = conforms(api("POST", f"/people/{register.staff}/consents",
                       json=decision(channel="biometric"))).get_json()
    effective = conforms(api("GET", f"/people/{register.staff}/consents")).get_json()["effective"]
    assert effective["biometric"]["state"] == "granted" and effective["biometric"]["record_ids"] == [
        row["id"]]
    assert {effective[c]["state"] for c in ("facebook", "website", "newsletter", "schoolguide")} == {
        "none"}


def test_refusal_and_withdrawal_are_new_records_and_audited(api: Api, register: Register,
                                                           users: dict[str, StaffUser]) -> None:
    """Grant, refuse, withdraw: three records, history oldest first, each audited with its action."""
    path = f"/people/{register.staff}/consents"
    ids = []
    for choice in ("granted", "refused", "withdrawn"):
        created = conforms(api("POST", path, role="admin", json=decision(decision=choice)))
        assert created.status_code == 201
        assert created.get_json()["valid_until"] is None or choice == "granted"
        ids.append(created.get_json()["id"])
        effective = conforms(api("GET", path, role="dpo")).get_json()["effective"]["facebook"]
        assert effective["state"] == choice and effective["record_ids"] == [ids[-1]]
        assert (effective["valid_until"] is None) == (choice != "granted")
    history = conforms(api("GET", path)).get_json()["history"]
    assert [r["id"] for r in history] == ids
    assert [r["decision"] for r in history] == ["granted", "refused", "withdrawn"]
    events = consent_events()
    assert [e.action for e in events] == ["consent:grant", "consent:refuse", "consent:withdraw"]
    assert {e.actor_id for e in events} == {users["admin"].id}
    assert [e.details["record_id"] for e in events] == ids


def test_one_guardians_refusal_outweighs_the_others_grant(api: Api, register: Register) -> None:
    """Two guardians disagree: refused, and both records are named."""
    first, second = register.young_guardians
    path = f"/people/{register.young}/consents"
    a = api("POST", path, json=decision(decided_by=f"guardian:{first}")).get_json()["id"]
    b = api("POST", path, json=decision(decided_by=f"guardian:{second}", decision="refused")
            ).get_json()["id"]
    effective = conforms(api("GET", path)).get_json()["effective"]["facebook"]
    assert effective["state"] == "refused" and effective["record_ids"] == [b]
    assert a != b


# --- refused decisions -------------------------------------------------------------------------

Case = Callable[[Register], tuple[int, dict[str, Any]]]
REFUSED: list[tuple[str, Case, str | None]] = [
    ("guardian for a 16+ pupil",
     lambda r: (r.older, decision(decided_by=f"guardian:{r.older_guardian}")), "decided_by"),
    ("pupil under 16", lambda r: (r.young, decision(decided_by="pupil")), "decided_by"),
    ("self for a pupil", lambda r: (r.young, decision(decided_by="self")), "decided_by"),
    ("pupil for staff", lambda r: (r.staff, decision(decided_by="pupil")), "decided_by"),
    ("guardian for staff",
     lambda r: (r.staff, decision(decided_by=f"guardian:{r.older_guardian}")), "decided_by"),
    ("guardian of another pupil",
     lambda r: (r.young, decision(decided_by=f"guardian:{r.other_guardian}")), "decided_by"),
    ("guardian that does not exist",
     lambda r: (r.young, decision(decided_by="guardian:9999999999")), "decided_by"),
    ("unknown channel", lambda r: (r.staff, decision(channel="tiktok")), "channel"),
    ("e-mail link through the API", lambda r: (r.staff, decision(method="email-link")), "method"),
    ("unknown decision", lambda r: (r.staff, decision(decision="maybe")), "decision"),
]


@pytest.mark.parametrize(("label", "case", "field"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_decisions_name_the_field_and_record_nothing(
        api: Api, register: Register, label: str, case: Case, field: str | None) -> None:
    """Deciders who do not decide, unknown channels and methods: 422 and nothing stored."""
    person_id, body = case(register)
    before = count(AuditEvent)
    response = conforms(api("POST", f"/people/{person_id}/consents", json=body),
                        check_request=False)
    assert response.status_code == 422, (label, response.get_json())
    assert field in response.get_json()["error"]["fields"], response.get_json()
    assert count(ConsentRecord) == 0 and count(AuditEvent) == before


def test_no_decision_for_someone_who_left(api: Api, register: Register) -> None:
    """A person who left gets no new decisions: 422 person_left, nothing stored."""
    person = db.session.get(Person, register.staff)
    update_person(person, PersonPatch(status="left", left_on=utcnow().date()), actor=SYSTEM)
    db.session.commit()
    before = count(AuditEvent)
    response = conforms(api("POST", f"/people/{register.staff}/consents", json=decision()))
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "person_left"
    assert count(ConsentRecord) == 0 and count(AuditEvent) == before
    effective = conforms(api("GET", f"/people/{register.staff}/consents")).get_json()["effective"]
    assert {e["state"] for e in effective.values()} == {"none"}


BAD_BODIES = [
    ("not json", "application/json", 400, "malformed_json"),
    ('{"channel": ', "application/json", 400, "malformed_json"),
    ("[1]", "application/json", 400, "not_an_object"),
    ('{"channel": NaN}', "application/json", 400, "malformed_json"),
    ("channel=facebook", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
]


@pytest.mark.parametrize(("raw", "content_type", "status", "code"), BAD_BODIES)
def test_unreadable_bodies(api: Api, register: Register, raw: str, content_type: str, status: int,
                           code: str) -> None:
    """Bodies that are not a JSON object get 400 or 415 on both write routes; nothing is stored."""
    for path in (f"/people/{register.staff}/consents", "/consent-requests"):
        response = conforms(api("POST", path, data=raw.encode(), content_type=content_type),
                            check_request=False)
        assert response.status_code == status, (path, response.get_json())
        assert response.get_json()["error"]["code"] == code
    assert count(ConsentRecord) == 0 and count(ConsentRequest) == 0


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"channel": 5}, "channel"),
    ({"channel": ""}, "channel"),
    ({"channel": ["facebook"]}, "channel"),
    ({"decision": True}, "decision"),
    ({"method": None}, "method"),
    ({"decided_by": "guardian:"}, "decided_by"),
    ({"decided_by": "guardian:abc"}, "decided_by"),
    ({"decided_by": "Guardian:1"}, "decided_by"),
    ({"decided_by": 7}, "decided_by"),
    ({"note": "x" * 501}, "note"),
    ({"note": 3}, "note"),
    ({"surprise": 1}, "surprise"),
    ({"entered_by": 1}, "entered_by"),
]


@pytest.mark.parametrize(("changes", "field"), BAD_FIELDS)
def test_invalid_fields_are_named(api: Api, register: Register, changes: dict[str, Any],
                                  field: str) -> None:
    """Wrong types, unknown fields and impossible values: 422 naming the field, nothing stored."""
    response = conforms(api("POST", f"/people/{register.staff}/consents", json=decision(**changes)),
                        check_request=False)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid" and field in error["fields"], error
    assert count(ConsentRecord) == 0


@pytest.mark.parametrize("missing", ["channel", "decision", "method", "decided_by"])
def test_missing_fields_are_named(api: Api, register: Register, missing: str) -> None:
    """Every field but the note is required."""
    body = decision()
    del body[missing]
    response = conforms(api("POST", f"/people/{register.staff}/consents", json=body),
                        check_request=False)
    assert response.status_code == 422
    assert missing in response.get_json()["error"]["fields"]
    assert count(ConsentRecord) == 0


@pytest.mark.parametrize("person_id", ["424242", "0", "99999999999999999999"])
def test_unknown_people_are_404(api: Api, register: Register, person_id: str) -> None:
    """GET and POST for a person that does not exist: 404 in the error shape."""
    for method in ("GET", "POST"):
        response = conforms(api(method, f"/people/{person_id}/consents", json=decision()),
                            check_request=False)
        assert response.status_code == 404, (method, response.get_json())
        assert response.get_json()["error"]["code"] == "not_found"
    assert count(ConsentRecord) == 0


def test_roles(api: Api, register: Register, client: FlaskClient) -> None:
    """Communications and the DPO may read consents but not record them; no token is 401."""
    path = f"/people/{register.staff}/consents"
    for role in ("communications", "dpo"):
        refused = conforms(api("POST", path, role=role, json=decision()), check_request=False)
        assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
        assert conforms(api("GET", path, role=role)).status_code == 200
    assert count(ConsentRecord) == 0
    for role in ("admin", "staff"):
        assert conforms(api("POST", path, role=role, json=decision())).status_code == 201
    anonymous = client.get(f"/api/v1{path}")
    assert anonymous.status_code == 401 and anonymous.get_json()["error"]["code"] == "unauthorized"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=3),
    max_leaves=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["channel", "decision", "method", "decided_by", "note"]), value=json_values)
def test_no_body_ever_gives_a_500(api: Api, register: Register, key: str, value: Any) -> None:
    """Near-valid bodies with any JSON in one field get a documented answer, never a 500."""
    response = api("POST", f"/people/{register.staff}/consents", json=decision(**{key: value}))
    assert response.status_code in (201, 422), response.get_json()
    conforms(response, check_request=False)


# --- append-only records ------------------------------------------------------------------------


def test_records_cannot_be_changed_or_deleted(api: Api, register: Register) -> None:
    """The ORM refuses updates and deletes; the database refuses an UPDATE statement too."""
    record_id = api("POST", f"/people/{register.staff}/consents", json=decision()).get_json()["id"]
    row = db.session.get(ConsentRecord, record_id)
    row.decision = "refused"
    with pytest.raises(RuntimeError, match="never updated"):
        db.session.flush()
    db.session.rollback()

    db.session.delete(db.session.get(ConsentRecord, record_id))
    with pytest.raises(RuntimeError, match="never deleted"):
        db.session.flush()
    db.session.rollback()

    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        db.session.execute(sa.text("UPDATE consent_records SET decision = 'refused' WHERE id = :id"),
                           {"id": record_id})
    db.session.rollback()
    db.session.expire_all()
    assert db.session.get(ConsentRecord, record_id).decision == "granted"


# --- consent requests -------------------------------------------------------------------------


def outbox(app: Flask) -> list[Any]:
    """The messages the default outbox mailer wrote, parsed."""
    folder = Path(app.instance_path) / "outbox"
    files = sorted(folder.glob("*.eml")) if folder.exists() else []
    return [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]


def test_request_is_created_sent_and_followed(app: Flask, api: Api, register: Register,
                                              users: dict[str, StaffUser]) -> None:
    """202 with the recipients; the outbox gets one mail per decider; GET shows the progress."""
    no_address = add_person("S2", age=30, role="staff", group=None)
    body = {"person_ids": [register.young, register.older, no_address.id],
            "channels": ["facebook", "biometric"], "note": "schoolreis"}
    created = conforms(api("POST", "/consent-requests", role="communications", json=body))
    assert created.status_code == 202, created.get_json()
    answer = created.get_json()
    assert answer["recipients"] == 4  # two guardians, the 17-year-old, the staff member
    assert created.headers["Location"].endswith(f"/api/v1/consent-requests/{answer['id']}")

    mails = outbox(app)
    assert sorted(m["To"] for m in mails) == ["anna@ouders.nl", "bert@ouders.nl", "o1@leerling.nl"]
    assert all(m["X-Consent-Request"] == str(answer["id"]) for m in mails)

    shown = conforms(api("GET", f"/consent-requests/{answer['id']}", role="dpo")).get_json()
    assert shown["channels"] == ["facebook", "biometric"] and shown["note"] == "schoolreis"
    assert shown["progress"] == {"total": 4, "pending": 0, "sending": 0, "sent": 3, "failed": 0,
                                 "skipped": 1, "opened": 0, "answered": 0}
    by_decider = {r["decider"]: r for r in shown["recipients"]}
    guardians = [f"guardian:{g}" for g in register.young_guardians]
    assert set(by_decider) == {*guardians, "pupil", "self"}
    assert {by_decider[k]["state"] for k in (*guardians, "pupil")} == {"sent"}
    assert by_decider["self"]["state"] == "skipped" and by_decider["self"]["last_error"]
    assert by_decider["pupil"]["person_id"] == register.older

    created_event = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "consent_request:create")).scalar_one()
    assert created_event.actor_id == users["communications"].id
    assert created_event.details["without_address"] == 1


def test_recipient_states_follow_the_links(app: Flask, api: Api, register: Register) -> None:
    """Opening a mail's link makes it "opened", answering "answered"; unanswered links expire."""
    created = api("POST", "/consent-requests", json={"person_ids": [register.young],
                                                      "channels": ["facebook"]}).get_json()
    mails = {m["To"]: m for m in outbox(app)}
    link = LINK.search(mails["anna@ouders.nl"].get_body(preferencelist=("plain",)).get_content())
    assert link is not None
    parent = app.test_client()
    page = parent.get(link.group(1))
    assert page.status_code == 200

    def states() -> dict[str, str]:
        """Each recipient's state, as the API shows it."""
        shown = conforms(api("GET", f"/consent-requests/{created['id']}")).get_json()
        return {r["decider"]: r["state"] for r in shown["recipients"]}

    anna, bert = (f"guardian:{g}" for g in register.young_guardians)
    assert states() == {anna: "opened", bert: "sent"}
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert token is not None
    answered = parent.post(link.group(1), data={"choice_facebook": "granted",
                                                "csrf_token": token.group(1)})
    assert answered.status_code == 200
    assert states() == {anna: "answered", bert: "sent"}
    shown = api("GET", f"/consent-requests/{created['id']}").get_json()
    assert (shown["progress"]["opened"], shown["progress"]["answered"]) == (1, 1)
    effective = api("GET", f"/people/{register.young}/consents").get_json()["effective"]["facebook"]
    assert effective["state"] == "granted"

    with time_machine.travel(utcnow() + timedelta(days=app.config["CONSENT_LINK_DAYS"], hours=1)):
        assert states() == {anna: "answered", bert: "expired"}


def test_request_mails_go_out_over_smtp(api: Api, register: Register, smtp: Any) -> None:
    """With SMTP configured, the request reaches the guardians' mailboxes."""
    created = api("POST", "/consent-requests", json={"person_ids": [register.young],
                                                      "channels": ["website"]})
    assert created.status_code == 202 and created.get_json()["recipients"] == 2
    messages = smtp.wait_for_messages(2)
    assert sorted(m["To"] for m in messages) == ["anna@ouders.nl", "bert@ouders.nl"]
    shown = conforms(api("GET", f"/consent-requests/{created.get_json()['id']}")).get_json()
    assert shown["progress"]["sent"] == 2
    assert all(r["sent_at"] for r in shown["recipients"])


def test_people_who_left_are_not_asked(api: Api, register: Register) -> None:
    """A person who left is skipped; the recipients counted are the remaining ones."""
    person = db.session.get(Person, register.older)
    update_person(person, PersonPatch(status="left", left_on=utcnow().date()), actor=SYSTEM)
    db.session.commit()
    created = conforms(api("POST", "/consent-requests",
                           json={"person_ids": [register.older, register.other],
                                 "channels": ["facebook"]}))
    assert created.status_code == 202 and created.get_json()["recipients"] == 1
    assert [r.person_id for r in db.session.execute(sa.select(ConsentRecipient)).scalars()] == [
        register.other]


def request_body(**changes: Any) -> dict[str, Any]:
    """A valid body for POST /consent-requests, with changes."""
    body: dict[str, Any] = {"person_ids": [1], "channels": ["facebook"]}
    body.update(changes)
    return body


BAD_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({"person_ids": []}, "person_ids"),
    ({"person_ids": [424242]}, "person_ids"),
    ({"person_ids": [99999999999999999999]}, "person_ids"),
    ({"person_ids": "1"}, "person_ids"),
    ({"person_ids": ["x"]}, "person_ids"),
    ({"person_ids": None}, "person_ids"),
    ({"channels": []}, "channels"),
    ({"channels": ["tiktok"]}, "channels"),
    ({"channels": "facebook"}, "channels"),
    ({"channels": [5]}, "channels"),
    ({"note": "x" * 301}, "note"),
    ({"note": 12}, "note"),
    ({"media_id": 0}, "media_id"),
    ({"media_id": "one"}, "media_id"),
    ({"media_id": 99999999999999999999}, "media_id"),
    ({"urgent": True}, "urgent"),
]


@pytest.mark.parametrize(("changes", "field"), BAD_REQUESTS)
def test_bad_requests_name_the_field_and_store_nothing(api: Api, register: Register,
                                                       changes: dict[str, Any], field: str) -> None:
    """Empty or unknown people, unknown channels, long notes, wrong types: 422, no request."""
    before = count(AuditEvent)
    body = {**request_body(person_ids=[register.young]), **changes}
    response = conforms(api("POST", "/consent-requests", json=body), check_request=False)
    assert response.status_code == 422, response.get_json()
    fields = response.get_json()["error"]["fields"]
    assert any(name == field or name.startswith(f"{field}.") for name in fields), fields
    assert count(ConsentRequest) == 0 and count(ConsentRecipient) == 0
    assert count(AuditEvent) == before


def test_missing_request_fields(api: Api, register: Register) -> None:
    """person_ids and channels are required."""
    response = conforms(api("POST", "/consent-requests", json={}), check_request=False)
    assert response.status_code == 422
    assert {"person_ids", "channels"} <= set(response.get_json()["error"]["fields"])
    assert count(ConsentRequest) == 0


def test_dpo_cannot_send_requests(api: Api, register: Register) -> None:
    """Only admin, staff and communications ask for consent."""
    response = conforms(api("POST", "/consent-requests", role="dpo",
                            json=request_body(person_ids=[register.young])), check_request=False)
    assert response.status_code == 403 and count(ConsentRequest) == 0


@pytest.mark.parametrize("request_id", ["424242", "0", "99999999999999999999"])
def test_unknown_requests_are_404(api: Api, register: Register, request_id: str) -> None:
    """A request that does not exist: 404 in the error shape."""
    response = conforms(api("GET", f"/consent-requests/{request_id}"), check_request=False)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
