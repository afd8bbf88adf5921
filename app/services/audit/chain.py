"""The append-only, keyed hash-chained audit trail.

Each entry records who, what, when, the value before and after, and the reason (21 CFR
Part 11 §11.10(e); EU GMP Annex 11 §9). Its hash is an HMAC-SHA256, under a server secret
named by the entry's ``kid``, of its content and the previous hash: altering, removing or
reordering any entry breaks every later link, and without the secret nobody can recompute
the links after a rewrite. A deleted tail leaves a consistent chain; signed checkpoints
(``checkpoint.py``) catch that. Writers append under a lock (PostgreSQL advisory lock;
SQLite's single writer) so the chain never forks.

An entry is sealed at its transaction's commit: ``append`` records what happened, and just
before the COMMIT (SQLAlchemy's ``before_commit``) the transaction takes the chain's lock,
links its entries after the chain's head and inserts them. The lock is then held only from
the seal to the commit, not from a write's first audited step to its end: under the mix on
PostgreSQL people's audited writes waited 15 ms on average (p99 55 ms) for that lock, held
8 ms by each of them and 18 ms by each ingest group that wrote an excursion. An entry made
inside a savepoint that is rolled back is dropped with it, and a rolled-back transaction
seals nothing, as when entries were inserted at once. Code that reads the chain inside a
transaction that may have appended calls ``seal`` first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, col, select

from app.errors import Invalid
from app.raw import Raw, TableInsert
from app.services.audit.keys import AuditKeys, current_keys
from app.times import iso_z
from models.audit import GENESIS_HASH, AuditEntry
from models.principal import Principal

log = logging.getLogger(__name__)

# An arbitrary constant naming the audit chain's advisory lock on PostgreSQL.
AUDIT_LOCK_KEY = 0x5632_5641_5544  # "V2VAUD"
# Every journey step appends: the entry is inserted on the driver's connection (``_INSERT``
# below), without an ORM object to track.
_TABLE: Table = AuditEntry.__table__  # type: ignore[attr-defined]
# Every write request seals: the chain's head is read on the driver's connection (plain
# numbers and text; through SQLAlchemy's Session the statement cost several times itself).
_LOCK = "SELECT pg_advisory_xact_lock(?)"
_LAST = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"


# Far below the interpreter's recursion limit; input is capped shallower at the edge.
JSONABLE_MAX_DEPTH = 64


def jsonable(value: Any, _depth: int = 0) -> Any:
    """Plain JSON for before/after snapshots: UTC instants as ISO 8601, enums as values."""
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict | list | tuple) and _depth >= JSONABLE_MAX_DEPTH:
        raise Invalid(f"value nested deeper than {JSONABLE_MAX_DEPTH} levels", code="json-too-deep")
    if isinstance(value, dict):
        return {str(k): jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, _depth + 1) for v in value]
    return value


def canonical(
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
    kid: str | None = None,
) -> bytes:
    """The bytes an entry's hash covers: its content as canonical JSON (sorted keys, no
    spaces, UTF-8), with the key id when keyed (before 0010, entries had none)."""
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
    if kid is not None:
        payload["kid"] = kid
    text_ = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text_.encode("utf-8")


def entry_hash(*, key: bytes, kid: str, **content: Any) -> str:
    """HMAC-SHA256 of the entry's canonical content under the audit key ``kid``."""
    return hmac.new(key, canonical(kid=kid, **content), hashlib.sha256).hexdigest()


def _content(row: AuditEntry) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at,
        "actor": row.actor,
        "actor_id": row.actor_id,
        "action": row.action,
        "entity": row.entity,
        "entity_id": row.entity_id,
        "before": row.before,
        "after": row.after,
        "reason": row.reason,
        "prev_hash": row.prev_hash,
    }


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
) -> None:
    """Record one entry for the chain (flushes); it is linked and inserted when the caller's
    transaction commits (``seal``), and dropped if it rolls back."""
    session.flush()  # what the entry records is written before it, as the chain says
    content = {
        "at": at,
        "actor": actor.name if isinstance(actor, Principal) else actor,
        "actor_id": actor.id if isinstance(actor, Principal) else None,
        "action": action,
        "entity": entity,
        "entity_id": entity_id,
        "before": jsonable(before),
        "after": jsonable(after),
        "reason": reason,
    }
    # The innermost transaction it belongs to: rolled back, it takes the entry with it. The
    # transaction is begun here if nothing was written yet (it would not exist to roll back).
    session.connection()
    owner = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_PENDING, []).append((owner, content))


def seal(
    session: Session, *, first: Sequence[tuple[str, Sequence[Any]]] = (), commit: bool = False
) -> None:
    """Link the transaction's recorded entries after the chain's head and insert them, under
    the chain's lock (held to the commit); nothing to do if none are recorded.

    ``first``: the caller's last writes before the commit (``Raw`` statements), run ahead of
    the chain's lock in the same round trip on PostgreSQL (a creating request's stored
    response), whether or not entries are recorded.

    ``commit``: the caller commits next and writes nothing more: on PostgreSQL the entries
    and the COMMIT go in one round trip (the session's own commit then finds the transaction
    ended and only runs its bookkeeping). The lock is released a round trip sooner too."""
    if commit:
        session.flush()  # nothing of the transaction may be left to write after its COMMIT
    pending = session.info.pop(_PENDING, None)
    if not pending and not first:
        return
    raw = Raw.of(session)
    if not pending:
        raw.pipelined([*first, *_COMMIT] if commit and raw.postgres else first)
        return
    if raw.postgres:  # the head is read once the lock is held, in the same round trip
        *_, head = raw.pipelined([*first, (_LOCK, (AUDIT_LOCK_KEY,)), (_LAST, ())])
        last = head[0] if head else None
    else:  # SQLite: the transaction holds the one writer lock already
        raw.pipelined(first)
        last = raw.one(_LAST)
    seq, prev_hash = (int(last[0]) + 1, str(last[1])) if last else (1, GENESIS_HASH)
    keys = current_keys()
    rows = []
    for _, content in pending:
        entry = {**content, "seq": seq, "prev_hash": prev_hash}
        digest = entry_hash(key=keys.active_secret, kid=keys.active_kid, **entry)
        rows.append({**entry, "kid": keys.active_kid, "hash": digest})
        seq, prev_hash = seq + 1, digest
    inserts = [(_INSERT.sql, _INSERT.values(raw, row)) for row in rows]
    if commit and raw.postgres:
        raw.pipelined([*inserts, *_COMMIT])
    else:
        raw.many(_INSERT.sql, [values for _, values in inserts])


# An entry as the driver's own INSERT.
_INSERT = TableInsert(_TABLE)
_COMMIT = (("COMMIT", ()),)


_PENDING = "v2v_audit_pending"


@event.listens_for(Session, "before_commit")
def _seal_at_commit(session: Session) -> None:
    if not session.in_nested_transaction():  # a savepoint's release is not the commit
        seal(session)


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    pending = session.info.get(_PENDING)
    if not pending:
        return
    if not previous_transaction.nested:
        session.info.pop(_PENDING, None)
        return
    session.info[_PENDING] = [
        (owner, content) for owner, content in pending if not _within(owner, previous_transaction)
    ]


def _within(owner: SessionTransaction | None, transaction: SessionTransaction) -> bool:
    while owner is not None:
        if owner is transaction:
            return True
        owner = owner.parent
    return False


@event.listens_for(Session, "after_commit")
def _none_left(session: Session) -> None:
    if session.info.get(_PENDING) and not session.in_nested_transaction():
        # Cannot happen (before_commit seals): if it ever did, say so loudly.
        log.critical("audit entries were not sealed before a commit; they were dropped")
        session.info.pop(_PENDING, None)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    reason: str | None = None


def verify_chain(
    session: Session,
    *,
    batch: int = 2000,
    keys: AuditKeys | None = None,
    start: tuple[int, str] | None = None,
) -> VerifyResult:
    """Walk the chain in order and report the first entry whose link or keyed hash is wrong.

    ``start`` = (seq, hash) of an entry already proven (by a checkpoint) resumes there.
    """
    keys = keys or current_keys()
    after_seq, prev_hash = start or (0, GENESIS_HASH)
    expected_seq, count = after_seq + 1, 0
    rows = session.exec(
        select(AuditEntry)
        .where(col(AuditEntry.seq) > after_seq)
        .order_by(col(AuditEntry.seq))
        .execution_options(yield_per=batch)
    )
    for row in rows:
        count += 1
        if row.seq != expected_seq:
            return VerifyResult(False, count, expected_seq, "entry missing from the sequence")
        if row.prev_hash != prev_hash:
            return VerifyResult(False, count, row.seq, "link to the previous entry is broken")
        key = keys.secret(row.kid)
        if key is None:
            return VerifyResult(
                False, count, row.seq, f"entry keyed with an unknown audit key {row.kid!r}"
            )
        if not hmac.compare_digest(entry_hash(key=key, kid=row.kid, **_content(row)), row.hash):
            return VerifyResult(False, count, row.seq, "entry content does not match its hash")
        prev_hash, expected_seq = row.hash, expected_seq + 1
    return VerifyResult(True, count)


def head(session: Session) -> tuple[int, str]:
    """(seq, hash) of the newest entry; (0, genesis) for an empty chain."""
    last = session.exec(
        select(AuditEntry.seq, AuditEntry.hash).order_by(col(AuditEntry.seq).desc()).limit(1)
    ).first()
    return (last[0], last[1]) if last else (0, GENESIS_HASH)


def hash_at(session: Session, seq: int) -> str | None:
    """The stored hash of entry ``seq`` (the genesis hash for 0), None when it is missing."""
    if seq == 0:
        return GENESIS_HASH
    return session.exec(select(AuditEntry.hash).where(AuditEntry.seq == seq)).first()


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
