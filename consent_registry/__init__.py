"""The consent registry: publication consents for school media, enforced before anything is posted."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask_login import LoginManager
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from . import errors, i18n, jobs, mail, storage
from .auth.access import allow_public, csrf, enforce_access, undeclared_endpoints
from .config import (
    BaseConfig,
    check_production_key,
    check_public_url,
    choose_config,
    default_public_url,
    load_audit_key,
    load_or_create_secret_key,
    settings_from_environment,
)
from .db import db, migrate
from .labels import check_timezone
from .leases import check_settings as check_lease_settings
from .media.matching import policy_from_settings
from .ratelimit import limiter, storage_uri

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
login_manager = LoginManager()


@login_manager.user_loader
def _load_user(session_id: str) -> Any:
    """The user of a session, if its auth version is current and the session was not ended."""
    from .auth.models import User
    from .auth.sessions import session_is_live

    user_id, _, version = session_id.partition(".")
    if not (user_id.isdigit() and version.isdigit()):
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not user.active or user.auth_version != int(version):
        return None
    # The cookie is only signed: a copy saved before logout is refused by its ended session.
    return user if session_is_live(user.id) else None


def _configure(
    app: Flask, config: type[BaseConfig] | dict[str, Any] | None, environ: os._Environ[str] | dict
) -> None:
    """Class defaults, then CONSENT_REGISTRY_* variables, then what the caller passed."""
    base = config if isinstance(config, type) else choose_config(environ)
    app.config.from_object(base)
    app.config.update(settings_from_environment(base, environ))
    if isinstance(config, dict):
        app.config.update(config)
    cfg = app.config
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    if not cfg.get("SECRET_KEY"):
        cfg["SECRET_KEY"] = load_or_create_secret_key(Path(app.instance_path))
    check_production_key(cfg["ENV"], cfg["SECRET_KEY"])
    if not cfg.get("AUDIT_KEY"):
        cfg["AUDIT_KEY"] = load_audit_key(Path(app.instance_path), env=cfg["ENV"])
    elif len(cfg["AUDIT_KEY"]) < 32:
        raise RuntimeError("CONSENT_REGISTRY_AUDIT_KEY must be at least 32 characters long")
    check_public_url(cfg["ENV"], cfg.get("PUBLIC_URL"))
    cfg["PUBLIC_URL"] = cfg.get("PUBLIC_URL") or default_public_url(Path(app.instance_path), environ)
    check_lease_settings(cfg)
    # A mistyped matching threshold should stop the start, not every later analysis.
    cfg["MATCH_POLICY"] = policy_from_settings(cfg)
    cfg["VOICE_MATCH_POLICY"] = policy_from_settings(cfg, prefix="VOICE_")
    cfg["BABEL_DEFAULT_TIMEZONE"] = check_timezone(cfg["SCHOOL_TIMEZONE"])
    database_url = cfg.get("DATABASE_URL") or (
        f"sqlite:///{Path(app.instance_path) / 'consent_registry.sqlite3'}"
    )
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    cfg["SQLALCHEMY_DATABASE_URI"] = database_url
    cfg["RATELIMIT_STORAGE_URI"] = storage_uri(cfg)
    if cfg.get("STORAGE", "local") == "local":
        Path(cfg["UPLOAD_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)


def _trust_proxies(app: Flask) -> None:
    """Believe X-Forwarded-For/-Proto/-Host from exactly TRUSTED_PROXIES proxies, and no one else.

    Behind a proxy every request comes from the proxy's address: the login throttle and the
    public pages' limit would count all users as one; and the browser's https and host are the
    proxy's, which the forms' same-origin check compares with. With 0 the headers are ignored,
    so a client cannot choose its own address by writing them. (Links in mails never follow the
    host: they are built on PUBLIC_URL.)
    """
    proxies = int(app.config["TRUSTED_PROXIES"])
    if proxies < 0:
        raise RuntimeError("CONSENT_REGISTRY_TRUSTED_PROXIES must be 0 or more")
    if proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Foreign keys on, WAL for concurrent readers, and patience when another writer holds the lock."""
    # Python's sqlite3 would start transactions only at the first write, after reads done outside
    # any transaction; we begin them ourselves (see _sqlite_begin) so a transaction is one unit.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    """Begin every SQLite transaction holding the write lock.

    SQLite has one writer at a time anyway; taking the lock up front makes concurrent requests
    wait their turn (busy_timeout) instead of failing when a read-then-write transaction finds
    another writer got there first. The audit chain relies on it. PostgreSQL needs none of this.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _security_headers(response: Response) -> Response:
    """Headers every page carries: no framing, no sniffing, nothing loaded from elsewhere."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
    )
    return response


def _register_blueprints(app: Flask) -> None:
    """Every part of the site."""
    from . import main
    from .api import bp as api_bp
    from .auth.admin_views import bp as users_bp
    from .auth.views import bp as auth_bp
    from .biometrics.views import bp as reference_photos_bp
    from .biometrics.views import settings_bp
    from .consent.public import bp as consent_public_bp
    from .consent.views import bp as consent_bp
    from .dpo import bp as dpo_bp
    from .media.views import bp as media_bp
    from .people.import_views import bp as import_bp
    from .people.views import bp as people_bp
    from .publishing import preview_views  # noqa: F401  (the answer page's preview joins consent_public)
    from .publishing.views import bp as publications_bp
    from .ratelimit import limit_blueprint
    from .school_views import bp as school_bp

    limit_blueprint(consent_public_bp)
    for blueprint in (main.bp, auth_bp, users_bp, people_bp, import_bp, consent_bp,
                      consent_public_bp, media_bp, api_bp, settings_bp, reference_photos_bp, dpo_bp,
                      publications_bp, school_bp):
        app.register_blueprint(blueprint)


def _declare_static_public(app: Flask) -> None:
    """Stylesheets and scripts are public; the static view is wrapped to say so."""
    serve = app.view_functions["static"]

    @allow_public
    def static(filename: str) -> Response:
        """A file from the static folder."""
        return serve(filename=filename)

    app.view_functions["static"] = static


def create_app(
    config: type[BaseConfig] | dict[str, Any] | None = None,
    *,
    environ: os._Environ[str] | dict[str, str] | None = None,
) -> Flask:
    """Build the application: configuration, database, services, pages, API and commands."""
    environ = os.environ if environ is None else environ
    instance_path = environ.get("CONSENT_REGISTRY_INSTANCE_PATH")
    app = Flask(__name__, instance_path=instance_path and str(Path(instance_path).resolve()))
    _configure(app, config, environ)
    _trust_proxies(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sa.event.listen(db.engine, "connect", _sqlite_pragmas)
            sa.event.listen(db.engine, "begin", _sqlite_begin)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"
    csrf.init_app(app)
    i18n.init_app(app)
    limiter.init_app(app)
    mail.init_app(app)
    storage.init_app(app)
    from . import school as _school  # noqa: F401  (its table joins the metadata)
    from .biometrics import models as _biometrics  # noqa: F401  (its tables join the metadata)
    from .biometrics import service as _biometric_jobs  # noqa: F401  (its jobs register on import)
    from .consent import sending  # noqa: F401  (its jobs register on import)
    from .dpo import models as _dpo  # noqa: F401  (its tables join the metadata)
    from .media import analysis  # noqa: F401  (its jobs register on import)
    from .publishing import jobs as _publishing_jobs  # noqa: F401  (its jobs register on import)
    from .publishing import models as _publishing  # noqa: F401  (its tables join the metadata)
    from .publishing import takedown as _takedowns  # noqa: F401  (its jobs register on import)

    jobs.init_app(app)
    _register_blueprints(app)
    errors.init_app(app)
    csrf.exempt("consent_registry.api")
    app.before_request(enforce_access)
    app.after_request(_security_headers)
    _declare_static_public(app)

    from .cli import register_commands

    register_commands(app)
    if missing := undeclared_endpoints(app):
        raise RuntimeError(f"routes without declared access: {', '.join(missing)}")
    return app
