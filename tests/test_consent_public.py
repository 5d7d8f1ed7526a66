"""The public pages reached from e-mailed links (answer, withdraw, manage, ask for a link) and their abuse.

Opening a link records nothing but the opening; decisions need a POST with a CSRF token and an
explicit answer for exactly the asked channels; dead, forged, used or outgrown links get a friendly
page that names nobody; the pages leak nothing to other sites and are rate-limited per address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask, current_app
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer

from consent_registry.audit import SYSTEM, AuditEvent
from consent_registry.consent.links import (
    ANSWER_SALT,
    DeciderRef,
    answer_token,
    manage_token,
    withdraw_token,
)
from consent_registry.consent.models import ConsentRecipient, ConsentRecord
from consent_registry.consent.rules import default_valid_until
from consent_registry.consent.service import effective_for
from consent_registry.db import db
from consent_registry.people.models import Guardian, Person
from consent_registry.people.schemas import PersonCreate, PersonPatch
from consent_registry.people.service import create_person, update_person

from conftest import bearer, make_app

ANNA, BERT, CARL = "anna@ouders.example.nl", "bert@ouders.example.nl", "carl@ouders.example.nl"
NAMES = ("Noor", "Visser", "Anna", "Bert")
LINK = re.compile(r"http://127\.0\.0\.1:5000(/[cmw]/[A-Za-z0-9_.\-]+)")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ENGLISH = {"HTTP_ACCEPT_LANGUAGE": "en"}


# --- helpers -------------------------------------------------------------------------------------

class _Tags(HTMLParser):
    """Collects every start tag with its attributes."""

    def __init__(self) -> None:
        """Start with no tags."""
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Remember one tag."""
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """The start tags of a page, parsed."""
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def _radios(html: str) -> dict[str, list[tuple[str, bool]]]:
    """Radio buttons by name: (value, pre-checked) for each."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for tag, attrs in _tags(html):
        if tag == "input" and attrs.get("type") == "radio":
            found.setdefault(attrs["name"] or "", []).append((attrs["value"] or "", "checked" in attrs))
    return found


def _inner(html: str, tag: str) -> list[str]:
    """The unescaped text of every simple `<tag>text</tag>` in a page."""
    return [unescape(text) for text in re.findall(rf"<{tag}>([^<]+)</{tag}>", html)]


def _csrf(html: str) -> str:
    """The CSRF token in a rendered page."""
    match = CSRF.search(html)
    assert match, html[:2000]
    return match.group(1)


def _browser(app: Flask) -> FlaskClient:
    """A browser that prefers English, so the page texts can be checked."""
    client = app.test_client()
    client.environ_base.update(ENGLISH)
    return client


def _submit(client: FlaskClient, path: str, data: dict[str, str]) -> Any:
    """Open a page as a browser would, then post its form with the page's CSRF token."""
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)
    return client.post(path, data={**data, "csrf_token": _csrf(page.get_data(as_text=True))})


def _text(message: EmailMessage) -> str:
    """The plain-text part of a message."""
    return message.get_body(preferencelist=("plain",)).get_content()


def _links(message: EmailMessage) -> list[str]:
    """The site paths linked from a message, in order."""
    return LINK.findall(_text(message))


def _born(years: int, days: int = 0) -> str:
    """A birth date so that the person turns `years` in `days` days (negative: that long ago)."""
    birthday = datetime.now(UTC).date() + timedelta(days=days)
    try:
        return birthday.replace(year=birthday.year - years).isoformat()
    except ValueError:  # 29 February
        return date(birthday.year - years, 3, 1).isoformat()


def _pupil(external_id: str, given: str, family: str, born: str,
           guardians: list[tuple[str, str]]) -> int:
    """A pupil with guardians in the register; returns the id."""
    person = create_person(PersonCreate.model_validate({
        "external_id": external_id, "given_name": given, "family_name": family, "birth_date": born,
        "role": "pupil", "guardians": [{"name": n, "email": e} for n, e in guardians],
    }), actor=SYSTEM)
    db.session.commit()
    return person.id


def _ask(app: Flask, smtp: Any, token: str, pid: int, channels: list[str],
         note: str = "schoolreis naar Berlijn, mei 2027") -> dict[str, list[str]]:
    """Send a consent request through the API; the link paths of each request mail by address."""
    smtp.clear()
    sent = app.test_client().post("/api/v1/consent-requests", headers=bearer(token),
                                  json={"person_ids": [pid], "channels": channels, "note": note})
    assert sent.status_code == 202, sent.get_data(as_text=True)
    messages = smtp.wait_for_messages(sent.get_json()["recipients"])
    smtp.clear()
    return {m["To"]: _links(m) for m in messages}


def _records(pid: int) -> list[ConsentRecord]:
    """Every consent record of a person, fresh from the database."""
    db.session.expire_all()
    return list(db.session.execute(
        sa.select(ConsentRecord).where(ConsentRecord.person_id == pid).order_by(ConsentRecord.id)
    ).scalars())


def _recipient(pid: int, email: str) -> ConsentRecipient:
    """The recipient row of one address for a person, fresh from the database."""
    db.session.expire_all()
    return db.session.execute(sa.select(ConsentRecipient).where(
        ConsentRecipient.person_id == pid, ConsentRecipient.email == email)).scalar_one()


def _state(pid: int, channel: str) -> str:
    """A person's effective consent for a channel now."""
    db.session.expire_all()
    return effective_for(db.session.get(Person, pid), channel).state


def _names_absent(html: str) -> None:
    """The page names neither the pupil nor a guardian."""
    for name in NAMES:
        assert name not in html, f"{name} shown on {html[:3000]}"


def _token(path: str) -> str:
    """The token at the end of a link path."""
    return path.rsplit("/", 1)[1]


@dataclass(frozen=True, slots=True)
class Family:
    """Noor Visser, 14, guardians Anna and Bert, asked about facebook and website."""

    pid: int
    anna: list[str]  # Anna's request-mail links: answer, manage
    bert: list[str]


@pytest.fixture
def family(app: Flask, smtp: Any, tokens: dict[str, str]) -> Family:
    """A pupil whose two guardians were each mailed a request for facebook and website."""
    pid = _pupil("S1", "Noor", "Visser", _born(14, -40),
                 [("Anna Visser", ANNA), ("Bert Visser", BERT)])
    links = _ask(app, smtp, tokens["staff"], pid, ["facebook", "website"])
    assert [p[:3] for p in links[ANNA]] == ["/c/", "/m/"]
    return Family(pid, links[ANNA], links[BERT])


# --- opening and answering -----------------------------------------------------------------------

def test_opening_the_link_records_only_that_it_was_opened(app: Flask, family: Family) -> None:
    """GET shows the page, records no decision, sets opened_at once and audits one open."""
    browser = _browser(app)
    assert _recipient(family.pid, ANNA).opened_at is None
    first = browser.get(family.anna[0])
    assert first.status_code == 200
    opened = _recipient(family.pid, ANNA).opened_at
    assert opened is not None and _recipient(family.pid, ANNA).answered_at is None
    assert browser.get(family.anna[0]).status_code == 200
    assert _recipient(family.pid, ANNA).opened_at == opened  # the first opening counts
    assert _records(family.pid) == []
    events = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "consent_link:open")).scalars().all()
    assert [(e.actor_type, e.details["recipient_id"]) for e in events] == [
        ("guardian", _recipient(family.pid, ANNA).id)]


def test_answer_page_offers_one_unticked_choice_per_asked_channel(app: Flask, family: Family) -> None:
    """Each asked channel is its own yes/no with nothing pre-checked; the facts are on the page."""
    html = _browser(app).get(family.anna[0]).get_data(as_text=True)
    assert _radios(html) == {
        "choice_facebook": [("granted", False), ("refused", False)],
        "choice_website": [("granted", False), ("refused", False)],
    }
    legends = _inner(html, "legend")
    assert legends == ["The school's Facebook page", "The school's website"]
    assert "Occasion: schoolreis naar Berlijn, mei 2027" in html
    assert "is public: anyone can see it" in html
    until = default_valid_until(decided_on=datetime.now(UTC).date(), rule=app.config["CONSENT_VALIDITY"])
    assert until is not None and f"A yes counts until 31 July {until.year}." in html  # en-GB
    assert "You can withdraw at any time" in html and "No answer means no." in html
    assert "Newsletter" not in html  # not asked


@pytest.mark.parametrize("token", [None, "", "not-the-token"])
def test_a_decision_needs_a_valid_csrf_token(app: Flask, family: Family, token: str | None) -> None:
    """A POST without or with a wrong CSRF token is refused with 400 and records nothing."""
    browser = _browser(app)
    assert browser.get(family.anna[0]).status_code == 200  # the session has a real token
    data = {"choice_facebook": "granted", "choice_website": "granted"}
    if token is not None:
        data["csrf_token"] = token
    response = browser.post(family.anna[0], data=data)
    assert response.status_code == 400
    assert _records(family.pid) == [] and _recipient(family.pid, ANNA).answered_at is None


@pytest.mark.parametrize("data", [
    {},
    {"choice_facebook": "granted"},
    {"choice_facebook": "granted", "choice_website": ""},
    {"choice_facebook": "granted", "choice_website": "granted", "choice_newsletter": "granted"},
    {"choice_facebook": "granted", "choice_website": "granted", "choice_biometric": "refused"},
    {"choice_facebook": "yes", "choice_website": "granted"},
    {"choice_facebook": "withdrawn", "choice_website": "granted"},
    {"choice_facebook": "GRANTED", "choice_website": "refused"},
], ids=["nothing", "missing", "empty", "not-asked", "not-asked-biometric", "yes", "withdrawn", "case"])
def test_incomplete_or_foreign_answers_record_nothing(app: Flask, family: Family,
                                                      data: dict[str, str]) -> None:
    """A missing answer, a channel that was not asked or an unknown value gives 422 and no record."""
    browser = _browser(app)
    response = _submit(browser, family.anna[0], data)
    assert response.status_code == 422
    assert "Please choose yes or no for every channel." in response.get_data(as_text=True)
    assert _records(family.pid) == [] and _recipient(family.pid, ANNA).answered_at is None
    # The link still works for a proper answer.
    fixed = _submit(browser, family.anna[0], {"choice_facebook": "granted", "choice_website": "refused"})
    assert fixed.status_code == 200
    assert sorted((r.channel, r.decision) for r in _records(family.pid)) == [
        ("facebook", "granted"), ("website", "refused")]


def test_a_channel_that_was_not_asked_is_refused(app: Flask, smtp: Any, tokens: dict[str, str]) -> None:
    """With only facebook asked, a website field is rejected (422) and nothing is recorded."""
    pid = _pupil("S2", "Noor", "Visser", _born(14, -40), [("Anna Visser", ANNA)])
    [answer, _manage] = _ask(app, smtp, tokens["staff"], pid, ["facebook"])[ANNA]
    html = _browser(app).get(answer).get_data(as_text=True)
    assert list(_radios(html)) == ["choice_facebook"]
    response = _submit(_browser(app), answer, {"choice_facebook": "granted", "choice_website": "granted"})
    assert response.status_code == 422
    assert _records(pid) == []


def test_used_link_shows_a_friendly_page_without_names(app: Flask, family: Family) -> None:
    """After answering, the link is used: 410 on GET and POST, nobody named, nothing more recorded."""
    browser = _browser(app)
    done = _submit(browser, family.anna[0], {"choice_facebook": "granted", "choice_website": "granted"})
    assert done.status_code == 200 and len(_records(family.pid)) == 2
    again = browser.get(family.anna[0])
    html = again.get_data(as_text=True)
    assert again.status_code == 410 and "already been used" in html
    _names_absent(html)
    repost = browser.post(family.anna[0], data={"choice_facebook": "refused", "choice_website": "refused",
                                                "csrf_token": _csrf(html)})
    assert repost.status_code == 410
    _names_absent(repost.get_data(as_text=True))
    assert len(_records(family.pid)) == 2


def _flip(token: str, index: int) -> str:
    """The token with one character changed."""
    old = token[index]
    return token[:index] + ("B" if old == "A" else "A") + token[index + 1:]


BAD_TOKENS: dict[str, Callable[[str, int], str]] = {
    "tampered-payload": lambda t, pid: _flip(t, 0),
    "tampered-signature": lambda t, pid: _flip(t, len(t) - 8),
    "manage-token": lambda t, pid: manage_token(DeciderRef("guardian", 1)),
    "withdraw-token": lambda t, pid: withdraw_token(DeciderRef("guardian", 1), pid),
    "random": lambda t, pid: "Zm9vYmFy.aGVsbG8.d29ybGQ",
    "unknown-recipient": lambda t, pid: answer_token(987_654),
    "not-a-number": lambda t, pid: URLSafeTimedSerializer(
        current_app.config["SECRET_KEY"], salt=ANSWER_SALT).dumps("1"),
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_forged_answer_links_show_a_friendly_page(app: Flask, family: Family, kind: str) -> None:
    """Tampered, foreign-salt, random and unknown tokens give 404 without names, on GET and POST."""
    token = BAD_TOKENS[kind](_token(family.anna[0]), family.pid)
    browser = _browser(app)
    page = browser.get(f"/c/{token}")
    html = page.get_data(as_text=True)
    assert page.status_code == 404 and "This link is not valid." in html
    _names_absent(html)
    posted = browser.post(f"/c/{token}", data={"choice_facebook": "granted", "choice_website": "granted",
                                              "csrf_token": _csrf(html)})
    assert posted.status_code == 404
    _names_absent(posted.get_data(as_text=True))
    assert _records(family.pid) == [] and _recipient(family.pid, ANNA).opened_at is None


@pytest.mark.parametrize("path", ["/m/{answer}", "/w/{answer}", "/w/{manage}", "/m/{manage_flipped}",
                                  "/w/not-a-token", "/m/not-a-token"])
def test_forged_manage_and_withdraw_links_show_a_friendly_page(app: Flask, family: Family,
                                                                path: str) -> None:
    """Manage and withdraw pages refuse tokens of other kinds and forgeries without naming anybody."""
    answer, manage = _token(family.anna[0]), _token(family.anna[1])
    url = path.format(answer=answer, manage=manage, manage_flipped=_flip(manage, len(manage) - 8))
    browser = _browser(app)
    page = browser.get(url)
    html = page.get_data(as_text=True)
    assert page.status_code == 404 and "This link is not valid." in html
    _names_absent(html)
    posted = browser.post(url, data={f"d_{family.pid}_facebook": "granted", "csrf_token": _csrf(html)})
    assert posted.status_code == 404
    assert _records(family.pid) == []


def test_expired_answer_link_shows_a_friendly_page(app: Flask, family: Family) -> None:
    """Past CONSENT_LINK_DAYS the link is expired: 410 without names, never 500, nothing recorded."""
    later = datetime.now(UTC) + timedelta(days=app.config["CONSENT_LINK_DAYS"], hours=1)
    with time_machine.travel(later, tick=True):
        browser = _browser(app)
        page = browser.get(family.anna[0])
        html = page.get_data(as_text=True)
        assert page.status_code == 410 and "This link is too old." in html
        _names_absent(html)
        posted = browser.post(family.anna[0], data={
            "choice_facebook": "granted", "choice_website": "granted", "csrf_token": _csrf(html)})
        assert posted.status_code == 410
        _names_absent(posted.get_data(as_text=True))
    assert _records(family.pid) == [] and _recipient(family.pid, ANNA).opened_at is None


@pytest.mark.parametrize(("days", "status"), [(13, 200), (13.9, 200), (14.05, 410), (15, 410)])
def test_an_answer_link_lives_fourteen_days(app: Flask, family: Family, days: float, status: int) -> None:
    """Without a setting a link works for 14 days: on day 13 it opens and answers, after 14 it is refused."""
    assert app.config["CONSENT_LINK_DAYS"] == 14
    with time_machine.travel(datetime.now(UTC) + timedelta(days=days), tick=True):
        browser = _browser(app)
        page = browser.get(family.anna[0])
        html = page.get_data(as_text=True)
        assert page.status_code == status
        posted = browser.post(family.anna[0], data={
            "choice_facebook": "granted", "choice_website": "refused", "csrf_token": _csrf(html)})
        assert posted.status_code == status
    assert len(_records(family.pid)) == (2 if status == 200 else 0)


def _client_hash(app: Flask, address: str, agent: str) -> str:
    """The keyed hash of a client's address and browser, computed here independently of the code."""
    key = app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{address}\n{agent}".encode(), hashlib.sha256).hexdigest()


def test_emailed_decisions_keep_a_keyed_hash_of_address_and_browser(app: Flask, family: Family) -> None:
    """Answer, withdraw and manage each store HMAC(secret, address, user agent): another browser or
    another address gives another hash, and neither is kept in the clear."""
    def device(address: str, agent: str) -> FlaskClient:
        browser = _browser(app)
        browser.environ_base.update(REMOTE_ADDR=address, HTTP_USER_AGENT=agent)
        return browser

    phone = device("203.0.113.7", "Phone/1.0 (Android)")
    done = _submit(phone, family.anna[0], {"choice_facebook": "granted", "choice_website": "granted"})
    assert done.status_code == 200
    on_phone = _client_hash(app, "203.0.113.7", "Phone/1.0 (Android)")
    assert [r.client_hash for r in _records(family.pid)] == [on_phone, on_phone]

    _submit(device("203.0.113.7", "Laptop/2.0"), family.bert[0],
            {"choice_facebook": "refused", "choice_website": "refused"})
    on_laptop = _client_hash(app, "203.0.113.7", "Laptop/2.0")
    assert [r.client_hash for r in _records(family.pid)[2:]] == [on_laptop, on_laptop]
    assert on_laptop != on_phone

    hrefs = [a.get("href") or "" for t, a in _tags(done.get_data(as_text=True)) if t == "a"]
    withdraw = next(h for h in hrefs if h.startswith("/w/"))
    manage = next(h for h in hrefs if h.startswith("/m/") and h != "/m/")
    assert _submit(device("198.51.100.2", "Phone/1.0 (Android)"), withdraw, {}).status_code == 200
    elsewhere = _client_hash(app, "198.51.100.2", "Phone/1.0 (Android)")
    assert [r.client_hash for r in _records(family.pid)[4:]] == [elsewhere, elsewhere]
    assert elsewhere not in (on_phone, on_laptop)

    again = _submit(device("198.51.100.3", "Tablet/3"), manage, {f"d_{family.pid}_facebook": "granted"})
    assert again.status_code == 200
    assert [(r.decision, r.client_hash) for r in _records(family.pid)[6:]] == [
        ("granted", _client_hash(app, "198.51.100.3", "Tablet/3"))]
    for record in _records(family.pid):
        assert record.client_hash is not None and len(record.client_hash) == 64
        texts = [str(v) for v in vars(record).values()]
        assert not [t for t in texts for clear in ("203.0.113", "198.51.100", "Phone/", "Laptop/")
                    if clear in t]


def test_guardian_link_no_longer_applies_once_the_pupil_is_sixteen(
        app: Flask, smtp: Any, tokens: dict[str, str]) -> None:
    """A guardian's unanswered link, opened after the 16th birthday, records nothing (410)."""
    pid = _pupil("S3", "Noor", "Visser", _born(16, 3), [("Anna Visser", ANNA)])
    [answer, _manage] = _ask(app, smtp, tokens["staff"], pid, ["facebook"])[ANNA]
    with time_machine.travel(datetime.now(UTC) + timedelta(days=4), tick=True):
        browser = _browser(app)
        page = browser.get(answer)
        html = page.get_data(as_text=True)
        assert page.status_code == 410 and "This link no longer applies" in html
        _names_absent(html)
        posted = browser.post(answer, data={"choice_facebook": "granted", "csrf_token": _csrf(html)})
        assert posted.status_code == 410 and "no longer applies" in posted.get_data(as_text=True)
    assert _records(pid) == []


def test_unlinked_guardian_link_no_longer_applies(app: Flask, family: Family) -> None:
    """A guardian removed from the pupil after the mail went out can no longer answer."""
    person = db.session.get(Person, family.pid)
    update_person(person, PersonPatch.model_validate(
        {"guardians": [{"name": "Anna Visser", "email": ANNA}]}), actor=SYSTEM)
    db.session.commit()
    bert = _browser(app)
    page = bert.get(family.bert[0])
    html = page.get_data(as_text=True)
    assert page.status_code == 410 and "This link no longer applies" in html
    _names_absent(html)
    posted = bert.post(family.bert[0], data={"choice_facebook": "granted", "choice_website": "granted",
                                             "csrf_token": _csrf(html)})
    assert posted.status_code == 410
    assert _records(family.pid) == []
    assert _recipient(family.pid, BERT).opened_at is None
    # Anna, still a guardian, can answer.
    ok = _submit(_browser(app), family.anna[0], {"choice_facebook": "granted", "choice_website": "granted"})
    assert ok.status_code == 200 and len(_records(family.pid)) == 2


@pytest.mark.parametrize(("delay", "flagged"), [(0, True), (61, False)])
def test_answers_right_after_sending_are_flagged_as_possible_scanner(
        app: Flask, family: Family, delay: int, flagged: bool) -> None:
    """An answer within SCANNER_SECONDS of sending is flagged; a minute later it is not."""
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=delay), tick=True):
        done = _submit(_browser(app), family.anna[0],
                       {"choice_facebook": "granted", "choice_website": "refused"})
    assert done.status_code == 200
    records = _records(family.pid)
    assert len(records) == 2
    assert all(r.possibly_scanner is flagged for r in records)
    assert all(r.recipient_id == _recipient(family.pid, ANNA).id for r in records)


# --- confirmation and withdrawal -----------------------------------------------------------------

def test_confirmation_carries_withdraw_and_manage_links_and_withdrawal_works(
        app: Flask, smtp: Any, family: Family) -> None:
    """Page and mail link /w/ and /m/; withdraw lists, acts only on POST, takes effect at once, once."""
    browser = _browser(app)
    done = _submit(browser, family.anna[0], {"choice_facebook": "granted", "choice_website": "granted"})
    html = done.get_data(as_text=True)
    assert done.status_code == 200
    hrefs = [a.get("href") or "" for t, a in _tags(html) if t == "a"]
    page_withdraw = next(h for h in hrefs if h.startswith("/w/"))
    page_manage = next(h for h in hrefs if h.startswith("/m/") and h != "/m/")
    [mail] = [m for m in smtp.wait_for_messages(1) if m["To"] == ANNA]
    mail_links = _links(mail)
    assert [p[:3] for p in mail_links] == ["/w/", "/m/"]
    assert _state(family.pid, "facebook") == "granted"

    for path in (page_manage, mail_links[1]):
        assert browser.get(path).status_code == 200

    before = len(_records(family.pid))
    shown = browser.get(page_withdraw)
    shown_html = shown.get_data(as_text=True)
    assert shown.status_code == 200
    items = _inner(shown_html.split("<main", 1)[1], "li")
    assert items == ["The school's Facebook page", "The school's website"]
    assert len(_records(family.pid)) == before and _state(family.pid, "facebook") == "granted"

    assert browser.post(mail_links[0], data={}).status_code == 400  # no CSRF token: nothing happens
    assert _state(family.pid, "facebook") == "granted"

    withdrawn = browser.post(mail_links[0], data={"csrf_token": _csrf(shown_html)})
    assert withdrawn.status_code == 200
    assert "Your consent has been withdrawn." in withdrawn.get_data(as_text=True)
    assert _state(family.pid, "facebook") == "withdrawn" and _state(family.pid, "website") == "withdrawn"
    new = _records(family.pid)[before:]
    assert sorted((r.channel, r.decision, r.guardian_id is not None) for r in new) == [
        ("facebook", "withdrawn", True), ("website", "withdrawn", True)]

    second = browser.post(page_withdraw, data={"csrf_token": _csrf(shown_html)})
    assert second.status_code == 200
    assert "There was no consent of yours left to withdraw." in second.get_data(as_text=True)
    assert len(_records(family.pid)) == before + 2
    assert "There is no consent of yours to withdraw." in browser.get(page_withdraw).get_data(as_text=True)


def test_withdraw_link_of_a_refusal_has_nothing_to_withdraw(app: Flask, family: Family) -> None:
    """A decider who only refused sees nothing to withdraw and no button."""
    browser = _browser(app)
    done = _submit(browser, family.anna[0], {"choice_facebook": "refused", "choice_website": "refused"})
    link = next(a["href"] for t, a in _tags(done.get_data(as_text=True))
                if t == "a" and (a.get("href") or "").startswith("/w/"))
    html = browser.get(link).get_data(as_text=True)
    assert "There is no consent of yours to withdraw." in html
    assert not any(t == "form" and (a.get("action") or "").startswith("/w/") for t, a in _tags(html))


# --- manage page ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Siblings:
    """Anna's children Noor (14), Sem (12) and Eva (17), and Max (13) of another family."""

    noor: int
    sem: int
    eva: int
    other: int
    link: str


@pytest.fixture
def siblings(app: Flask) -> Siblings:
    """A guardian with three children, one of them 16+, and a pupil of another family."""
    noor = _pupil("F1", "Noor", "Visser", _born(14, -40), [("Anna Visser", ANNA)])
    sem = _pupil("F2", "Sem", "Visser", _born(12, -10), [("Anna Visser", ANNA)])
    eva = _pupil("F3", "Eva", "Visser", _born(17, -10), [("Anna Visser", ANNA)])
    other = _pupil("F4", "Max", "Jansen", _born(13, -10), [("Carl Jansen", CARL)])
    anna = db.session.execute(sa.select(Guardian).where(Guardian.email == ANNA)).scalar_one()
    return Siblings(noor, sem, eva, other, f"/m/{manage_token(DeciderRef('guardian', anna.id))}")


def _all_records(*pids: int) -> list[ConsentRecord]:
    """The records of several people."""
    return [r for pid in pids for r in _records(pid)]


def test_manage_page_shows_siblings_and_changes_each(app: Flask, siblings: Siblings) -> None:
    """A guardian sees all children, may change the under-16s, and sees the 16+ child read-only."""
    browser = _browser(app)
    html = browser.get(siblings.link).get_data(as_text=True)
    assert _inner(html, "h2") == ["Eva Visser", "Noor Visser", "Sem Visser"]
    assert "Max" not in html
    radios = _radios(html)
    assert {name.split("_")[1] for name in radios} == {str(siblings.noor), str(siblings.sem)}
    assert f"d_{siblings.noor}_facebook" in radios and f"d_{siblings.sem}_website" in radios
    assert not any(v[1] for values in radios.values() for v in values)  # nothing answered yet
    assert "You cannot change these answers now" in html
    eva_section = html.split("<h2>Eva Visser</h2>", 1)[1].split("</section>", 1)[0]
    assert "You cannot change these answers now" in eva_section and "<input" not in eva_section

    saved = browser.post(siblings.link, data={f"d_{siblings.noor}_facebook": "granted",
                                              f"d_{siblings.sem}_website": "refused",
                                              "csrf_token": _csrf(html)})
    assert saved.status_code == 200 and "Your answers have been saved." in saved.get_data(as_text=True)
    assert [(r.channel, r.decision, r.decider_kind) for r in _records(siblings.noor)] == [
        ("facebook", "granted", "guardian")]
    assert [(r.channel, r.decision) for r in _records(siblings.sem)] == [("website", "refused")]
    assert _state(siblings.noor, "facebook") == "granted" and _state(siblings.sem, "website") == "refused"
    assert _records(siblings.eva) == []
    after = _radios(saved.get_data(as_text=True))
    assert ("granted", True) in after[f"d_{siblings.noor}_facebook"]
    assert ("withdrawn", False) in after[f"d_{siblings.noor}_facebook"]  # withdrawal offered after a yes


MANAGE_ABUSE: dict[str, Callable[[Siblings], dict[str, str]]] = {
    "other-family": lambda s: {f"d_{s.other}_facebook": "granted"},
    "sixteen-plus-sibling": lambda s: {f"d_{s.eva}_facebook": "granted"},
    "unknown-purpose": lambda s: {f"d_{s.noor}_instagram": "granted"},
    "unknown-value": lambda s: {f"d_{s.noor}_website": "maybe"},
    "not-a-number": lambda s: {"d_x_facebook": "granted"},
    "unknown-person": lambda s: {"d_987654_facebook": "granted"},
    "unicode-digit": lambda s: {"d_\u00b2_facebook": "granted"},
    "huge-number": lambda s: {f"d_{'9' * 5000}_facebook": "granted"},
}


@pytest.mark.parametrize("kind", list(MANAGE_ABUSE))
def test_manage_refuses_people_and_purposes_the_owner_does_not_decide(
        app: Flask, siblings: Siblings, kind: str) -> None:
    """A decision for someone else, a 16+ child, an unknown purpose or value: 422, nothing recorded."""
    browser = _browser(app)
    html = browser.get(siblings.link).get_data(as_text=True)
    data = {f"d_{siblings.sem}_facebook": "granted", **MANAGE_ABUSE[kind](siblings),
            "csrf_token": _csrf(html)}
    response = browser.post(siblings.link, data=data)
    assert response.status_code == 422
    assert "Some answers could not be saved." in response.get_data(as_text=True)
    assert _all_records(siblings.noor, siblings.sem, siblings.eva, siblings.other) == []


def test_manage_needs_a_csrf_token(app: Flask, siblings: Siblings) -> None:
    """A manage POST without a CSRF token is refused and records nothing."""
    browser = _browser(app)
    assert browser.get(siblings.link).status_code == 200
    assert browser.post(siblings.link, data={f"d_{siblings.sem}_facebook": "granted"}).status_code == 400
    assert _records(siblings.sem) == []


# --- asking for a new manage link ----------------------------------------------------------------

def _without_tokens(html: str) -> str:
    """A page with its CSRF token values blanked, to compare two sessions' pages."""
    return CSRF.sub('name="csrf_token" value=""', html)


def test_asking_for_a_manage_link_does_not_reveal_who_is_known(
        app: Flask, smtp: Any, siblings: Siblings) -> None:
    """A known address gets a working link by mail; an unknown one gets the same page and no mail."""
    known, unknown = _browser(app), _browser(app)
    form = known.get("/m/")
    assert form.status_code == 200 and 'name="email"' in form.get_data(as_text=True)
    smtp.clear()
    missing = _submit(unknown, "/m/", {"email": "nobody@elsewhere.example.nl"})
    assert smtp.messages == []
    found = _submit(known, "/m/", {"email": "  Anna@Ouders.example.nl "})
    assert (missing.status_code, found.status_code) == (200, 200)
    assert _without_tokens(missing.get_data(as_text=True)) == _without_tokens(found.get_data(as_text=True))
    assert "If this address is known to the school" in found.get_data(as_text=True)

    [mail] = smtp.wait_for_messages(1)
    assert mail["To"] == ANNA
    [link] = _links(mail)
    assert link.startswith("/m/")
    page = _browser(app).get(link)
    assert page.status_code == 200
    assert _inner(page.get_data(as_text=True), "h2") == [
        "Eva Visser", "Noor Visser", "Sem Visser"]
    assert len(smtp.messages) == 1


# --- headers, other hosts, rate limits -----------------------------------------------------------

def _check_public_response(response: Any, path: str) -> None:
    """Strict headers, and no reference to another host in the HTML."""
    where = f"{response.status_code} {path}"
    assert response.headers["Referrer-Policy"] == "no-referrer", where
    assert "default-src 'none'" in response.headers["Content-Security-Policy"], where
    assert response.headers["Cache-Control"] == "no-store", where
    html = response.get_data(as_text=True)
    assert "<html" in html, where
    for tag, attrs in _tags(html):
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            value = (attrs.get(name) or "").strip()
            if value and not value.startswith("#"):  # in-page anchors are fine
                local = value.startswith("/") and not value.startswith("//")
                assert local, f"{where}: <{tag} {name}={value}>"
    assert "http://" not in html and "https://" not in html, where


def test_every_public_page_sends_strict_headers_and_loads_nothing_from_elsewhere(
        app: Flask, smtp: Any, family: Family, siblings: Siblings) -> None:
    """Answer, error, confirmation, withdraw, manage and ask-link pages, including failures."""
    browser = _browser(app)
    answer, manage = family.anna
    seen: list[tuple[Any, str]] = []

    def visit(method: str, path: str, data: dict[str, str] | None = None, status: int = 200) -> str:
        """Request a page, remember it for the checks, and return its HTML."""
        response = browser.open(path, method=method, data=data)
        assert response.status_code == status, (method, path, response.status_code)
        seen.append((response, f"{method} {path}"))
        return response.get_data(as_text=True)

    token = _csrf(visit("GET", answer))
    visit("POST", answer, {"choice_facebook": "granted"}, 400)
    visit("POST", answer, {"choice_facebook": "granted", "csrf_token": token}, 422)
    confirmed = visit("POST", answer, {"choice_facebook": "granted", "choice_website": "granted",
                                       "csrf_token": token})
    withdraw = next(a["href"] for t, a in _tags(confirmed) if t == "a" and a["href"].startswith("/w/"))
    visit("GET", answer, status=410)
    visit("GET", "/c/not-a-token", status=404)
    visit("GET", withdraw)
    visit("POST", withdraw, {"csrf_token": token})
    visit("GET", manage)
    visit("GET", siblings.link)
    visit("POST", siblings.link, {f"d_{siblings.other}_facebook": "granted", "csrf_token": token}, 422)
    visit("POST", siblings.link, {f"d_{siblings.sem}_facebook": "granted", "csrf_token": token})
    visit("GET", "/m/")
    visit("POST", "/m/", {"email": ANNA, "csrf_token": token})
    visit("GET", "/m/not-a-token", status=404)
    visit("GET", "/w/not-a-token", status=404)
    for response, where in seen:
        _check_public_response(response, where)


def test_public_pages_are_rate_limited_per_address(database_url: str, tmp_path: Path) -> None:
    """With "3 per minute", the 4th request from one address gets 429 on any public page;
    another address still gets in."""
    limited = make_app(database_url, tmp_path, RATELIMIT_ENABLED=True, PUBLIC_RATE_LIMIT="3 per minute")
    client = limited.test_client()
    one, other = {"REMOTE_ADDR": "203.0.113.7"}, {"REMOTE_ADDR": "198.51.100.23"}
    try:
        statuses = [client.get("/m/", environ_base=one).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        refused = client.get("/m/", environ_base=one)
        assert refused.status_code == 429
        _check_public_response(refused, "429 /m/")
        assert client.get("/c/anything", environ_base=one).status_code == 429  # one budget for all
        assert [client.get("/m/", environ_base=other).status_code for _ in range(3)] == [200, 200, 200]
        assert client.get("/m/", environ_base=other).status_code == 429
    finally:
        with limited.app_context():
            db.engine.dispose()
