"""Email over SMTP, with the standard library's `smtplib` and `email`.

Why the standard library: activities are blocking functions run in the worker's thread pool, so an asyncio
client (aiosmtplib) would buy nothing here, and smtplib has STARTTLS, implicit TLS and AUTH built in,
maintained with Python itself: no dependency to keep up.

Each message is multipart/alternative: the plain text the notification templates render, and the same text as
HTML (`notify/message.html.j2`). One thread per postmortem: every message about it carries `In-Reply-To` and
`References` naming the postmortem's thread id, `<postmortem-<hash>@<sender's domain>>`. The `Message-ID` is
derived from the notification's key, so a resend after a crash (SMTP cannot be asked what it delivered) is
the same message, and mail clients show it once."""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from closeloop.integrations.base import Channel, IntegrationError, Notification
from closeloop.integrations.email.settings import EmailSettings
from closeloop.models import Person
from closeloop.rendering import render_notification_html


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class EmailChannel(Channel):
    name = "email"

    def __init__(self, settings: EmailSettings, password: str | None, *, template_dir: Path | None = None) -> None:
        self.settings = settings
        self._password = password
        self.template_dir = template_dir

    def address(self, person: Person) -> str | None:
        return person.email or None

    # ------------------------------------------------------------------ the message

    def message_id(self, key: str) -> str:
        return f"<closeloop-{_hash(key)}@{self.settings.domain}>"

    def thread_id(self, postmortem_id: str) -> str:
        return f"<postmortem-{_hash(postmortem_id)}@{self.settings.domain}>"

    def compose(self, notification: Notification, person: Person, address: str) -> EmailMessage:
        s = self.settings
        msg = EmailMessage()
        msg["From"] = Address(display_name=s.from_name, addr_spec=s.from_address)
        msg["To"] = Address(display_name=person.name, addr_spec=address)
        if s.reply_to:
            msg["Reply-To"] = s.reply_to
        msg["Subject"] = notification.subject
        msg["Date"] = format_datetime(notification.at)
        msg["Message-ID"] = self.message_id(notification.key)
        thread = self.thread_id(notification.postmortem_id)
        msg["In-Reply-To"] = thread
        msg["References"] = thread
        msg["List-Id"] = f"closeloop postmortems <{s.list_id or 'postmortems.' + s.domain}>"
        if "postmortem" in notification.links:
            msg["List-Archive"] = f"<{notification.links['postmortem']}>"
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: vacation responders do not answer it
        msg["X-Closeloop-Kind"] = notification.kind
        msg["X-Closeloop-Postmortem"] = notification.postmortem_id
        text = notification.body.rstrip("\n") + "\n"
        footer = [f"{label}: {notification.links[k]}" for k, label in
                  (("item", "The action item"), ("postmortem", "The postmortem")) if k in notification.links]
        footer += [f"{a.label}: {a.url}" for a in notification.actions if a.url]
        if footer:
            text += "\n-- \n" + "\n".join(footer) + "\n"
        msg.set_content(text)
        html = render_notification_html(notification.subject, notification.body, notification.links,
                                        [{"label": a.label, "url": a.url} for a in notification.actions if a.url],
                                        template_dir=self.template_dir)
        msg.add_alternative(html, subtype="html")
        return msg

    # ------------------------------------------------------------------ sending

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.ca_file)
        if not self.settings.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        assert s.port is not None
        if s.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._tls())
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            if s.security == "starttls":
                smtp.starttls(context=self._tls())
        if s.username:
            smtp.login(s.username, self._password or "")
        return smtp

    def deliver(self, notification: Notification, person: Person, address: str) -> str:
        msg = self.compose(notification, person, address)
        self.send(msg, address)
        return str(msg["Message-ID"])

    def send(self, msg: EmailMessage, address: str) -> None:
        """Send `msg` to `address` through the SMTP server. IntegrationError, retryable or not (a 5xx refusal,
        a login refused, a certificate that does not verify)."""
        where = f"SMTP {self.settings.host}:{self.settings.port}"
        try:
            smtp = self._connect()
            try:
                refused = smtp.send_message(msg, from_addr=self.settings.from_address, to_addrs=[address])
            finally:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()
        except smtplib.SMTPRecipientsRefused as e:
            code, reason = next(iter(e.recipients.values()))
            raise IntegrationError(f"{where} refused {address}: {code} {_text(reason)}",
                                   retryable=not 500 <= code < 600) from None
        except smtplib.SMTPAuthenticationError as e:
            raise IntegrationError(f"{where}: login as {self.settings.username!r} refused: {e.smtp_code} "
                                   f"{_text(e.smtp_error)}", retryable=False) from None
        except smtplib.SMTPNotSupportedError as e:
            raise IntegrationError(f"{where}: {e} (check `security`)", retryable=False) from None
        except smtplib.SMTPResponseException as e:  # sender refused, data refused, ...
            raise IntegrationError(f"{where}: {e.smtp_code} {_text(e.smtp_error)}",
                                   retryable=not 500 <= e.smtp_code < 600) from None
        except ssl.SSLCertVerificationError as e:
            raise IntegrationError(f"{where}: the server's certificate does not verify: {e.verify_message}",
                                   retryable=False) from None
        except (TimeoutError, smtplib.SMTPException, OSError) as e:  # down, timed out, disconnected
            raise IntegrationError(f"{where}: {type(e).__name__}: {e}", retryable=True) from None
        if refused:
            code, reason = refused[address]
            raise IntegrationError(f"{where} refused {address}: {code} {_text(reason)}", retryable=code < 500)


def _text(reason: bytes | str) -> str:
    return (reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)).replace("\n", " ")[:300]
