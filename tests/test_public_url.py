"""The links in mails point where the site is: PUBLIC_URL, else the address `flask run` serves on."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import FlaskGroup

from consent_registry import create_app
from consent_registry.consent.links import external_url

ROOT = Path(__file__).resolve().parents[1]


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment for an instance in tmp_path."""
    return {"CONSENT_REGISTRY_INSTANCE_PATH": str(tmp_path / "instance"),
            "CONSENT_REGISTRY_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "CONSENT_REGISTRY_UPLOAD_DIR": str(tmp_path / "uploads"), **extra}


def _served_by_flask_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str],
                         env: dict[str, str] | None = None) -> Flask:
    """The app `flask run ARGS` builds, caught where it would start serving."""
    served: dict[str, Any] = {}

    def run_simple(host: str, port: int, app: Flask, **_: Any) -> None:
        served.update(host=host, port=port, app=app)

    monkeypatch.setattr("flask.cli.run_simple", run_simple)
    cli = FlaskGroup(create_app=lambda: create_app(environ=_environ(tmp_path)))
    result = CliRunner().invoke(cli, ["run", *args], env=env or {}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return served["app"]


def _answer_link(app: Flask) -> str:
    """An answer link as a consent mail would carry it."""
    with app.app_context():
        return external_url("consent_public.answer", token="abc")


def test_flask_run_on_another_port_sends_links_to_that_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`flask run --port 5055` without PUBLIC_URL: mail links go to :5055, not :5000."""
    app = _served_by_flask_run(monkeypatch, tmp_path, ["--port", "5055"])
    assert app.config["PUBLIC_URL"] == "http://127.0.0.1:5055"
    assert _answer_link(app) == "http://127.0.0.1:5055/c/abc"


def test_the_port_make_run_passes_reaches_the_links(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`make run HOST= PORT=` hands both to `flask run` through FLASK_RUN_HOST/_PORT, which the
    server and the links both follow."""
    dry_run = subprocess.run(["make", "-n", "run", "PORT=5055", "HOST=127.0.0.2"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    command = next(line for line in dry_run.splitlines() if "flask run" in line)
    assert "FLASK_RUN_HOST=127.0.0.2" in command and "FLASK_RUN_PORT=5055" in command
    app = _served_by_flask_run(monkeypatch, tmp_path, [],
                               env={"FLASK_RUN_HOST": "127.0.0.2", "FLASK_RUN_PORT": "5055"})
    assert _answer_link(app) == "http://127.0.0.2:5055/c/abc"


def test_public_url_wins_over_the_served_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Behind a proxy the served port is not the public one: PUBLIC_URL is used as set."""
    served: dict[str, Any] = {}
    monkeypatch.setattr("flask.cli.run_simple", lambda host, port, app, **_: served.update(app=app))
    environ = {**_environ(tmp_path), "CONSENT_REGISTRY_PUBLIC_URL": "https://toestemming.school.nl/"}
    cli = FlaskGroup(create_app=lambda: create_app(environ=environ))
    CliRunner().invoke(cli, ["run", "--port", "5055"], catch_exceptions=False)
    assert _answer_link(served["app"]) == "https://toestemming.school.nl/c/abc"


def test_production_refuses_to_start_without_public_url(tmp_path: Path) -> None:
    """Production never guesses the address every e-mailed link is built on."""
    key = "k" * 20 + "Zq81-xP0_aa93LmnB4"
    with pytest.raises(RuntimeError, match="CONSENT_REGISTRY_PUBLIC_URL"):
        create_app(environ=_environ(tmp_path, CONSENT_REGISTRY_ENV="production",
                                    CONSENT_REGISTRY_SECRET_KEY=key, CONSENT_REGISTRY_AUDIT_KEY=key))
    app = create_app(environ=_environ(tmp_path, CONSENT_REGISTRY_ENV="production",
                                      CONSENT_REGISTRY_SECRET_KEY=key, CONSENT_REGISTRY_AUDIT_KEY=key,
                                      CONSENT_REGISTRY_PUBLIC_URL="https://toestemming.school.nl"))
    assert _answer_link(app) == "https://toestemming.school.nl/c/abc"


def test_other_commands_of_the_instance_link_where_it_is_served(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`flask worker` or `flask consent daily` beside `make run PORT=5055` send mail from another
    process: they read the address the serving process noted in the instance folder."""
    before = create_app(environ=_environ(tmp_path))
    assert before.config["PUBLIC_URL"] == "http://127.0.0.1:5000"  # nothing served yet
    _served_by_flask_run(monkeypatch, tmp_path, ["--port", "5055"])
    worker = create_app(environ=_environ(tmp_path))
    assert _answer_link(worker) == "http://127.0.0.1:5055/c/abc"
    elsewhere = create_app(environ=_environ(tmp_path / "other"))
    assert elsewhere.config["PUBLIC_URL"] == "http://127.0.0.1:5000"  # another instance's own


def test_a_new_instance_folder_with_keys_from_the_environment_still_serves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Both keys set in the environment write no key file; `flask run` on a new instance folder
    still notes the address it serves for the instance's other processes."""
    keys = {"CONSENT_REGISTRY_SECRET_KEY": "k" * 48, "CONSENT_REGISTRY_AUDIT_KEY": "a" * 48}
    monkeypatch.setattr("flask.cli.run_simple", lambda *args, **kwargs: None)
    cli = FlaskGroup(create_app=lambda: create_app(environ=_environ(tmp_path, **keys)))
    result = CliRunner().invoke(cli, ["run", "--port", "5056"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "instance" / "served_url").read_text().strip() == "http://127.0.0.1:5056"
