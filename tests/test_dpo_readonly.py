"""The DPO changes nothing: every write route, tried as `dpo` with a valid CSRF token, is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask, url_for
from test_publishing import tagged_photo

from consent_registry.auth.access import access_of
from consent_registry.auth.models import ApiToken
from consent_registry.db import db
from consent_registry.people.importing import ImportBatch

from api_helpers import api_caller
from conftest import StaffUser, bearer, csrf_token

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The only writes the DPO may make (by rule): their own session, password and API tokens, and
# asking for a subject-access export (a job). Public routes (guardians' links, login, language)
# are anyone's and are not staff writes; tests/test_access.py covers them.
DPO_MAY_WRITE = frozenset({
    "/logout",
    "/account/password",
    "/account/tokens",
    "/account/tokens/<int:token_id>/revoke",
    "/dpo/people/<int:person_id>/export",
    "/api/v1/people/<int:person_id>/export",
})


def write_rules(app: Flask) -> list[tuple[Any, str]]:
    """Every (rule, method) of the app that can change something."""
    return sorted(((rule, method) for rule in app.url_map.iter_rules()
                   for method in (rule.methods or ()) if method in WRITE_METHODS),
                  key=lambda pair: (pair[0].rule, pair[1]))


def snapshot() -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, in a stable order."""
    db.session.expire_all()
    tables = {}
    for table in db.metadata.sorted_tables:
        rows = db.session.execute(sa.select(table)).all()
        tables[table.name] = sorted(tuple(repr(value) for value in row) for row in rows)
    return tables


def stored_files(app: Flask) -> list[str]:
    """Every file under the upload folder (local storage)."""
    root = Path(app.config["UPLOAD_DIR"])
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def real_objects(app: Flask, tokens: dict[str, str], users: dict[str, StaffUser]) -> dict[str, Any]:
    """A published photo of a tagged pupil with a guardian, an import batch: real ids for URLs."""
    media, person = tagged_photo(app)
    api = api_caller(app, tokens, "communications")
    published = api("POST", f"/media/{media.id}/publish",
                    json={"channel": "facebook", "caption": "Sports day", "attest": True})
    assert published.status_code == 201, published.get_json()
    batch = ImportBatch(uploaded_by=users["admin"].id, sha256="0" * 64, content=b"x", mapping={})
    db.session.add(batch)
    db.session.commit()
    admin_token = db.session.execute(
        sa.select(ApiToken).where(ApiToken.user_id == users["admin"].id)).scalars().first()
    return {
        "person_id": person.id,
        "guardian_id": person.guardian_links[0].guardian_id,
        "media_id": media.id,
        "appearance_id": media.appearances[0].id,
        "publication_id": published.get_json()["publication_id"],
        "user_id": users["staff"].id,
        "batch_id": batch.id,
        "token_id": admin_token.id if admin_token else 1,
        "token": "not-a-real-token",
    }


def url_of(app: Flask, rule: Any, values: dict[str, Any]) -> str:
    """The rule's URL with real ids where there are any, 1 (or "x") for any other argument."""
    args = {}
    for name in rule.arguments:
        converter = type(rule._converters[name]).__name__  # int or string
        args[name] = values.get(name, 1 if "Integer" in converter else "x")
    with app.test_request_context():
        return url_for(rule.endpoint, **args)


def test_the_dpo_may_write_only_their_own_account_and_exports(app: Flask) -> None:
    """Every write route the dpo role passes is public or on the short list above."""
    passes = {rule.rule for rule, _method in write_rules(app)
              if (access := access_of(app, rule.endpoint)) is not None and not access.public
              and "dpo" in access.roles}
    assert passes <= DPO_MAY_WRITE, sorted(passes - DPO_MAY_WRITE)


def test_every_other_write_route_refuses_the_dpo_and_changes_nothing(
    app: Flask, logged_in, tokens: dict[str, str], users: dict[str, StaffUser], graph: Any
) -> None:
    """403 for each, with a valid CSRF token or API token; no row and no stored file changes."""
    values = real_objects(app, tokens, users)
    client = logged_in("dpo")
    token = csrf_token(client, "/account")
    before, files_before = snapshot(), stored_files(app)
    tried, failures = 0, []
    for rule, method in write_rules(app):
        access = access_of(app, rule.endpoint)
        assert access is not None, rule.endpoint
        if access.public or rule.rule in DPO_MAY_WRITE:
            continue
        url = url_of(app, rule, values)
        if url.startswith("/api/"):
            response = app.test_client().open(url, method=method, headers=bearer(tokens["dpo"]),
                                              json={"attest": True, "enabled": False})
        else:
            response = client.open(url, method=method, data={
                "csrf_token": token, "confirm": "1", "confirmed": "yes", "enabled": "0", "role": "admin",
                "active": "0", "decision": "granted", "channel": "facebook", "attest": "yes"})
        tried += 1
        if response.status_code != 403:
            failures.append(f"{method} {url}: {response.status_code}")
    assert not failures, "\n".join(failures)
    assert tried >= 40  # every staff write of the app, not a handful
    after = snapshot()
    changed = sorted(name for name in before if before[name] != after[name])
    assert not changed, changed
    assert stored_files(app) == files_before
