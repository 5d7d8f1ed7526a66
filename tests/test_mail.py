"""Sending mail: message structure, SMTP against a real local server, the outbox folder, the settings."""

from __future__ import annotations

import email
import email.policy
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from consent_registry import mail as mail_module
from consent_registry.mail import (
    Mail,
    OutboxMailer,
    PermanentMailError,
    SMTPMailer,
    TransientMailError,
    build_message,
    get_mailer,
    init_app,
    mailer_for,
)

from conftest import make_app
from smtp_server import SMTPTestServer

SENDER = "Consent registry <noreply@school.example>"
USER, PASSWORD = "registry", "correct-horse-7"


def a_mail(**changes: Any) -> Mail:
    """A typical consent request mail, with changes."""
    values: dict[str, Any] = {
        "to": "ouder@example.org",
        "subject": "Toestemming voor Zoë",
        "text": "Beste ouder,\n\nMag de foto van Zoë op de website? Ja / Nee\n",
        "html": "<p>Beste ouder,</p><p>Mag de foto van <b>Zoë</b> op de website?</p>",
        "language": "nl",
        "headers": {"X-Consent-Request": "12"},
    }
    values.update(changes)
    return Mail(**values)


def smtp_mailer(server: SMTPTestServer, **changes: Any) -> SMTPMailer:
    """A mailer for the test server, logging in when the server wants it."""
    username, password = server.auth or (None, None)
    settings: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "tls": server.tls,
        "ca_file": server.cafile,
        "username": username,
        "password": password,
        "timeout": 5.0,
        "sender": SENDER,
    }
    settings.update(changes)
    return SMTPMailer(**settings)


@pytest.fixture
def plain_server() -> Iterator[SMTPTestServer]:
    """A plain SMTP server without TLS or AUTH."""
    with SMTPTestServer() as server:
        yield server


# The message itself


def test_message_is_text_and_html_alternatives_in_utf8() -> None:
    message = build_message(a_mail(), sender=SENDER)
    raw = message.as_bytes()

    assert raw.isascii(), "headers RFC 2047-encoded and bodies quoted-printable: 7-bit clean"
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.iter_parts()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"
    assert "Zoë" in plain.get_content() and "<b>Zoë</b>" in html.get_content()
    assert list(message.iter_attachments()) == []
    assert b"=?utf-8?" in raw
    assert str(message["Subject"]) == "Toestemming voor Zoë"
    assert str(message["From"]) == SENDER
    assert str(message["To"]) == "ouder@example.org"
    assert message["Content-Language"] == "nl"
    assert message["X-Consent-Request"] == "12"
    assert message["Date"].datetime.tzinfo is not None
    assert re.fullmatch(r"<[^@<>\s]+@school\.example>", message["Message-ID"])


def test_language_and_message_id() -> None:
    english = build_message(a_mail(language="en"), sender=SENDER)
    first = build_message(a_mail(), sender=SENDER)
    chosen = build_message(a_mail(), sender=SENDER, message_id="<request-12@school.example>")

    assert english["Content-Language"] == "en"
    assert first["Message-ID"] != english["Message-ID"]
    assert chosen["Message-ID"] == "<request-12@school.example>"


@pytest.mark.parametrize(
    "changes",
    [
        {"to": "ouder@example.org\r\nBcc: everyone@example.org"},
        {"to": "ouder@example.org\nBcc: everyone@example.org"},
        {"subject": "Toestemming\r\nBcc: everyone@example.org"},
        {"subject": "Toestemming\u2028Bcc: everyone@example.org"},
        {"headers": {"X-Consent-Request": "12\r\nBcc: everyone@example.org"}},
        {"headers": {"X-Consent-Request: 12\r\nBcc": "everyone@example.org"}},
        {"headers": {"Bcc": "everyone@example.org"}},
        {"headers": {"from": "rector@school.example"}},
        {"headers": {"Content-Type": "text/html"}},
        {"language": "nl\r\nBcc: everyone@example.org"},
        {"to": "ouder@example.org, everyone@example.org"},
        {"to": "not an address"},
        {"to": ""},
        {"to": "zoë@example.org"},
    ],
)
def test_header_injection_and_bad_recipients_are_refused(
    changes: dict[str, Any], plain_server: SMTPTestServer
) -> None:
    with pytest.raises(PermanentMailError):
        build_message(a_mail(**changes), sender=SENDER)
    with smtp_mailer(plain_server).session() as session, pytest.raises(PermanentMailError):
        session.send(a_mail(**changes))
    assert plain_server.connections == 0


def test_display_name_recipient_is_accepted() -> None:
    message = build_message(a_mail(to="Ouder van Zoë <ouder@example.org>"), sender=SENDER)
    assert message["To"].addresses[0].addr_spec == "ouder@example.org"
    assert message["To"].addresses[0].display_name == "Ouder van Zoë"


# SMTP against a real server


def test_plain_smtp_delivers_the_message(plain_server: SMTPTestServer) -> None:
    with smtp_mailer(plain_server).session() as session:
        message_id = session.send(a_mail())

    (received,) = plain_server.received
    assert received.mail_from == "noreply@school.example"
    assert received.rcpt_tos == ("ouder@example.org",)
    assert not received.tls
    message = received.message
    assert message["Message-ID"] == message_id
    assert message["Subject"] == "Toestemming voor Zoë"
    assert message["Content-Language"] == "nl"
    assert message["X-Consent-Request"] == "12"
    assert message.get_content_type() == "multipart/alternative"
    body = message.get_body(("plain",))
    assert body is not None and "Mag de foto van Zoë" in body.get_content()
    assert list(message.iter_attachments()) == []


def test_starttls_with_login_verifies_the_certificate() -> None:
    with SMTPTestServer(tls="starttls", auth=(USER, PASSWORD)) as server:
        with smtp_mailer(server).session() as session:
            session.send(a_mail())
        (received,) = server.received
        assert received.tls and received.login == USER

        # The same server with only the system's CAs: its certificate must not be accepted.
        with smtp_mailer(server, ca_file=None).session() as session, pytest.raises(PermanentMailError):
            session.send(a_mail())
        assert len(server.received) == 1


def test_starttls_is_not_silently_skipped(plain_server: SMTPTestServer) -> None:
    mailer = smtp_mailer(plain_server, tls="starttls")
    with mailer.session() as session, pytest.raises(PermanentMailError, match="STARTTLS"):
        session.send(a_mail())
    assert plain_server.received == []


def test_implicit_tls_with_login() -> None:
    with SMTPTestServer(tls="ssl", auth=(USER, PASSWORD)) as server:
        with smtp_mailer(server).session() as session:
            session.send(a_mail())
        (received,) = server.received
        assert received.tls and received.login == USER


def test_wrong_password_is_permanent() -> None:
    with SMTPTestServer(tls="starttls", auth=(USER, PASSWORD)) as server:
        mailer = smtp_mailer(server, password="wrong")
        with mailer.session() as session, pytest.raises(PermanentMailError) as caught:
            session.send(a_mail())
        assert caught.value.smtp_code == 535
        assert server.received == []


def test_server_down_is_transient_and_the_session_recovers(plain_server: SMTPTestServer) -> None:
    plain_server.stop()
    with smtp_mailer(plain_server).session() as session:
        with pytest.raises(TransientMailError):
            session.send(a_mail())
        plain_server.start()
        session.send(a_mail())
    assert len(plain_server.messages) == 1


def test_silent_server_times_out_as_transient() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        mailer = SMTPMailer(host="127.0.0.1", port=port, tls="none", timeout=0.2, sender=SENDER)
        with mailer.session() as session, pytest.raises(TransientMailError):
            session.send(a_mail())


@pytest.mark.parametrize(
    ("command", "reply", "error", "code"),
    [
        ("RCPT", "451 4.3.0 Try again later", TransientMailError, 451),
        ("RCPT", "550 5.1.1 No such user", PermanentMailError, 550),
        ("MAIL", "452 4.3.1 Insufficient system storage", TransientMailError, 452),
        ("DATA", "451 4.3.0 Queue unavailable", TransientMailError, 451),
        ("DATA", "554 5.7.1 Message refused", PermanentMailError, 554),
    ],
)
def test_refusals_are_classified_and_the_connection_stays_usable(
    plain_server: SMTPTestServer, command: str, reply: str, error: type[Exception], code: int
) -> None:
    plain_server.fail_next(reply, command=command)
    with smtp_mailer(plain_server).session() as session:
        with pytest.raises(error) as caught:
            session.send(a_mail())
        assert getattr(caught.value, "smtp_code", None) == code
        session.send(a_mail(to="andere.ouder@example.org"))

    assert [m["To"] for m in plain_server.messages] == ["andere.ouder@example.org"]
    assert plain_server.connections == 1


def test_one_refused_recipient_among_many(plain_server: SMTPTestServer) -> None:
    plain_server.reject("weg@example.org")
    outcomes = []
    with smtp_mailer(plain_server).session() as session:
        for to in ("een@example.org", "weg@example.org", "twee@example.org"):
            try:
                session.send(a_mail(to=to))
                outcomes.append("sent")
            except PermanentMailError:
                outcomes.append("refused")
    assert outcomes == ["sent", "refused", "sent"]
    assert plain_server.connections == 1


def test_many_messages_share_one_connection(plain_server: SMTPTestServer) -> None:
    with smtp_mailer(plain_server).session() as session:
        ids = [session.send(a_mail(to=f"ouder{n}@example.org")) for n in range(5)]

    assert plain_server.connections == 1
    assert len(set(ids)) == 5
    assert [m["Message-ID"] for m in plain_server.messages] == ids


def test_no_connection_without_messages(plain_server: SMTPTestServer) -> None:
    with smtp_mailer(plain_server).session() as session:
        assert session is not None
    assert plain_server.connections == 0


@pytest.mark.parametrize("tls", ["none", "starttls"])
@pytest.mark.parametrize("reply", [None, "421 4.4.2 Idle timeout exceeded"])
def test_reconnects_once_when_the_server_dropped_an_idle_connection(tls: str, reply: str | None) -> None:
    with SMTPTestServer(tls=tls) as server:  # type: ignore[arg-type]
        with smtp_mailer(server).session() as session:
            session.send(a_mail(to="een@example.org"))
            server.drop_connections(reply)
            session.send(a_mail(to="twee@example.org"))
            session.send(a_mail(to="drie@example.org"))

        assert [m["To"] for m in server.messages] == [
            "een@example.org", "twee@example.org", "drie@example.org"
        ]
        assert server.connections == 2


def test_no_endless_reconnecting_when_the_server_is_gone(plain_server: SMTPTestServer) -> None:
    with smtp_mailer(plain_server).session() as session:
        session.send(a_mail())
        plain_server.stop()
        with pytest.raises(TransientMailError):
            session.send(a_mail())


def test_password_is_never_sent_unencrypted_to_another_host() -> None:
    with pytest.raises(ValueError, match="CONSENT_REGISTRY_SMTP_TLS"):
        SMTPMailer(host="smtp.example.org", tls="none", username=USER, password=PASSWORD)
    with pytest.raises(ValueError, match="CONSENT_REGISTRY_SMTP_TLS"):
        SMTPMailer(tls="tls")
    with pytest.raises(ValueError, match="CONSENT_REGISTRY_MAIL_FROM"):
        SMTPMailer(sender="not an address")


# The outbox folder


def test_outbox_writes_parseable_eml_files_and_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "deep" / "outbox"
    mailer = OutboxMailer(folder, sender=SENDER)
    with mailer.session() as session:
        ids = [session.send(a_mail(to=f"ouder{n}@example.org")) for n in range(3)]

    files = sorted(folder.iterdir())
    assert [p.suffix for p in files] == [".eml"] * 3, "no temporary files left behind"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()) == [
        p.relative_to(tmp_path) for p in files
    ]
    for path in files:
        assert re.fullmatch(r"\d{8}T\d{12}Z-[0-9a-f]{16}\.eml", path.name)
        assert "ouder" not in path.name
    parsed = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]
    assert sorted(str(m["Message-ID"]) for m in parsed) == sorted(ids)
    assert {str(m["Subject"]) for m in parsed} == {"Toestemming voor Zoë"}
    assert all(m.get_content_type() == "multipart/alternative" for m in parsed)


def test_outbox_refuses_injection_without_writing(tmp_path: Path) -> None:
    with OutboxMailer(tmp_path / "outbox").session() as session, pytest.raises(PermanentMailError):
        session.send(a_mail(subject="Hallo\nBcc: everyone@example.org"))
    assert list(tmp_path.rglob("*.eml")) == []


# Choosing the mailer from the settings


def an_app(tmp_path: Path, **settings: Any) -> Flask:
    """The real app in test mode with these settings."""
    return make_app(f"sqlite:///{tmp_path}/t.db", tmp_path, **settings)


def test_outbox_is_the_default(tmp_path: Path) -> None:
    app = an_app(tmp_path)
    mailer = mailer_for(app)
    assert isinstance(mailer, OutboxMailer)
    assert mailer.directory == Path(app.instance_path) / "outbox"

    configured = mailer_for(an_app(tmp_path, MAIL="outbox", OUTBOX_DIR=str(tmp_path / "mails")))
    assert isinstance(configured, OutboxMailer) and configured.directory == tmp_path / "mails"


def test_smtp_is_configured_from_settings(tmp_path: Path) -> None:
    app = an_app(
        tmp_path, MAIL="smtp", SMTP_HOST="smtp.example.org", SMTP_PORT="587", SMTP_USERNAME=USER,
        SMTP_PASSWORD=PASSWORD, SMTP_TLS="starttls", SMTP_TIMEOUT="7", MAIL_FROM=SENDER,
    )
    mailer = mailer_for(app)
    assert isinstance(mailer, SMTPMailer)
    assert (mailer.host, mailer.port, mailer.username, mailer.tls, mailer.timeout) == (
        "smtp.example.org", 587, USER, "starttls", 7.0
    )
    assert mailer.sender == SENDER


def test_unknown_mail_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CONSENT_REGISTRY_MAIL"):
        mailer_for(an_app(tmp_path, MAIL="sendmail"))


def test_the_app_sends_through_the_configured_server(tmp_path: Path) -> None:
    with SMTPTestServer(tls="starttls", auth=(USER, PASSWORD)) as server:
        app = an_app(tmp_path, **server.settings())
        init_app(app)
        with app.app_context(), get_mailer().session() as session:
            message_id = session.send(a_mail())
        (message,) = server.messages
        assert message["Message-ID"] == message_id
        assert message["From"] == mail_module.DEFAULT_SENDER
