"""Every change that can end a consent takes the person's posts down in the same request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from test_tagging import face, make_photo

from consent_registry import events as domain_events
from consent_registry.audit import SYSTEM, AuditEvent
from consent_registry.consent.service import record_decision
from consent_registry.db import db
from consent_registry.people.models import Person
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person
from consent_registry.publishing.models import Publication

from api_helpers import api_caller, conforms
from conftest import csrf_token


def _years_ago(years: int) -> str:
    """The ISO date of someone who turned `years` a month ago."""
    today = date.today()
    month = today.month - 1 or 12
    year = today.year - years - (1 if today.month == 1 else 0)
    return date(year, month, min(today.day, 28)).isoformat()


def _pupil(*, birth_date: str) -> Person:
    """A pupil with one guardian."""
    person = create_person(PersonCreate.model_validate({
        "external_id": "P1", "given_name": "Ada", "family_name": "Jansen", "birth_date": birth_date,
        "role": "pupil", "group": "1A", "email": "ada@example.nl",
        "guardians": [{"name": "Sanne Jansen", "email": "sanne@example.nl"}],
    }), actor=SYSTEM)
    db.session.commit()
    return person


def _live(app: Flask, tokens: dict[str, str], *, decider: str = "guardian",
          birth_date: str | None = None) -> tuple[int, str, Person]:
    """A pupil whose decider granted facebook, shown in a photo live there: publication, post, pupil."""
    person = _pupil(birth_date=birth_date or _years_ago(12))
    guardian_id = person.guardian_links[0].guardian_id if decider == "guardian" else None
    record_decision(person=person, channel="facebook", decision="granted", decider_kind=decider,
                    guardian_id=guardian_id, method="paper", actor=SYSTEM)
    media = make_photo(app)
    face(media, person_id=person.id, resolution="identified")
    api = api_caller(app, tokens, "communications")
    body = api("POST", f"/media/{media.id}/publish",
               json={"channel": "facebook", "attest": True}).get_json()
    assert body["state"] == "live", body
    return body["publication_id"], body["post_id"], person


def _requested(publication_id: int) -> list[AuditEvent]:
    """The takedown requests audited for a publication."""
    return list(db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.action == "publication:takedown_requested",
                                    AuditEvent.subject_id == str(publication_id))).scalars())


def _assert_taken_down(publication_id: int, post_id: str, graph: Any, reason: str) -> None:
    """Requested once with the reason, and (jobs run inline in tests) deleted on the fake Graph."""
    db.session.expire_all()
    publication = db.session.get(Publication, publication_id)
    assert publication is not None
    assert (publication.state, publication.takedown_reason) == ("taken_down", reason)
    assert [e.details["reason"] for e in _requested(publication_id)] == [reason]
    assert post_id in graph.deleted and post_id not in graph.live_posts()


def _patch(app: Flask, tokens: dict[str, str], person: Person, body: dict[str, Any]) -> None:
    """PATCH /people/{id} as staff; 200."""
    api = api_caller(app, tokens, "staff")
    response = conforms(api("PATCH", f"/people/{person.id}", json=body))
    assert response.status_code == 200, response.get_json()


def _decide(app: Flask, tokens: dict[str, str], person: Person, decision: str) -> None:
    """The guardian's paper form entered through the API; 201."""
    api = api_caller(app, tokens, "staff")
    response = conforms(api("POST", f"/people/{person.id}/consents", json={
        "channel": "facebook", "decision": decision, "method": "paper",
        "decided_by": f"guardian:{person.guardian_links[0].guardian_id}"}))
    assert response.status_code == 201, response.get_json()


def test_removing_the_consenting_guardian_on_the_page_takes_the_post_down(
        app: Flask, tokens: dict[str, str], logged_in: Callable[[str], Any], graph: Any) -> None:
    """The guardian who granted is unlinked: no consent is left, the post comes down at once."""
    publication_id, post_id, person = _live(app, tokens)
    staff = logged_in("staff")
    guardian_id = person.guardian_links[0].guardian_id
    response = staff.post(f"/people/{person.id}/guardians/{guardian_id}/remove",
                          data={"csrf_token": csrf_token(staff, f"/people/{person.id}")})
    assert response.status_code == 302
    _assert_taken_down(publication_id, post_id, graph, "no_consent")


def test_replacing_the_guardian_takes_the_post_down(app: Flask, tokens: dict[str, str],
                                                   graph: Any) -> None:
    """The guardian list now names someone else, who did not answer: taken down."""
    publication_id, post_id, person = _live(app, tokens)
    _patch(app, tokens, person, {"guardians": [{"name": "Piet Jansen", "email": "piet@example.nl"}]})
    _assert_taken_down(publication_id, post_id, graph, "no_consent")


def test_a_corrected_birth_date_that_makes_the_pupil_a_child_takes_the_post_down(
        app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """A pupil registered as 18 granted themselves; really 12, their guardian decides and did not."""
    publication_id, post_id, person = _live(app, tokens, decider="pupil",
                                            birth_date=_years_ago(18))
    _patch(app, tokens, person, {"birth_date": _years_ago(12)})
    _assert_taken_down(publication_id, post_id, graph, "no_consent")


def test_marking_the_pupil_left_takes_the_post_down(app: Flask, tokens: dict[str, str],
                                                   graph: Any) -> None:
    """Left as of today, through the API: taken down in the same request."""
    publication_id, post_id, person = _live(app, tokens)
    _patch(app, tokens, person, {"status": "left"})
    _assert_taken_down(publication_id, post_id, graph, "person_left")


def test_moving_a_leaving_date_forward_to_today_takes_the_post_down(
        app: Flask, tokens: dict[str, str], graph: Any) -> None:
    """Leaving next year leaves the post up; correcting the date to today takes it down."""
    publication_id, post_id, person = _live(app, tokens)
    _patch(app, tokens, person, {"status": "left",
                                 "left_on": date(date.today().year + 1, 1, 1).isoformat()})
    db.session.expire_all()
    assert db.session.get(Publication, publication_id).state == "live"
    _patch(app, tokens, person, {"left_on": date.today().isoformat()})
    _assert_taken_down(publication_id, post_id, graph, "person_left")


@pytest.mark.parametrize("decision", ["refused", "withdrawn"])
def test_a_refusal_or_withdrawal_takes_the_post_down(app: Flask, tokens: dict[str, str], graph: Any,
                                                    decision: str) -> None:
    """The guardian's no, entered through the API: taken down in the same request."""
    publication_id, post_id, person = _live(app, tokens)
    _decide(app, tokens, person, decision)
    _assert_taken_down(publication_id, post_id, graph, decision)


def test_a_change_that_keeps_the_consent_takes_nothing_down(app: Flask, tokens: dict[str, str],
                                                           graph: Any) -> None:
    """A second guardian added (one yes suffices) and a new class: the post stays up."""
    publication_id, _post_id, person = _live(app, tokens)
    _patch(app, tokens, person, {"group": "2A", "guardians": [
        {"name": "Sanne Jansen", "email": "sanne@example.nl"},
        {"name": "Piet Jansen", "email": "piet@example.nl"}]})
    db.session.expire_all()
    assert db.session.get(Publication, publication_id).state == "live"
    assert _requested(publication_id) == [] and graph.deleted == []


def test_the_app_subscribes_references_then_takedowns(app: Flask) -> None:
    """Both consequences are wired, in their fixed order."""
    assert domain_events.subscribers() == ["biometrics", "publishing.takedown"]


def test_an_announcement_nobody_hears_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without subscribers, announcing raises rather than silently ending nothing."""
    monkeypatch.setattr(domain_events, "_subscribers", {})
    with pytest.raises(RuntimeError, match="nobody subscribes"):
        domain_events.consent_may_have_ended(Person(), at=None)  # type: ignore[arg-type]


def test_two_subscribers_may_not_share_an_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The order is fixed: a clash is refused when the second one subscribes."""
    monkeypatch.setattr(domain_events, "_subscribers", {})
    domain_events.subscribe(name="a", order=1)(lambda event: None)
    with pytest.raises(RuntimeError, match="share order"):
        domain_events.subscribe(name="b", order=1)(lambda event: None)
