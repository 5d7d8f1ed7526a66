"""A real SMTP server on 127.0.0.1 for tests: TLS, AUTH, scripted refusals, dropped connections, downtime."""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import ssl
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
COMMANDS = ("MAIL", "RCPT", "DATA")


@dataclass(frozen=True, slots=True)
class Received:
    """One accepted message as the server saw it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool
    login: str | None
    message: EmailMessage


class _Controller(Controller):
    """aiosmtpd's controller, reporting each connection and the port it really bound."""

    def __init__(self, owner: SMTPTestServer, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._owner = owner

    def factory(self) -> SMTP:
        """A protocol instance for one new connection."""
        smtpd = super().factory()
        self._owner._connection_made(smtpd)
        return smtpd

    def _create_server(self) -> Any:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        # Port 0 lets the OS choose a free port; the readiness probe must then use the real one.
        server = await super()._create_server()
        self.port = server.sockets[0].getsockname()[1]
        return server


class _Handler:
    """aiosmtpd hooks: scripted refusals, then storing what arrives."""

    def __init__(self, owner: SMTPTestServer) -> None:
        self._owner = owner

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self._owner.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if reply := self._owner._next_failure("MAIL"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if reply := self._owner._next_failure("RCPT") or self._owner._rejection(address):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if reply := self._owner._next_failure("DATA"):
            return reply
        assert server.transport is not None
        self._owner._store(
            envelope,
            tls=server.transport.get_extra_info("ssl_object") is not None,
            login=session.auth_data if session.authenticated else None,
        )
        return "250 2.0.0 Message accepted"


class SMTPTestServer:
    """An aiosmtpd server on 127.0.0.1 in a thread, used as a context manager.

    tls: "none", "starttls" (required before MAIL) or "ssl" (implicit TLS); certificates come
    from a throwaway trustme CA whose PEM file is `cafile`. auth=(user, password) makes AUTH
    mandatory before MAIL. fail_with answers every RCPT with that reply until set to None.
    """

    host = HOST

    def __init__(
        self,
        *,
        port: int = 0,
        tls: Literal["none", "starttls", "ssl"] = "none",
        auth: tuple[str, str] | None = None,
        fail_with: str | None = None,
    ) -> None:
        if tls not in ("none", "starttls", "ssl"):
            raise ValueError(f"tls must be none, starttls or ssl, not {tls!r}")
        self.port = port
        self.tls = tls
        self.auth = auth
        self.fail_with = fail_with
        self.received: list[Received] = []
        self.connections = 0
        self.cafile: str | None = None
        self._failures: dict[str, deque[str]] = {command: deque() for command in COMMANDS}
        self._rejected: dict[str, str] = {}
        self._protocols: list[SMTP] = []
        self._counting = False
        self._changed = threading.Condition()
        self._controller: _Controller | None = None
        self._folder: Path | None = None
        self._server_context: ssl.SSLContext | None = None

    # Lifecycle

    def __enter__(self) -> SMTPTestServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Listen (again) on the same port."""
        if self._controller is not None:
            return
        if self.tls != "none" and self._server_context is None:
            self._make_certificates()
        kwargs: dict[str, Any] = {"hostname": HOST, "port": self.port, "ready_timeout": 10.0}
        if self.tls == "ssl":
            kwargs["ssl_context"] = self._server_context
        elif self.tls == "starttls":
            kwargs["tls_context"] = self._server_context
            kwargs["require_starttls"] = True
        if self.auth is not None:
            kwargs["authenticator"] = self._authenticate
            # aiosmtpd counts only STARTTLS as encryption, and warns when AUTH is required without
            # it; implicit TLS needs AUTH too, so handle_MAIL insists on it instead.
            kwargs["auth_require_tls"] = self.tls == "starttls"
        controller = _Controller(self, _Handler(self), **kwargs)
        self._counting = False
        controller.start()
        # The controller's own readiness probe has connected by now; count only clients from here.
        self._counting = True
        self.port = controller.port
        self._controller = controller

    def stop(self) -> None:
        """Drop every connection and stop listening: the server is down until start()."""
        if self._controller is None:
            return
        self.drop_connections()
        self._controller.stop()
        self._controller = None

    def close(self) -> None:
        """Stop and remove the certificate files."""
        self.stop()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    # Scripting the server

    def fail_next(self, reply: str, *, command: str = "RCPT", times: int = 1) -> None:
        """Answer the next `times` MAIL, RCPT or DATA commands with reply, e.g. "451 4.3.0 Try later"."""
        if command not in COMMANDS:
            raise ValueError(f"command must be one of {', '.join(COMMANDS)}")
        with self._changed:
            self._failures[command].extend([reply] * times)

    def reject(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        """Always refuse this recipient with reply."""
        with self._changed:
            self._rejected[address.lower()] = reply

    def drop_connections(self, reply: str | None = None) -> None:
        """Close every open connection, as a server does with idle ones; reply (e.g. 421) first if given."""
        controller = self._controller
        if controller is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._drop(reply), controller.loop)
        future.result(timeout=10)

    def clear(self) -> None:
        """Forget the messages and connections seen so far."""
        with self._changed:
            self.received.clear()
            self.connections = 0

    # What arrived

    @property
    def messages(self) -> list[EmailMessage]:
        """Every accepted message, parsed with email.policy.default."""
        with self._changed:
            return [received.message for received in self.received]

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[EmailMessage]:
        """Block until at least count messages arrived; for senders in other threads."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.received) >= count, timeout):
                got = len(self.received)
                raise AssertionError(f"expected {count} messages within {timeout} s, got {got}")
            return [received.message for received in self.received]

    def settings(self) -> dict[str, Any]:
        """App settings that make consent_registry send through this server."""
        username, password = self.auth or (None, None)
        return {
            "MAIL": "smtp",
            "SMTP_HOST": HOST,
            "SMTP_PORT": self.port,
            "SMTP_TLS": self.tls,
            "SMTP_CA_FILE": self.cafile,
            "SMTP_USERNAME": username,
            "SMTP_PASSWORD": password,
            "SMTP_TIMEOUT": 5,
        }

    # Internals, called from the server's thread

    def _make_certificates(self) -> None:
        """A throwaway CA, its PEM file, and a certificate for 127.0.0.1 and localhost."""
        authority = trustme.CA()
        certificate = authority.issue_cert(HOST, "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        self._folder = Path(tempfile.mkdtemp(prefix="smtp-test-ca-"))
        cafile = self._folder / "ca.pem"
        authority.cert_pem.write_to_path(str(cafile))
        self.cafile = str(cafile)
        self._server_context = context

    def _connection_made(self, smtpd: SMTP) -> None:
        with self._changed:
            self._protocols.append(smtpd)
            if self._counting:
                self.connections += 1

    def _next_failure(self, command: str) -> str | None:
        with self._changed:
            queue = self._failures[command]
            if queue:
                return queue.popleft()
            return self.fail_with if command == "RCPT" else None

    def _rejection(self, address: str) -> str | None:
        with self._changed:
            return self._rejected.get(address.lower())

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self.auth is not None
        user, password = self.auth
        if isinstance(data, LoginPassword) and data == (user.encode(), password.encode()):
            return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    def _store(self, envelope: Envelope, *, tls: bool, login: str | None) -> None:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        received = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=content,
            tls=tls,
            login=login,
            message=message,
        )
        with self._changed:
            self.received.append(received)
            self._changed.notify_all()

    async def _drop(self, reply: str | None) -> None:
        with self._changed:
            protocols = [smtpd for smtpd in self._protocols if smtpd.transport is not None]
            self._protocols = protocols
        for smtpd in protocols:
            if reply is not None:
                await smtpd.push(reply)
            # abort(): closing a TLS transport would wait for the idle client's close_notify.
            if smtpd.transport is not None:
                smtpd.transport.abort()
        deadline = time.monotonic() + 5
        while any(smtpd.transport is not None for smtpd in protocols) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
