"""A real SMTP server for tests (aiosmtpd), on loopback: STARTTLS or implicit TLS with a certificate from a
throwaway CA (trustme), AUTH, and a mailbox the test reads back.

    with SmtpServer(tmp_path) as smtp:          # STARTTLS required, AUTH closeloop / smtp-secret
        ...                                     # smtp.port, smtp.ca_file, smtp.messages (email.message.Message)

Recipients whose local part starts with `bounce` are refused with 550 (a permanent failure), `later` with 451
(a transient one). `delay` holds each "250" back after the message is in the mailbox (a crash in that window
leaves a message delivered that the sender never heard was)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = "closeloop", "smtp-secret-0123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Mailbox:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay  # seconds between receiving the data and answering "250": a window to crash in
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        local = address.split("@", 1)[0]
        if local.startswith("bounce"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("later"):
            return "451 4.3.0 Mailbox temporarily unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 2.0.0 Ok: queued"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode() \
        and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


class SmtpServer:
    def __init__(self, tmp: Path, *, security: str = "starttls", auth: bool = True, delay: float = 0.0) -> None:
        self.security = security
        self.port = free_port()
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = str(tmp / f"smtp-ca-{self.port}.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(server_tls)
        self.mailbox = _Mailbox(delay)
        kwargs: dict[str, Any] = {}
        if auth:
            kwargs.update(authenticator=_authenticate, auth_require_tls=security == "starttls")
        if security == "starttls":
            kwargs.update(tls_context=server_tls, require_starttls=True)
        elif security == "tls":
            kwargs.update(ssl_context=server_tls)
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port, **kwargs)

    @property
    def messages(self) -> list[EmailMessage]:
        with self.mailbox.lock:
            return list(self.mailbox.messages)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        try:
            self.controller.stop()
        except AssertionError:  # stopped already
            pass
