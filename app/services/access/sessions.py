"""Dashboard sessions, kept on the server.

Why a table of sessions rather than a per-principal generation number in the cookie: a
generation can only end *every* session of a principal at once, so a nurse logging out on
one ward terminal would log herself out of the others, and there would be no record of
which sessions were open, since when and until when. A row per session ends exactly the one
logged out, lets revocation and rotation end all of a principal's sessions, and costs one
primary-key read per page (the principal is read on every page anyway).

The cookie (Starlette's signed session) carries a random token; the table keeps only its
SHA-256, so reading the table does not let anyone open a session. Every login, logout and
failed login is audited; a failed one as ``anonymous``, with at most the key's public id.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col

from app.services.access import principals
from app.services.audit import chain as audit
from models.principal import Principal, WebSession

# last_seen_at is a hint for people reading the table, not a security control: refreshing
# it at most this often keeps page views from writing on every click.
TOUCH_EVERY = timedelta(minutes=5)


def token_id(token: str) -> str:
    """The stored id of a session token (its SHA-256; the token is random, so no salt)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Open:
    """A live session: its principal, and whether ``last_seen_at`` is worth refreshing."""

    principal: Principal
    stale: bool


def login(
    session: Session,
    *,
    api_key: str,
    address: str,
    secret_key: str,
    now: datetime,
    admits: Callable[[Principal], bool],
) -> tuple[Principal, str] | None:
    """Check a key typed into the login form; open a session (its token) or audit the failure.

    ``admits`` is the dashboard's own rule (a person's role, not revoked). Either outcome is
    written to the audit trail; the caller commits in both cases.
    """
    principal = principals.authenticate(session, api_key=api_key, secret_key=secret_key, now=now)
    if principal is None or not admits(principal):
        prefix = principals.key_id(api_key)
        audit.append(
            session,
            actor="anonymous",
            action="session.login_failed",
            entity="login",
            entity_id=prefix or "-",
            at=now,
            after={
                "key_prefix": prefix,
                "address": address,
                "reason": "unknown or revoked key" if principal is None else "role not admitted",
            },
        )
        return None
    token = secrets.token_urlsafe(32)
    row = WebSession(
        id=token_id(token), principal_id=principal.id, created_at=now, last_seen_at=now
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        actor=principal,
        action="session.login",
        entity="principal",
        entity_id=principal.id,
        at=now,
        after={"session": row.id[:16], "address": address, "key_prefix": principal.key_prefix},
    )
    return principal, token


def resolve(session: Session, *, token: str, now: datetime, max_age_s: int) -> Open | None:
    """The principal of an open session, loaded afresh; None once ended, expired or unknown."""
    row = session.get(WebSession, token_id(token))
    if row is None or row.ended_at is not None:
        return None
    if now >= row.created_at + timedelta(seconds=max_age_s):
        return None
    principal = session.get(Principal, row.principal_id)
    if principal is None:
        return None
    return Open(principal=principal, stale=now - row.last_seen_at >= TOUCH_EVERY)


def touch(session: Session, *, token: str, now: datetime) -> None:
    """Record that an open session was used just now."""
    session.execute(
        update(WebSession)
        .where(col(WebSession.id) == token_id(token), col(WebSession.ended_at).is_(None))
        .values(last_seen_at=now)
    )


def logout(session: Session, *, token: str, now: datetime) -> bool:
    """End this one session (audited); False if it was already over."""
    row = session.get(WebSession, token_id(token), with_for_update=True)
    if row is None or row.ended_at is not None:
        return False
    row.ended_at, row.end_reason = now, "logout"
    session.add(row)
    principal = session.get(Principal, row.principal_id)
    audit.append(
        session,
        actor=principal if principal is not None else "anonymous",
        action="session.logout",
        entity="principal",
        entity_id=row.principal_id,
        at=now,
        after={"session": row.id[:16]},
    )
    return True


def end_all(session: Session, *, principal_id: str, now: datetime, reason: str) -> int:
    """End every open session of a principal (its key was revoked or replaced)."""
    result = session.execute(
        update(WebSession)
        .where(col(WebSession.principal_id) == principal_id, col(WebSession.ended_at).is_(None))
        .values(ended_at=now, end_reason=reason)
    )
    return int(getattr(result, "rowcount", 0) or 0)
