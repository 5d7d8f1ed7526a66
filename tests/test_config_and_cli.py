"""Configuration from the environment, the secret key, `flask init`, users commands, migrations."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from consent_registry import create_app
from consent_registry.auth.models import User
from consent_registry.biometrics import service as biometrics
from consent_registry.config import DevelopmentConfig, check_production_key, settings_from_environment
from consent_registry.db import db
from consent_registry.media import analysis
from consent_registry.media.matching import MatchPolicy

from conftest import bearer


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment for an instance in tmp_path."""
    return {"CONSENT_REGISTRY_INSTANCE_PATH": str(tmp_path / "instance"), **extra}


def test_every_setting_comes_from_the_environment(tmp_path: Path) -> None:
    """CONSENT_REGISTRY_<SETTING> overrides the class default, typed like the default."""
    app = create_app(environ=_environ(
        tmp_path,
        CONSENT_REGISTRY_DATABASE_URL=f"sqlite:///{tmp_path / 'a.db'}",
        CONSENT_REGISTRY_UPLOAD_DIR=str(tmp_path / "media-a"),
        CONSENT_REGISTRY_PUBLIC_URL="https://toestemming.school.nl",
        CONSENT_REGISTRY_PAGE_SIZE="25",
        CONSENT_REGISTRY_SESSION_COOKIE_SECURE="true",
        CONSENT_REGISTRY_LOCALES='["nl", "en"]',
    ))
    cfg = app.config
    assert cfg["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'a.db'}"
    assert cfg["UPLOAD_DIR"] == str(tmp_path / "media-a") and (tmp_path / "media-a").is_dir()
    assert cfg["PUBLIC_URL"] == "https://toestemming.school.nl"
    assert cfg["PAGE_SIZE"] == 25 and cfg["SESSION_COOKIE_SECURE"] is True
    assert cfg["LOCALES"] == ("nl", "en")


def test_matching_numbers_come_from_the_environment_into_the_matchers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The MATCH_ and VOICE_MATCH_ variables make the policies the face and voice matchers use."""
    app = create_app(environ=_environ(
        tmp_path, CONSENT_REGISTRY_DATABASE_URL=f"sqlite:///{tmp_path / 'a.db'}",
        CONSENT_REGISTRY_MATCH_THRESHOLD="0.45", CONSENT_REGISTRY_MATCH_MARGIN="0.08",
        CONSENT_REGISTRY_MATCH_AUTO_ACCEPT_BELOW="0.3",
        CONSENT_REGISTRY_VOICE_MATCH_THRESHOLD="0.55", CONSENT_REGISTRY_VOICE_MATCH_MARGIN="0.09",
        CONSENT_REGISTRY_VOICE_MATCH_AUTO_ACCEPT_BELOW="0.2"))
    faces, voices = MatchPolicy(0.45, 0.08, 0.3), MatchPolicy(0.55, 0.09, 0.2)
    assert (app.config["MATCH_POLICY"], app.config["VOICE_MATCH_POLICY"]) == (faces, voices)
    assert create_app(environ=_environ(tmp_path / "b")).config["MATCH_POLICY"] == MatchPolicy(0.5, 0.05)
    monkeypatch.setattr(biometrics, "matching_enabled", lambda modality: True)
    monkeypatch.setattr(biometrics, "matching_references", lambda at, modality: [object()])
    with app.app_context():
        assert analysis.matcher(datetime.now(UTC), "face").policy == faces
        assert analysis.matcher(datetime.now(UTC), "voice").policy == voices
    with pytest.raises(ValueError, match="VOICE_MATCH_AUTO_ACCEPT_BELOW must be a number"):
        create_app(environ=_environ(tmp_path / "c", CONSENT_REGISTRY_VOICE_MATCH_AUTO_ACCEPT_BELOW="soon"))


def test_links_in_mails_live_fourteen_days_unless_configured(tmp_path: Path) -> None:
    """The answer link's lifetime a school gets without setting anything; the manage link's a year."""
    for environ in (_environ(tmp_path), _environ(tmp_path, CONSENT_REGISTRY_ENV="test")):
        config = create_app(environ=environ).config
        assert (config["CONSENT_LINK_DAYS"], config["MANAGE_LINK_DAYS"]) == (14, 365)


def test_embedded_defaults_need_no_server(tmp_path: Path) -> None:
    """Without settings: SQLite under the instance folder, development mode."""
    app = create_app(environ=_environ(tmp_path))
    assert app.config["SQLALCHEMY_DATABASE_URI"] == (
        f"sqlite:///{tmp_path / 'instance' / 'consent_registry.sqlite3'}")
    assert app.config["ENV"] == "development"


def test_postgresql_urls_use_psycopg(tmp_path: Path) -> None:
    """A plain postgresql:// URL is driven by psycopg 3."""
    app = create_app(environ=_environ(tmp_path, CONSENT_REGISTRY_DATABASE_URL="postgresql://u@h/d"))
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/d"


def test_secret_key_is_generated_once_into_the_instance_folder(tmp_path: Path) -> None:
    """The first run writes a private key file; later runs read the same key."""
    first = create_app(environ=_environ(tmp_path))
    key_file = tmp_path / "instance" / "secret_key"
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    second = create_app(environ=_environ(tmp_path))
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"] == key_file.read_text()
    assert len(first.config["SECRET_KEY"]) >= 32


@pytest.mark.parametrize("key", ["dev", "changeme", "secret", "too-short-key"])
def test_production_refuses_known_or_weak_keys(tmp_path: Path, key: str) -> None:
    """Production mode does not start with a key someone else may know."""
    with pytest.raises(RuntimeError, match="secret key"):
        create_app(environ=_environ(tmp_path, CONSENT_REGISTRY_ENV="production",
                                    CONSENT_REGISTRY_SECRET_KEY=key))


def test_production_starts_with_a_real_key(tmp_path: Path) -> None:
    """A long random key is accepted, and cookies are then https-only."""
    app = create_app(environ=_environ(tmp_path, CONSENT_REGISTRY_ENV="production",
                                      CONSENT_REGISTRY_SECRET_KEY="k" * 20 + "Zq81-xP0_aa93LmnB4",
                                      CONSENT_REGISTRY_PUBLIC_URL="https://toestemming.school.nl",
                                      CONSENT_REGISTRY_AUDIT_KEY="a" * 20 + "Kq81-xP0_aa93LmnB4"))
    assert app.config["SESSION_COOKIE_SECURE"] is True
    check_production_key("development", "dev")  # only production is strict


def test_unknown_mode_is_refused(tmp_path: Path) -> None:
    """A typo in CONSENT_REGISTRY_ENV fails loudly instead of running in some default."""
    with pytest.raises(RuntimeError, match="CONSENT_REGISTRY_ENV"):
        create_app(environ=_environ(tmp_path, CONSENT_REGISTRY_ENV="prod"))


def test_settings_from_environment_ignores_other_variables() -> None:
    """Only the prefix counts; the test database variable is not an app setting."""
    settings = settings_from_environment(DevelopmentConfig, {
        "HOME": "/root", "CONSENT_REGISTRY_SCHOOL_NAME": "Het Lyceum",
        "CONSENT_REGISTRY_TEST_DATABASE_URL": "postgresql://x"})
    assert settings == {"SCHOOL_NAME": "Het Lyceum"}


def test_two_instances_side_by_side(tmp_path: Path) -> None:
    """Two instances with their own database and upload folder do not see each other's data."""
    apps = []
    for name in ("a", "b"):
        env = _environ(tmp_path / name, CONSENT_REGISTRY_DATABASE_URL=f"sqlite:///{tmp_path / name}.db",
                       CONSENT_REGISTRY_UPLOAD_DIR=str(tmp_path / f"uploads-{name}"),
                       CONSENT_REGISTRY_ADMIN_EMAIL=f"admin@{name}.test")
        app = create_app(environ=env)
        result = app.test_cli_runner(env=env).invoke(args=["init"])
        assert result.exit_code == 0, result.output
        apps.append(app)
    for app, name in zip(apps, ("a", "b"), strict=True):
        with app.app_context():
            emails = db.session.execute(sa.select(User.email)).scalars().all()
            assert emails == [f"admin@{name}.test"]
            db.engine.dispose()


def test_init_creates_the_admin_once_and_migrates(tmp_path: Path) -> None:
    """`flask init` on an empty database migrates, creates an admin and prints a one-time password;
    a second run changes nothing."""
    env = _environ(tmp_path, CONSENT_REGISTRY_DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}")
    app = create_app(environ=env)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["init"])
    assert first.exit_code == 0, first.output
    assert "admin@school.invalid" in first.output
    assert re.search(r"one-time password: +\S{12,}", first.output)
    second = runner.invoke(args=["init"])
    assert second.exit_code == 0 and "one-time password" not in second.output
    with app.app_context():
        admin = db.session.execute(sa.select(User)).scalar_one()
        assert admin.role == "admin" and admin.must_change_password
        verify = runner.invoke(args=["audit", "verify"])
        assert verify.exit_code == 0
        db.engine.dispose()


def test_users_commands(app: Flask) -> None:
    """`flask users create` and `flask users token` make a working API token."""
    runner = app.test_cli_runner()
    created = runner.invoke(args=["users", "create", "--email", "dpo@school.test", "--role", "dpo",
                                  "--password", "a long enough passphrase"])
    assert created.exit_code == 0 and "One-time" not in created.output
    again = runner.invoke(args=["users", "create", "--email", "dpo@school.test", "--role", "dpo"])
    assert again.exit_code != 0 and "duplicate_email" in again.output
    weak = runner.invoke(args=["users", "create", "--email", "w@school.test", "--role", "staff",
                               "--password", "short"])
    assert weak.exit_code != 0
    bad_role = runner.invoke(args=["users", "create", "--email", "r@school.test", "--role", "root"])
    assert bad_role.exit_code != 0
    token = runner.invoke(args=["users", "token", "dpo@school.test"]).output.strip()
    assert token.startswith("crt_")
    assert app.test_client().get("/api/v1/people", headers=bearer(token)).status_code == 200
    missing = runner.invoke(args=["users", "token", "nobody@school.test"])
    assert missing.exit_code != 0


def test_migrations_match_the_models(app: Flask) -> None:
    """The migrated schema is exactly what the models describe, on this backend."""
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def test_migrations_downgrade_and_upgrade_again(app: Flask) -> None:
    """The first migration can be undone and redone (the audit triggers included)."""
    from flask_migrate import downgrade, upgrade

    downgrade(revision="base")
    with db.engine.connect() as conn:
        assert "people" not in sa.inspect(conn).get_table_names()
    upgrade()
    with db.engine.connect() as conn:
        assert "people" in sa.inspect(conn).get_table_names()
