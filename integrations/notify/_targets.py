"""Contact points: an e-mail address or an Apprise URL from an allow-list of schemes.

Targets are secrets of a kind (an Apprise URL often holds a token), so they are shown only
masked, with a short fingerprint to tell them apart.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import threading
from urllib.parse import parse_qs, urlsplit

import apprise

EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# Messaging services a hospital uses, and plain JSON/form posts for integrations. Nothing
# that reads or writes local files (file://, syslog, dbus …) or runs commands.
SCHEMES = frozenset(
    {
        "mailto",
        "mailtos",
        "line",
        "msteams",
        "workflow",
        "workflows",
        "slack",
        "discord",
        "tgram",
        "ntfy",
        "ntfys",
        "json",
        "jsons",
        "form",
        "forms",
    }
)
HOSTED = frozenset({"line", "msteams", "slack", "discord", "tgram"})
# Apprise arguments that name files on this server (PGP keys) or change where mail goes.
REFUSED_ARGS = frozenset({"pgppub", "pgpprv", "pgp", "wkd", "attach"})


class InvalidTarget(ValueError):
    """The target is not an address or URL we send to."""


# Apprise logs a URL it cannot parse whole ("Unparseable URL line://<token>/"): while this
# thread checks a person's target, Apprise's own log records are dropped.
_checking = threading.local()


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_checking, "on", False)


logging.getLogger("apprise").addFilter(_Quiet())


def _loads(target: str) -> bool:
    _checking.on = True
    try:
        return apprise.Apprise.instantiate(target) is not None
    finally:
        _checking.on = False


def is_email(target: str) -> bool:
    return bool(EMAIL.match(target)) and len(target) <= 254


def _private(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved


def validate(target: str, *, allow_private: bool = False) -> str:
    """The target, checked: an e-mail address or an allowed Apprise URL Apprise can load."""
    target = target.strip()
    if is_email(target):
        return target
    if any(c.isspace() for c in target):
        raise InvalidTarget("a target holds no spaces")
    parts = urlsplit(target)
    scheme = parts.scheme.lower()
    if not scheme or "://" not in target:
        raise InvalidTarget("not an e-mail address or an Apprise URL (scheme://…)")
    if scheme not in SCHEMES:
        raise InvalidTarget(f"scheme {scheme}:// is not allowed; use one of {sorted(SCHEMES)}")
    args = {k.lower(): v for k, v in parse_qs(parts.query).items()}
    if REFUSED_ARGS & set(args):
        raise InvalidTarget("argument not allowed: " + ", ".join(sorted(REFUSED_ARGS & set(args))))
    # The server would connect to these hosts; the hosted services' "host" is a token.
    hosts = list(args.get("smtp", []))
    if scheme not in HOSTED:
        hosts.append(parts.hostname or "")
    if not allow_private and any(_private(h) for h in hosts if h):
        raise InvalidTarget("loopback, private and link-local hosts are not allowed")
    if not _loads(target):
        if scheme == "msteams":
            # Apprise 2 dropped msteams:// with Microsoft's retired Office 365 connectors.
            raise InvalidTarget(
                "Microsoft retired Teams connectors (msteams://): post to Teams through a "
                "Power Automate Workflows URL, workflow://…"
            )
        raise InvalidTarget(f"Apprise cannot use this {scheme}:// URL (see its documentation)")
    return target


def fingerprint(target: str) -> str:
    """12 hex characters naming a target without revealing it."""
    return hashlib.sha256(target.encode("utf-8")).hexdigest()[:12]


def target_kind(target: str) -> str:
    return "email" if is_email(target) else urlsplit(target).scheme.lower()


def mask(target: str) -> str:
    """``a…@hospital.example`` or ``line://…`` plus the fingerprint: never a token."""
    if is_email(target):
        local, _, domain = target.partition("@")
        return f"{local[:1]}…@{domain}"
    return f"{target_kind(target)}://…{fingerprint(target)[:6]}"
