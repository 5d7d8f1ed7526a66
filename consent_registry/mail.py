"""Sending e-mail: one small interface, an SMTP implementation and an embedded outbox folder."""

from __future__ import annotations

import email.policy
import ipaddress
import logging
import os
import re
import secrets
import smtplib
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol

from flask import Flask, current_app

logger = logging.getLogger(__name__)

DEFAULT_SENDER = "Consent registry <noreply@school.invalid>"
TLS_MODES = ("starttls", "ssl", "none")
MAIL_KINDS = ("outbox", "smtp")

# Headers build_message sets itself, or that would change who receives or appears to send the mail.
_RESERVED_HEADERS = frozenset(
    {
        "from", "sender", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version",
        "content-language", "return-path", "received",
    }
)
_FIELD_NAME = re.compile(r"[!-9;-~]+")
# Line breaks of any kind (and other controls) could start a new header; none belong in one.
_UNSAFE_IN_HEADER = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")
_MESSAGE_ID = re.compile(r"<[!-=?-~]+@[!-=?-~]+>")


@dataclass(frozen=True, slots=True)
class Mail:
    """One message to one recipient, with a plain-text and an HTML body."""

    to: str
    subject: str
    text: str
    html: str
    language: str = "nl"
    headers: Mapping[str, str] = field(default_factory=dict)
    # The name shown with the sender's address (the school's choice); None: MAIL_FROM's own.
    sender_name: str | None = None


class MailError(Exception):
    """A message could not be sent."""

    def __init__(self, message: str, *, smtp_code: int | None = None) -> None:
        super().__init__(message)
        self.smtp_code = smtp_code


class TransientMailError(MailError):
    """Sending failed for a reason that may pass: worth retrying later."""


class PermanentMailError(MailError):
    """Sending failed for a reason that retrying will not fix."""


class MailSession(Protocol):
    """Sends messages over one open channel."""

    def send(self, mail: Mail) -> str:
        """Send one message and return its Message-ID."""
        ...


class Mailer(Protocol):
    """Opens sessions for sending mail."""

    def session(self) -> AbstractContextManager[MailSession]:
        """A session whose connection is reused for every message sent in it."""
        ...


def _parse_address(value: str) -> Address | None:
    """The single, well-formed, ASCII address in value, or None."""
    if not value or _UNSAFE_IN_HEADER.search(value):
        return None
    header = email.policy.default.header_factory("To", value)
    if header.defects or len(header.addresses) != 1:
        return None
    address = header.addresses[0]
    # Non-ASCII addresses would need SMTPUTF8, which we neither use nor can count on.
    if not (address.username and address.domain and address.addr_spec.isascii()):
        return None
    if any(char.isspace() for char in address.addr_spec):
        return None
    return address


def _sender_address(sender: str) -> Address:
    """The parsed sender, or ValueError naming the setting."""
    address = _parse_address(sender)
    if address is None:
        raise ValueError(f"CONSENT_REGISTRY_MAIL_FROM is not a single valid address: {sender!r}")
    return address


def _check_header_value(name: str, value: str) -> None:
    """Refuse values that could end the header and start another."""
    if not isinstance(value, str) or _UNSAFE_IN_HEADER.search(value):
        raise PermanentMailError(f"the {name} header may not contain line breaks or control characters")


def build_message(mail: Mail, *, sender: str, message_id: str | None = None) -> EmailMessage:
    """The MIME message for mail: multipart/alternative text and HTML, all headers safe."""
    from_address = _sender_address(sender)
    if mail.sender_name:
        _check_header_value("From", mail.sender_name)
        from_address = Address(display_name=mail.sender_name, addr_spec=from_address.addr_spec)
    _check_header_value("To", mail.to)
    to_address = _parse_address(mail.to)
    if to_address is None:
        raise PermanentMailError("the recipient is not a single valid e-mail address")
    _check_header_value("Subject", mail.subject)
    if not _LANGUAGE_TAG.fullmatch(mail.language):
        raise PermanentMailError(f"not a language tag: {mail.language!r}")
    if message_id is not None and not _MESSAGE_ID.fullmatch(message_id):
        raise PermanentMailError("the Message-ID must look like <local@domain>")
    for name, value in mail.headers.items():
        if not _FIELD_NAME.fullmatch(name):
            raise PermanentMailError(f"not a header name: {name!r}")
        lowered = name.lower()
        if lowered in _RESERVED_HEADERS or lowered.startswith("content-"):
            raise PermanentMailError(f"the {name} header is set by the mailer")
        _check_header_value(name, value)

    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = from_address
    message["To"] = to_address
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id or make_msgid(domain=from_address.domain)
    for name, value in mail.headers.items():
        message[name] = value
    # Quoted-printable keeps the message 7-bit clean and long HTML lines within SMTP's limits.
    message.set_content(mail.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(mail.html, subtype="html", charset="utf-8", cte="quoted-printable")
    # Set last: set_content() and add_alternative() move Content-* headers into the first part.
    message["Content-Language"] = mail.language
    return message


def _smtp_code(error: BaseException) -> int | None:
    """The SMTP reply code carried by an smtplib exception, if any."""
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code
    if isinstance(error, smtplib.SMTPRecipientsRefused) and error.recipients:
        return next(iter(error.recipients.values()))[0]
    return None


def _reply_text(error: BaseException) -> str:
    """The server's reply text, decoded."""
    reply: bytes | str = b""
    if isinstance(error, smtplib.SMTPResponseException):
        reply = error.smtp_error
    elif isinstance(error, smtplib.SMTPRecipientsRefused) and error.recipients:
        reply = next(iter(error.recipients.values()))[1]
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _classify(error: BaseException, server: str) -> MailError:
    """The Transient or Permanent error that an smtplib or socket error amounts to."""
    code = _smtp_code(error)
    if code is not None:
        text = f"{server} answered {code} {_reply_text(error)}".rstrip()
        if 400 <= code < 500:
            return TransientMailError(text, smtp_code=code)
        if 500 <= code < 600:
            return PermanentMailError(text, smtp_code=code)
        return TransientMailError(text, smtp_code=code)
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return TransientMailError(f"{server} closed the connection: {error}")
    if isinstance(error, ssl.SSLCertVerificationError):
        return PermanentMailError(f"{server} has a certificate we do not trust: {error.verify_message}")
    if isinstance(error, smtplib.SMTPException):
        return PermanentMailError(f"{server}: {error}")
    if isinstance(error, UnicodeError):
        return PermanentMailError(f"{server}: the SMTP username and password must be ASCII")
    return TransientMailError(f"{server} could not be reached: {error}")


class _StaleConnection(Exception):
    """The server closed a reused connection before the message was handed over."""


class _SMTPSession:
    """One SMTP connection, opened at the first send and reused for the rest."""

    def __init__(self, mailer: SMTPMailer) -> None:
        self._mailer = mailer
        self._smtp: smtplib.SMTP | None = None

    def send(self, mail: Mail) -> str:
        """Send one message and return its Message-ID."""
        message = build_message(mail, sender=self._mailer.sender)
        recipient = message["To"].addresses[0].addr_spec
        data = message.as_bytes(policy=email.policy.SMTP)
        try:
            try:
                self._transact(recipient, data)
            except _StaleConnection:
                # Servers drop idle connections (Postfix after 300 s); nothing was handed over yet,
                # so one retry on a fresh connection cannot send the message twice.
                logger.info("SMTP server %s closed the idle connection; reconnecting", self._mailer.server)
                self._transact(recipient, data)
        except (smtplib.SMTPException, OSError, UnicodeError) as error:
            raise _classify(error, self._mailer.server) from error
        return str(message["Message-ID"])

    def _transact(self, recipient: str, data: bytes) -> None:
        """MAIL, RCPT and DATA for one message; the connection stays open for the next one."""
        reused = self._smtp is not None
        smtp = self._smtp if self._smtp is not None else self._connect()
        try:
            try:
                code, reply = smtp.mail(self._mailer.envelope_sender)
            except smtplib.SMTPServerDisconnected:
                if reused:
                    raise _StaleConnection from None
                raise
            if code == 421 and reused:
                raise _StaleConnection
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, self._mailer.envelope_sender)
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
            code, reply = smtp.data(data)
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
        except smtplib.SMTPException as error:
            code = _smtp_code(error)
            if code is None or code == 421:
                self._abandon()
            else:
                self._reset()
            raise
        except BaseException:
            self._abandon()
            raise

    def _connect(self) -> smtplib.SMTP:
        """Open, secure and log in to a new connection."""
        mailer = self._mailer
        # Given the host, the constructors connect, check the greeting, and close again on failure;
        # they also keep the host name that TLS verifies the certificate against.
        smtp: smtplib.SMTP
        if mailer.tls == "ssl":
            smtp = smtplib.SMTP_SSL(
                mailer.host, mailer.port, mailer.local_hostname,
                timeout=mailer.timeout, context=mailer.tls_context,
            )
        else:
            smtp = smtplib.SMTP(mailer.host, mailer.port, mailer.local_hostname, timeout=mailer.timeout)
        try:
            smtp.ehlo_or_helo_if_needed()
            if mailer.tls == "starttls":
                smtp.starttls(context=mailer.tls_context)
                smtp.ehlo_or_helo_if_needed()
            if mailer.username:
                smtp.login(mailer.username, mailer.password or "")
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        return smtp

    def _reset(self) -> None:
        """Abort the refused transaction so the connection can carry the next one."""
        if self._smtp is None:
            return
        try:
            self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._abandon()

    def _abandon(self) -> None:
        """Close a broken connection without QUIT, which could wait out the timeout once more."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def close(self) -> None:
        """Say goodbye to the server, if connected."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


class SMTPMailer:
    """Sends through an SMTP server, with STARTTLS, implicit TLS or (locally) no TLS."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 25,
        username: str | None = None,
        password: str | None = None,
        tls: str = "starttls",
        timeout: float = 30.0,
        ca_file: str | os.PathLike[str] | None = None,
        sender: str = DEFAULT_SENDER,
        local_hostname: str | None = None,
    ) -> None:
        if tls not in TLS_MODES:
            raise ValueError(f"CONSENT_REGISTRY_SMTP_TLS must be one of {', '.join(TLS_MODES)}, not {tls!r}")
        if username and tls == "none" and not _is_loopback(host):
            raise ValueError(
                "Refusing to send the SMTP password unencrypted to another host: "
                "set CONSENT_REGISTRY_SMTP_TLS to starttls or ssl."
            )
        self.host = host
        self.port = port
        self.username = username or None
        self.password = password
        self.tls = tls
        self.timeout = timeout
        self.sender = sender
        self.envelope_sender = _sender_address(sender).addr_spec
        self.local_hostname = local_hostname
        self.tls_context = ssl.create_default_context(cafile=ca_file or None) if tls != "none" else None

    @property
    def server(self) -> str:
        """host:port, for messages."""
        return f"{self.host}:{self.port}"

    @contextmanager
    def session(self) -> Iterator[MailSession]:
        """A session on one connection, opened at the first send and closed at the end."""
        session = _SMTPSession(self)
        try:
            yield session
        finally:
            session.close()


def _is_loopback(host: str) -> bool:
    """Whether host is this machine, where an unencrypted login exposes nothing."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _OutboxSession:
    """Writes each message to the outbox folder."""

    def __init__(self, mailer: OutboxMailer) -> None:
        self._mailer = mailer

    def send(self, mail: Mail) -> str:
        """Write one message as an .eml file and return its Message-ID."""
        message = build_message(mail, sender=self._mailer.sender)
        try:
            self._mailer.write(message.as_bytes(policy=email.policy.SMTP))
        except OSError as error:
            raise TransientMailError(f"could not write to the outbox: {error}") from error
        return str(message["Message-ID"])


class OutboxMailer:
    """The embedded default: every message becomes an .eml file in a folder."""

    def __init__(self, directory: str | os.PathLike[str], *, sender: str = DEFAULT_SENDER) -> None:
        _sender_address(sender)
        self.directory = Path(directory)
        self.sender = sender

    @contextmanager
    def session(self) -> Iterator[MailSession]:
        """A session writing into the outbox folder."""
        yield _OutboxSession(self)

    def write(self, data: bytes) -> Path:
        """Store data under a fresh name, all at once, and return the file's path."""
        # Mails hold addresses and links that act on someone's consent: private to the service user.
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.directory / f"{stamp}-{secrets.token_hex(8)}.eml"
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        return target


def mailer_for(app: Flask) -> Mailer:
    """The mailer the app's MAIL setting asks for."""
    config = app.config
    kind = config.get("MAIL") or "outbox"
    sender = config.get("MAIL_FROM") or DEFAULT_SENDER
    if kind == "outbox":
        directory = config.get("OUTBOX_DIR") or Path(app.instance_path) / "outbox"
        return OutboxMailer(directory, sender=sender)
    if kind == "smtp":
        return SMTPMailer(
            host=config.get("SMTP_HOST") or "127.0.0.1",
            port=int(config.get("SMTP_PORT") or 25),
            username=config.get("SMTP_USERNAME") or None,
            password=config.get("SMTP_PASSWORD") or None,
            tls=config.get("SMTP_TLS") or "starttls",
            timeout=float(config.get("SMTP_TIMEOUT") or 30),
            ca_file=config.get("SMTP_CA_FILE") or None,
            sender=sender,
        )
    raise ValueError(f"CONSENT_REGISTRY_MAIL must be one of {', '.join(MAIL_KINDS)}, not {kind!r}")


def init_app(app: Flask) -> None:
    """Choose the app's mailer once, at startup, so a bad setting stops the app from starting."""
    app.extensions["mailer"] = mailer_for(app)


def get_mailer() -> Mailer:
    """The current app's mailer."""
    return current_app.extensions["mailer"]
