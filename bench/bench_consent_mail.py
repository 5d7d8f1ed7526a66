"""Mass mailing: 2,000 consent requests through a local SMTP server.

Prints messages per second, the pipeline's cost against plain smtplib sending prepared messages
over one connection, and how long the web request that starts the mailing takes against a
health check (it only queues the work).
"""

from __future__ import annotations

import smtplib
import socket
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller

from bench.bench_foundation import _pupil_file
from bench.common import best_of, report
from consent_registry import create_app
from consent_registry.audit import SYSTEM
from consent_registry.auth.service import create_user
from consent_registry.auth.tokens import issue_token
from consent_registry.consent.models import ConsentRecipient
from consent_registry.consent.sending import send_request_mails
from consent_registry.db import db
from consent_registry.people.importing import import_file
from consent_registry.people.models import Person

PUPILS = 1000  # under 16 with two guardians each: 2,000 recipients


class Counter:
    """An SMTP handler that accepts and counts messages."""

    def __init__(self) -> None:
        """Start at zero."""
        self.count = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        """Accept one message."""
        self.count += 1
        return "250 OK"


def _app(folder: Path, port: int):
    """A migrated app whose jobs only queue (embedded) and whose mail goes to the local server."""
    app = create_app({
        "DATABASE_URL": f"sqlite:///{folder / 'bench.db'}", "UPLOAD_DIR": str(folder / "uploads"),
        "PASSWORD_HASH_FAST": True, "JOBS": "embedded", "MAIL": "smtp", "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": port, "SMTP_TLS": "none", "MAIL_RATE_PER_SECOND": 0,
    }, environ={"CONSENT_REGISTRY_INSTANCE_PATH": str(folder / "instance")})
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
    return app


def _plain_smtp(port: int, n: int) -> None:
    """Baseline: n prepared messages over one smtplib connection."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.nl", "b@example.nl", "x"
    message.set_content("Toestemming gevraagd. " * 40)
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for _ in range(n):
            smtp.send_message(message)


def run() -> None:
    """Queue and send a whole-school request; print the ratios."""
    handler = Counter()
    with socket.socket() as probe:  # aiosmtpd's readiness check cannot follow port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            app = _app(Path(tmp), port)
            with app.app_context():
                import_file(_pupil_file(PUPILS, first_year=2012), actor=SYSTEM)  # all under 16
                user, _ = create_user(email="bench@school.nl", role="staff",
                                      password="bench password 123", actor=SYSTEM)
                token = issue_token(user, label="bench", actor=SYSTEM)
                db.session.commit()
                ids = [p.id for p in db.session.query(Person).all()]
            client = app.test_client()
            headers = {"Authorization": f"Bearer {token}"}
            start = time.perf_counter()
            response = client.post("/api/v1/consent-requests", headers=headers,
                                   json={"person_ids": ids, "channels": ["facebook"]})
            request_seconds = time.perf_counter() - start
            assert response.status_code == 202, response.get_json()
            recipients = response.get_json()["recipients"]
            health = best_of(lambda: client.get("/healthz"), repeat=20)
            with app.app_context():
                start = time.perf_counter()
                send_request_mails(response.get_json()["id"])
                send_seconds = time.perf_counter() - start
                sent = db.session.query(ConsentRecipient).filter_by(delivery="sent").count()
            assert sent == recipients == handler.count, (sent, recipients, handler.count)
            baseline = best_of(lambda: _plain_smtp(port, recipients), repeat=1)
            print(f"{'mail: messages per second':<48} {recipients / send_seconds:8.0f}   "
                  f"({recipients} recipients)")
            report(f"mail: send {recipients} consent requests", send_seconds, baseline,
                   "plain smtplib, prepared messages, one connection")
            report(f"mail: web request queueing {recipients} mails", request_seconds, health,
                   f"GET /healthz (this run: {request_seconds:.2f} s)")
    finally:
        controller.stop()
