"""The API answers what its OpenAPI document says, for every role: schemathesis with all its checks.

Every operation of the served document is called through WSGI (no server) with requests that
schemathesis makes from the document: its boundary cases (an empty enum value, a string one over
its maxLength, an id of 0, a page past its maximum, integer-valued floats, nulls where allowed, an
undeclared method) and a few fuzzed ones, valid and invalid, derandomized so that every run sends
the same. Every check runs: a schema-violating request must be refused with a 4xx, a valid one
must not be refused as invalid, and each answer (status, headers, body) must be documented.

What a schema cannot say is named in DOMAIN_REFUSALS: a valid request may still be refused with
422 because of the data it names (an id of nobody, a file whose content is no photo, a decider who
does not decide for that person, a DPIA that is required) or with 400 for "until" before "since".
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.pytest._test_builder import build_operation_test

from consent_registry.audit import SYSTEM
from consent_registry.db import db
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person

from conftest import bearer

# operation -> the extra statuses with which a schema-valid request may be refused, and why.
DOMAIN_REFUSALS: dict[str, tuple[list[str], str]] = {
    "POST /api/v1/people": (["422"], "guardians the same by e-mail address"),
    "PATCH /api/v1/people/{person_id}": (["422"], "guardians the same by e-mail address; rules "
                                                  "between fields (a pupil's guardians)"),
    "POST /api/v1/people/{person_id}/consents": (["422"], "the decider does not decide for them now"),
    "POST /api/v1/consent-requests": (["422"], "people who do not exist, or nobody to ask"),
    "POST /api/v1/media": (["422"], "the file's content: empty, damaged, no accepted type"),
    "POST /api/v1/publications": (["422"], "items that do not exist or are no photos"),
    "POST /api/v1/media/{media_id}/publish": (["422"], "the channel cannot take this kind"),
    "POST /api/v1/media/{media_id}/appearances": (["422"], "a box outside the picture"),
    "PATCH /api/v1/media/{media_id}/appearances/{appearance_id}": (["422"], "a person who does not exist"),
    "PUT /api/v1/settings/face-matching": (["422"], "no DPIA reference to switch on"),
    "PUT /api/v1/settings/voice-matching": (["422"], "no DPIA reference to switch on"),
    "GET /api/v1/audit": (["400"], "until not after since"),
}
DEFAULT_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
ROLES = ["admin", "communications", "staff", "dpo", None]  # None: no token at all
EXAMPLES = 3  # fuzzed requests per operation, role and mode, beside the boundary cases


def _config() -> schemathesis.Config:
    """All checks; the boundary (coverage) and fuzzing phases; the same requests every run."""
    operations = []
    for label, (statuses, _why) in DOMAIN_REFUSALS.items():
        operations.append({
            "include-name": label,
            "checks": {"positive_data_acceptance": {"expected-statuses": DEFAULT_ACCEPTED + statuses}},
        })
    return schemathesis.Config.from_dict({
        # Unknown query parameters are ignored, as by most APIs; the token is ours to send.
        "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True,
                       "database": "none", "allow-extra-parameters": True,
                       "with-security-parameters": False},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
                   "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
        "operations": operations,
    })


def _seed_people() -> None:
    """A few people for the operations to find."""
    for i in range(2):
        create_person(PersonCreate(external_id=f"F{i}", given_name="Kind", family_name=f"Fuzz{i}",
                                   birth_date="2015-03-01", role="pupil",
                                   guardians=[{"name": "Ouder", "email": f"ouder{i}@fuzz.example"}]),
                      actor=SYSTEM)
    db.session.commit()


@pytest.mark.one_backend
def test_the_api_does_what_its_document_says(app: Flask, tokens: dict[str, str]) -> None:
    """The same requests from each role and from nobody: each answer conforms to the document,
    valid requests are not refused as invalid, invalid ones are refused; every mismatch is named."""
    _seed_people()
    config = _config()
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=config)
    failures: list[str] = []

    def check(case: Any) -> None:
        """One generated request, sent as each role."""
        for role in ROLES:
            try:
                case.call_and_validate(headers=bearer(tokens[role]) if role else None)
            except Exception as exc:  # each failed check, and any error calling the app
                failures.append(f"{role or 'anonymous'}: {str(exc).strip()[:1500]}")
                return

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 37
    for operation in operations:
        run = build_operation_test(config=schema.config,
                                   operation=operation, test_func=check, given_kwargs={},
                                   feedback=FeedbackSources())
        run = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                       suppress_health_check=list(HealthCheck), report_multiple_bugs=False)(run)
        try:
            run()
        except Exception as exc:  # schemathesis' failure group: every distinct failure, reproducible
            failures.append(f"{operation.label}: {str(exc).strip()[:3000]}")
    assert not failures, "\n\n".join(failures)
