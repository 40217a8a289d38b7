"""Outgoing email over SMTP, configured by one URL (`STUDIO_SMTP_URL`).

`smtp://[user:password@]host[:port]` connects in plain text and upgrades with STARTTLS whenever
the server offers it (port 587 by default); `smtps://` is TLS from the first byte (port 465).
Certificates are verified. The sender is `STUDIO_MAIL_FROM`. The standard library's smtplib
does the work: one connection per message, which suits the few messages accounts send.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from cluster.errors import StudioError
from cluster.settings import Settings

TIMEOUT_S = 30


class MailUnavailable(StudioError):
    slug, status, title = "mail-unavailable", 503, "Email unavailable"


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("STUDIO_SMTP_URL must be smtp://host[:port] or smtps://host[:port]")
        implicit_tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit_tls else 587),
            implicit_tls=implicit_tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def mail_configured(settings: Settings) -> None:
    """Raises `MailUnavailable` unless an SMTP server is configured."""
    if settings.smtp_url is None:
        raise MailUnavailable("email is not configured (STUDIO_SMTP_URL)")


def compose(settings: Settings, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    return message


def send(settings: Settings, message: EmailMessage) -> None:
    """Delivers `message` to the configured server; raises `MailUnavailable` if it cannot."""
    mail_configured(settings)
    assert settings.smtp_url is not None
    server = SmtpServer.from_url(settings.smtp_url.get_secret_value())
    context = ssl.create_default_context()
    try:
        if server.implicit_tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                server.host, server.port, timeout=TIMEOUT_S, context=context
            )
        else:
            client = smtplib.SMTP(server.host, server.port, timeout=TIMEOUT_S)
        with client:
            if not server.implicit_tls:
                client.ehlo()
                if client.has_extn("starttls"):
                    client.starttls(context=context)
                    client.ehlo()
            if server.username is not None:
                client.login(server.username, server.password or "")
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        raise MailUnavailable(f"the mail server did not take the message: {error}") from None
