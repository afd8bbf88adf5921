"""The append-only, SHA-256 hash-chained audit trail.

Each entry records who, what, when, the value before and after, and the reason (21 CFR
Part 11 §11.10(e); EU GMP Annex 11 §9). Its hash covers its content and the previous hash,
so altering, removing or reordering any entry breaks every later link. Writers append under
a lock (PostgreSQL advisory lock; SQLite's single writer) so the chain never forks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, select

from app.times import iso_z
from models.audit import GENESIS_HASH, AuditEntry
from models.principal import Principal

# An arbitrary constant naming the audit chain's advisory lock on PostgreSQL.
AUDIT_LOCK_KEY = 0x5632_5641_5544  # "V2VAUD"


def jsonable(value: Any) -> Any:
    """Plain JSON for before/after snapshots: UTC instants as ISO 8601, enums as values."""
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def entry_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    actor_id: str | None,
    action: str,
    entity: str,
    entity_id: str,
    before: Any,
    after: Any,
    reason: str | None,
    prev_hash: str,
) -> str:
    payload = {
        "seq": seq,
        "at": jsonable(at),
        "actor": actor,
        "actor_id": actor_id,
        "action": action,
        "entity": entity,
        "entity_id": entity_id,
        "before": before,
        "after": after,
        "reason": reason,
        "prev_hash": prev_hash,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def append(
    session: Session,
    *,
    actor: Principal | str,
    action: str,
    entity: str,
    entity_id: str,
    at: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
) -> AuditEntry:
    """Append one entry to the chain (flushes; the caller's transaction commits it)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK_KEY})
    last = session.exec(
        select(AuditEntry.seq, AuditEntry.hash).order_by(col(AuditEntry.seq).desc()).limit(1)
    ).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    actor_name = actor.name if isinstance(actor, Principal) else actor
    actor_id = actor.id if isinstance(actor, Principal) else None
    before_j, after_j = jsonable(before), jsonable(after)
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor_name,
        actor_id=actor_id,
        action=action,
        entity=entity,
        entity_id=entity_id,
        before=before_j,
        after=after_j,
        reason=reason,
        prev_hash=prev_hash,
        hash=entry_hash(
            seq=seq,
            at=at,
            actor=actor_name,
            actor_id=actor_id,
            action=action,
            entity=entity,
            entity_id=entity_id,
            before=before_j,
            after=after_j,
            reason=reason,
            prev_hash=prev_hash,
        ),
    )
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    reason: str | None = None


def verify_chain(session: Session, *, batch: int = 2000) -> VerifyResult:
    """Walk the chain in order and report the first entry whose link or content is wrong."""
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    rows = session.exec(
        select(AuditEntry).order_by(col(AuditEntry.seq)).execution_options(yield_per=batch)
    )
    for row in rows:
        count += 1
        if row.seq != expected_seq:
            return VerifyResult(False, count, expected_seq, "entry missing from the sequence")
        if row.prev_hash != prev_hash:
            return VerifyResult(False, count, row.seq, "link to the previous entry is broken")
        recomputed = entry_hash(
            seq=row.seq,
            at=row.at,
            actor=row.actor,
            actor_id=row.actor_id,
            action=row.action,
            entity=row.entity,
            entity_id=row.entity_id,
            before=row.before,
            after=row.after,
            reason=row.reason,
            prev_hash=row.prev_hash,
        )
        if recomputed != row.hash:
            return VerifyResult(False, count, row.seq, "entry content does not match its hash")
        prev_hash, expected_seq = row.hash, expected_seq + 1
    return VerifyResult(True, count)


def entries(
    session: Session, *, entity: str | None, entity_id: str | None, after_seq: int, limit: int
) -> list[AuditEntry]:
    """Entries in chain order after ``after_seq``, optionally of one entity; one row beyond
    ``limit`` tells the caller that another page follows."""
    stmt = select(AuditEntry).where(col(AuditEntry.seq) > after_seq)
    if entity:
        stmt = stmt.where(AuditEntry.entity == entity)
    if entity_id:
        stmt = stmt.where(AuditEntry.entity_id == entity_id)
    return list(session.exec(stmt.order_by(col(AuditEntry.seq)).limit(limit + 1)))
