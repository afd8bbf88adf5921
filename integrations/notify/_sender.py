"""Sending one message to one contact point with Apprise."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import apprise

from integrations.notify._targets import is_email

log = logging.getLogger("v2v.notify")


@dataclass(frozen=True)
class SendResult:
    ok: bool
    error: str | None = None


def smtp_target(address: str, *, smtp_url: str, sender: str) -> str:
    """The Apprise ``mailto`` URL sending to ``address`` through the SMTP server ``smtp_url``.

    ``smtp://host:port`` is plain SMTP, ``smtp://…?starttls`` upgrades with STARTTLS and
    ``smtps://`` is SMTP over TLS; ``user:password@`` logs in.
    """
    parts = urlsplit(smtp_url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("V2V_SMTP_URL must look like smtp://host:port or smtps://host:port")
    host = parts.hostname
    port = parts.port or (465 if parts.scheme == "smtps" else 25)
    mode = "ssl" if parts.scheme == "smtps" else "starttls" if "starttls" in parts.query else ""
    login = ""
    if parts.username:
        login = quote(parts.username, safe="")
        if parts.password:
            login += ":" + quote(parts.password, safe="")
        login += "@"
    scheme = "mailtos" if mode else "mailto"
    query = f"smtp={quote(host)}&from={quote(sender)}&to={quote(address)}&format=text"
    query += f"&mode={mode}" if mode else "&mode=insecure"
    return f"{scheme}://{login}{host}:{port}?{query}"


class Notifier:
    """Sends through Apprise; plain addresses by the configured SMTP server."""

    def __init__(self, *, smtp_url: str | None, smtp_from: str) -> None:
        self.smtp_url = smtp_url
        self.smtp_from = smtp_from

    def send(self, *, target: str, subject: str, body: str) -> SendResult:
        """One attempt; a failure is reported, never raised, and names no token."""
        if is_email(target):
            if not self.smtp_url:
                return SendResult(False, "no SMTP server configured (V2V_SMTP_URL)")
            url = smtp_target(target, smtp_url=self.smtp_url, sender=self.smtp_from)
        else:
            url = target
        client = apprise.Apprise()
        if not client.add(url):
            return SendResult(False, "Apprise could not load the target")
        try:
            ok = bool(
                client.notify(title=subject, body=body, body_format=apprise.NotifyFormat.TEXT)
            )
        except Exception as exc:  # noqa: BLE001 - a plugin's error must not stop the outbox
            return SendResult(False, f"{type(exc).__name__} while sending")
        if not ok:
            return SendResult(False, "the target refused the message or was unreachable")
        return SendResult(True)
