"""Shared fixtures: an app per database backend, users of every role, logged-in clients."""

from __future__ import annotations

import contextvars
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, has_app_context
from flask.testing import FlaskClient
from flask_migrate import upgrade
from werkzeug.serving import make_server

from consent_registry import create_app
from consent_registry.audit import SYSTEM
from consent_registry.auth.models import ROLES, User
from consent_registry.auth.service import create_user
from consent_registry.auth.tokens import issue_token
from consent_registry.db import db

from fake_graph import fake_graph, graph  # noqa: F401  (fixtures)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "public"
PG_URL = os.environ.get("CONSENT_REGISTRY_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite", *(["postgresql"] if PG_URL else [])]
# Under pytest-xdist each worker empties the database before every test: each gets its own,
# created beside the configured one (named after it) and dropped when the worker ends.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run tests marked one_backend on SQLite only: their subject is not the database."""
    keep, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.get_closest_marker("one_backend") and params.get("backend") == "postgresql":
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
PASSWORD = "correct horse battery staple"


class IsolatedClient(FlaskClient):
    """A test client whose requests run in their own app context, as in production.

    The test keeps an app context pushed for its own queries; Flask would reuse it for requests,
    sharing `g` (the logged-in user) and the database session between them. Each request here
    runs in an empty context instead; the test's session commits before and after, so both
    sides see each other's committed changes.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        """Send one request in a fresh context."""
        _settle_test_session()
        try:
            return contextvars.Context().run(super().open, *args, **kwargs)
        finally:
            _settle_test_session()


def _settle_test_session() -> None:
    """Commit the test's own session, if a test holds an app context, and forget loaded rows."""
    if has_app_context():
        db.session.commit()


def make_app(database_url: str, tmp_path: Path, **overrides: object) -> Flask:
    """An app in test mode on the given database; the developer's environment is ignored."""
    environ = {"CONSENT_REGISTRY_ENV": "test",
               "CONSENT_REGISTRY_INSTANCE_PATH": str(tmp_path / "instance")}
    settings = {"DATABASE_URL": database_url, "UPLOAD_DIR": str(tmp_path / "uploads"), **overrides}
    application = create_app(settings, environ=environ)
    application.test_client_class = IsolatedClient
    return application


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once; each test gets a copy."""
    folder = tmp_path_factory.mktemp("template")
    path = folder / "template.sqlite3"
    app = make_app(f"sqlite:///{path}", folder)
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return path


@contextmanager
def _worker_database(url: str) -> Iterator[str]:
    """This xdist worker's own database beside `url` (created, then dropped); `url` itself otherwise."""
    if not WORKER:
        yield url
        return
    base = sa.engine.make_url(url)
    name = f"{base.database}_{WORKER}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The PostgreSQL test database, emptied and migrated once per session."""
    name = sa.engine.make_url(PG_URL).database or ""
    if not re.search(r"test|ci", name):
        raise RuntimeError(f"refusing to empty {name!r}: the test database's name must say test or ci")
    with _worker_database(PG_URL) as url:
        yield _migrated_postgres(url, tmp_path_factory)


def _migrated_postgres(url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The database emptied (schema dropped) and migrated; its URL."""
    app = make_app(url, tmp_path_factory.mktemp("pg"))
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        upgrade()
        db.engine.dispose()
    return url


def _empty_postgres() -> None:
    """Remove every row (TRUNCATE skips the audit table's row triggers), then re-seed the chain head."""
    tables = [t.name for t in db.metadata.sorted_tables]
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        conn.execute(sa.text(
            "INSERT INTO audit_chain_head (id, last_hash, length) VALUES (1, :h, 0)"
        ).bindparams(h="0" * 64))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend this test runs on."""
    return request.param


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated, empty database for one test."""
    if backend == "sqlite":
        path = tmp_path / "db.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def app(database_url: str, backend: str, tmp_path: Path) -> Iterator[Flask]:
    """The application with an app context pushed for the test's own queries."""
    application = make_app(database_url, tmp_path)
    with application.app_context():
        if backend == "postgresql":
            _empty_postgres()
        yield application
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser without a session."""
    return app.test_client()


@dataclass
class StaffUser:
    """A test account and its password."""

    id: int
    email: str
    role: str
    password: str = PASSWORD


@pytest.fixture
def users(app: Flask) -> dict[str, StaffUser]:
    """One active account per role, with a chosen password."""
    made = {}
    for role in ROLES:
        user, _ = create_user(email=f"{role}@school.test", role=role, name=role.title(),
                              password=PASSWORD, actor=SYSTEM)
        db.session.flush()
        made[role] = StaffUser(user.id, user.email, role)
    db.session.commit()
    return made


def log_in(client: FlaskClient, email: str, password: str = PASSWORD) -> None:
    """Log a test client in through the real login form."""
    client.get("/login")
    response = client.post("/login", data={"email": email, "password": password,
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 302, response.get_data(as_text=True)


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token of the client's session, read from a rendered form."""
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}: {html[:2000]}"
    return match.group(1)


@pytest.fixture
def logged_in(app: Flask, users: dict[str, StaffUser], request: pytest.FixtureRequest):
    """A factory: a client logged in with the given role.

    A test module that sets `PAGES_IN_ENGLISH = True` gets clients asking for English pages
    (the site defaults to Dutch), for assertions that read English text.
    """
    english = getattr(request.module, "PAGES_IN_ENGLISH", False)

    def make(role: str) -> FlaskClient:
        c = app.test_client()
        if english:
            c.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
        log_in(c, users[role].email)
        return c
    return make


@pytest.fixture
def tokens(app: Flask, users: dict[str, StaffUser]) -> dict[str, str]:
    """An API token per role."""
    made = {}
    for role, staff in users.items():
        made[role] = issue_token(db.session.get(User, staff.id), label="test", actor=SYSTEM)
    db.session.commit()
    return made


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app served over real HTTP on 127.0.0.1 in a thread, for a real browser; yields its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium, never a downloaded browser; without the networking flags it keeps trying
# to reach Google, which this machine's closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright, shared by the session's browser tests."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh browser tab with its own cookies, preferring Dutch like a Dutch browser."""
    context = browser.new_context(locale="nl-NL")
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    yield tab
    context.close()


@pytest.fixture
def smtp(app: Flask) -> Iterator[Any]:
    """A real SMTP server on 127.0.0.1 (STARTTLS and login) that the app sends all mail through."""
    from consent_registry import mail

    from smtp_server import SMTPTestServer

    with SMTPTestServer(tls="starttls", auth=("registry", "mail-password")) as server:
        app.config.update(server.settings())
        mail.init_app(app)
        yield server


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, every: float = 0.02) -> Any:
    """Poll every `every` seconds until condition() is truthy (another thread's work); its value."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {condition}")
        time.sleep(every)
    return value


def values_in_database(values: tuple[str, ...]) -> list[str]:
    """Every "table.column: value" whose text, JSON or date column holds one of the values."""
    import json

    found = []
    for table in db.metadata.sorted_tables:
        columns = [c for c in table.columns
                   if isinstance(c.type, sa.String | sa.Text | sa.JSON | sa.Date)]
        if not columns:
            continue
        for row in db.session.execute(sa.select(*columns)).all():
            for column, value in zip(columns, row, strict=True):
                text = json.dumps(value, default=str) if value is not None else ""
                found += [f"{table.name}.{column.name}: {v}" for v in values if v in text]
    return found
