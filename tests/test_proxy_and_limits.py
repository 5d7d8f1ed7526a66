"""Behind a reverse proxy: whose address counts, and the public pages' limits per address and per link."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from limits.storage import MemoryStorage, RedisStorage

from consent_registry.audit import SYSTEM
from consent_registry.auth.service import create_user
from consent_registry.db import db
from consent_registry.ratelimit import limiter

from conftest import PASSWORD, csrf_token, make_app

PROXY = {"REMOTE_ADDR": "10.0.0.2"}
REDIS_TEST_URL = "redis://127.0.0.1:6379/13"  # never database 0


@pytest.fixture
def built(app: Flask) -> Iterator[list[Flask]]:
    """Apps a test builds with its own settings (on the `app` fixture's emptied database); their
    connections closed afterwards."""
    apps: list[Flask] = []
    yield apps
    for built_app in apps:
        with built_app.app_context():
            db.session.remove()
            db.engine.dispose()


def _app(built: list[Flask], database_url: str, tmp_path: Path, **settings: object) -> Flask:
    """An app with these settings, remembered for cleaning up."""
    application = make_app(database_url, tmp_path, **settings)
    built.append(application)
    return application


def _behind_proxy(application: Flask, client_address: str) -> FlaskClient:
    """A browser at client_address whose requests reach the app through the proxy."""
    client = application.test_client()
    client.environ_base.update(PROXY)
    client.environ_base["HTTP_X_FORWARDED_FOR"] = client_address
    return client


def _login(client: FlaskClient, email: str, password: str) -> int:
    """Post the login form; the status code."""
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": csrf_token(client)}).status_code


def _with_admin(application: Flask) -> str:
    """An admin account in the app's database; its e-mail."""
    with application.app_context():
        user, _ = create_user(email="admin@school.test", role="admin", name="Admin",
                              password=PASSWORD, actor=SYSTEM)
        db.session.commit()
        return user.email


def test_with_a_trusted_proxy_failed_logins_lock_out_only_their_own_client(
    built: list[Flask], database_url: str, tmp_path: Path
) -> None:
    """TRUSTED_PROXIES=1: one client guessing behind the proxy is locked out, the others are not."""
    application = _app(built, database_url, tmp_path, TRUSTED_PROXIES=1,
                       LOGIN_MAX_FAILURES_PER_ADDRESS=4)
    email = _with_admin(application)
    guesser = _behind_proxy(application, "203.0.113.9")
    for i in range(4):
        assert _login(guesser, f"guess{i}@school.test", "wrong") == 401
    assert _login(guesser, email, PASSWORD) == 429
    colleague = _behind_proxy(application, "198.51.100.20")
    assert _login(colleague, email, PASSWORD) == 302


def test_without_trusted_proxies_a_forged_forwarded_for_does_not_escape_the_lockout(
    built: list[Flask], database_url: str, tmp_path: Path
) -> None:
    """TRUSTED_PROXIES=0 (the default): X-Forwarded-For is ignored, so writing a new one each
    time does not reset the per-address count."""
    application = _app(built, database_url, tmp_path, LOGIN_MAX_FAILURES_PER_ADDRESS=4)
    email = _with_admin(application)
    for i in range(4):
        assert _login(_behind_proxy(application, f"192.0.2.{i}"), f"guess{i}@school.test",
                      "wrong") == 401
    assert _login(_behind_proxy(application, "192.0.2.99"), email, PASSWORD) == 429


def test_with_a_trusted_proxy_the_public_limit_counts_each_client(
    built: list[Flask], database_url: str, tmp_path: Path
) -> None:
    """Behind the proxy one busy client reaches its limit; another client still gets in."""
    application = _app(built, database_url, tmp_path, TRUSTED_PROXIES=1, RATELIMIT_ENABLED=True,
                       PUBLIC_RATE_LIMIT="3 per minute")
    busy = _behind_proxy(application, "203.0.113.7")
    assert [busy.get("/m/").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert _behind_proxy(application, "198.51.100.23").get("/m/").status_code == 200


def test_without_trusted_proxies_a_forged_forwarded_for_does_not_escape_the_public_limit(
    built: list[Flask], database_url: str, tmp_path: Path
) -> None:
    """TRUSTED_PROXIES=0: a new X-Forwarded-For per request still counts as the same address."""
    application = _app(built, database_url, tmp_path, RATELIMIT_ENABLED=True,
                       PUBLIC_RATE_LIMIT="3 per minute")
    statuses = [_behind_proxy(application, f"192.0.2.{i}").get("/m/").status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_a_parents_evening_on_one_network_is_not_refused(
    built: list[Flask], database_url: str, tmp_path: Path
) -> None:
    """With the default limits, 100 parents behind one school address each open their own link
    (the page and its preview) and nobody is refused."""
    application = _app(built, database_url, tmp_path, RATELIMIT_ENABLED=True)
    client = application.test_client()
    client.environ_base.update(PROXY)
    statuses = set()
    for parent in range(100):
        link = f"parent-{parent}-{secrets.token_urlsafe(8)}"
        statuses.add(client.get(f"/c/{link}").status_code)
        statuses.add(client.get(f"/c/{link}/preview").status_code)
    assert 429 not in statuses


def test_one_link_is_limited_from_any_number_of_addresses(
    built: list[Flask], database_url: str, tmp_path: Path
) -> None:
    """A link opened from ever new addresses is refused after its own limit; other links are not."""
    application = _app(built, database_url, tmp_path, RATELIMIT_ENABLED=True,
                       PUBLIC_LINK_RATE_LIMIT="5 per minute")
    client = application.test_client()
    statuses = [client.get("/c/one-link", environ_base={"REMOTE_ADDR": f"192.0.2.{i}"}).status_code
                for i in range(6)]
    assert 429 not in statuses[:5] and statuses[5] == 429
    assert client.get("/w/one-link", environ_base={"REMOTE_ADDR": "192.0.2.200"}).status_code == 429
    assert client.get("/c/other-link", environ_base={"REMOTE_ADDR": "192.0.2.200"}).status_code != 429


def test_every_spelling_of_a_printed_link_counts_as_that_one_link(
    built: list[Flask], database_url: str, tmp_path: Path
) -> None:
    """A printed link is read case-blind, without dashes, O as 0: typing it another way each time
    gives no fresh budget."""
    application = _app(built, database_url, tmp_path, RATELIMIT_ENABLED=True,
                       PUBLIC_LINK_RATE_LIMIT="5 per minute")
    client = application.test_client()
    spellings = ["ABCD-0123-EFGH-1JKM-NPQR-STVW", "abcd0123efgh1jkmnpqrstvw",
                 "ABCD-O123-EFGH-IJKM-NPQR-STVW", "abcd-0123-efgh-ljkm-npqr-stvw",
                 "ABCD 0123 EFGH 1JKM NPQR STVW", "ABCDO123EFGHLJKMNPQRSTVW"]
    statuses = [client.get(f"/c/{spelling}", environ_base={"REMOTE_ADDR": f"192.0.2.{i}"}
                           ).status_code for i, spelling in enumerate(spellings)]
    assert 429 not in statuses[:5] and statuses[5] == 429


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """Redis database 13; the limit counters a test made there are removed afterwards."""
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.ping()  # Redis must run: the rate limit storage is the subject
    before = set(client.keys("LIMITS:*"))
    yield client
    made = set(client.keys("LIMITS:*")) - before
    if made:
        client.delete(*made)


def test_limits_are_kept_in_redis_when_jobs_are(
    built: list[Flask], database_url: str, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """JOBS=redis without RATELIMIT_STORAGE_URI: every process counts in the same Redis."""
    application = _app(built, database_url, tmp_path, JOBS="redis", REDIS_URL=REDIS_TEST_URL,
                       JOBS_NAME=f"test-limits-{secrets.token_hex(4)}", RATELIMIT_ENABLED=True)
    assert application.config["RATELIMIT_STORAGE_URI"] == REDIS_TEST_URL
    assert isinstance(limiter.storage, RedisStorage)
    address = f"192.0.2.{secrets.randbelow(250) + 1}"
    link = f"redis-link-{secrets.token_hex(6)}"
    response = application.test_client().get(f"/c/{link}", environ_base={"REMOTE_ADDR": address})
    assert response.status_code != 429
    keys = [key.decode() for key in redis_client.keys("LIMITS:*")]
    assert any(address in key for key in keys)


def test_limits_stay_in_memory_with_embedded_jobs_or_where_configured(
    built: list[Flask], database_url: str, tmp_path: Path
) -> None:
    """Embedded jobs: one process, memory. An explicit storage setting is kept whatever JOBS is."""
    application = _app(built, database_url, tmp_path, JOBS="embedded", RATELIMIT_ENABLED=True)
    assert application.config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert isinstance(limiter.storage, MemoryStorage)
    explicit = _app(built, database_url, tmp_path / "b", JOBS="redis", REDIS_URL=REDIS_TEST_URL,
                    RATELIMIT_STORAGE_URI="memory://")
    assert explicit.config["RATELIMIT_STORAGE_URI"] == "memory://"


def test_public_pages_keep_their_limits_in_memory_while_redis_is_down(
    built: list[Flask], database_url: str, tmp_path: Path
) -> None:
    """Redis unreachable: the answer pages still answer, limited per process, not with a 500."""
    application = _app(built, database_url, tmp_path, JOBS="redis", RATELIMIT_ENABLED=True,
                       REDIS_URL="redis://127.0.0.1:9/0", PUBLIC_RATE_LIMIT="2 per minute")
    client = application.test_client()
    assert [client.get("/m/").status_code for _ in range(3)] == [200, 200, 429]


def test_behind_a_tls_proxy_forms_work_on_the_public_host(
    built: list[Flask], database_url: str, tmp_path: Path
) -> None:
    """The proxy speaks https to the browser and plain http to the app, on an inner address: with
    the forwarded scheme and host trusted, the login form's https same-origin check passes."""
    application = _app(built, database_url, tmp_path, TRUSTED_PROXIES=1)
    email = _with_admin(application)
    browser = _behind_proxy(application, "203.0.113.9")
    browser.environ_base.update({"HTTP_X_FORWARDED_PROTO": "https",
                                 "HTTP_X_FORWARDED_HOST": "toestemming.school.nl",
                                 "HTTP_HOST": "127.0.0.1:8000"})
    token = csrf_token(browser)
    response = browser.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token},
                            headers={"Referer": "https://toestemming.school.nl/login"})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


def test_manage_links_asked_for_one_address_are_limited_from_any_client(
    built: list[Flask], database_url: str, tmp_path: Path
) -> None:
    """Many clients asking to mail one address: after its own small limit they are refused, so
    the generous per-address limit cannot flood a parent's inbox; other addresses still work."""
    application = _app(built, database_url, tmp_path, RATELIMIT_ENABLED=True)
    client = application.test_client()

    def ask(email: str, address: str) -> int:
        """Ask for a manage link to email from the given client address."""
        return client.post("/m/", data={"email": email, "csrf_token": csrf_token(client, "/m/")},
                           environ_base={"REMOTE_ADDR": address}).status_code

    statuses = [ask("Ouder@Example.nl", f"192.0.2.{i}") for i in range(6)]
    assert statuses == [200] * 5 + [429]
    assert ask("ouder@example.nl ", "192.0.2.100") == 429  # the same address, written otherwise
    assert ask("andere.ouder@example.nl", "192.0.2.100") == 200
