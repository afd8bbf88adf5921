"""Key lifecycle: revocation and rotation, on an admin's or the command line's behalf.

Both end the principal's dashboard sessions and drop its cached copy, so a leaked key stops
at its next API call and its next page view. Neither ever records a key, only its prefix.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from app.errors import Conflict, NotFound
from app.services.access import principals, sessions
from app.services.audit import chain as audit
from models.principal import Principal


def _locked(session: Session, principal_id: str) -> Principal:
    stmt = select(Principal).where(Principal.id == principal_id).with_for_update()
    row = session.exec(stmt).first()
    if row is None:
        raise NotFound("no such principal")
    return row


def _revoked(row: Principal, now: datetime) -> bool:
    return row.revoked_at is not None and row.revoked_at <= now


def revoke(
    session: Session,
    *,
    actor: Principal | str,
    principal_id: str,
    now: datetime,
    reason: str | None = None,
) -> Principal:
    """Revoke a key now: the next call with it is 401 and its dashboard sessions end."""
    row = _locked(session, principal_id)
    if _revoked(row, now):
        raise Conflict("the key is already revoked", code="already-revoked")
    before = row.revoked_at
    row.revoked_at = now
    session.add(row)
    ended = sessions.end_all(session, principal_id=row.id, now=now, reason="revoked")
    audit.append(
        session,
        actor=actor,
        action="principal.revoked",
        entity="principal",
        entity_id=row.id,
        at=now,
        before={"revoked_at": before},
        after={"revoked_at": now, "key_prefix": row.key_prefix, "sessions_ended": ended},
        reason=reason,
    )
    session.flush()
    principals.forget(row.id)
    return row


def rotate_key(
    session: Session,
    *,
    actor: Principal | str,
    principal_id: str,
    secret_key: str,
    now: datetime,
    reason: str | None = None,
) -> tuple[Principal, str]:
    """Replace a key: the new one is returned once; the old one is dead from now on.

    The principal keeps its id (its audit history, notifications and on-call duties follow
    the person, not the key); the sessions opened with the old key end.
    """
    row = _locked(session, principal_id)
    if _revoked(row, now):
        raise Conflict(
            "a revoked key cannot be rotated; create a new principal", code="already-revoked"
        )
    old_prefix = row.key_prefix
    row.key_prefix, api_key, row.key_hash = principals.new_key(secret_key)
    session.add(row)
    ended = sessions.end_all(session, principal_id=row.id, now=now, reason="key_rotated")
    audit.append(
        session,
        actor=actor,
        action="principal.key_rotated",
        entity="principal",
        entity_id=row.id,
        at=now,
        before={"key_prefix": old_prefix},
        after={"key_prefix": row.key_prefix, "sessions_ended": ended},
        reason=reason,
    )
    session.flush()
    principals.forget(row.id)
    return row, api_key
