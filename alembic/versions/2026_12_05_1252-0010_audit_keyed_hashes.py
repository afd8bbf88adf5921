"""audit keyed hashes: a key id per entry, and existing chains re-keyed with HMAC-SHA256

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 12:52:23.444404

Before this revision an entry's hash was a plain SHA-256 of its content, which anyone with
write access to the database could recompute after a rewrite. Upgrading first verifies the
old chain (refusing, and changing nothing, if it is already broken: re-keying it would make
a tampered history verify), then rewrites every hash as HMAC-SHA256 under the active key of
``V2V_AUDIT_KEYS`` and records that key's id. The append-only triggers are suspended for
this one data step, inside the migration's transaction, and restored. The hashing is copied
here, not imported, so this revision keeps meaning what it meant when it was written.
"""

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate renders its types)
from alembic import op

import models.base

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
PAGE = 1000
AUDIT = sa.table(
    "audit_log",
    sa.column("seq", sa.Integer()),
    sa.column("at", models.base.UTCDateTime()),
    sa.column("actor", sa.String()),
    sa.column("actor_id", sa.String()),
    sa.column("action", sa.String()),
    sa.column("entity", sa.String()),
    sa.column("entity_id", sa.String()),
    sa.column("before", sa.JSON()),
    sa.column("after", sa.JSON()),
    sa.column("reason", sa.String()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


class ChainBroken(RuntimeError):
    pass


def _canonical(row: Any, prev_hash: str, kid: str | None) -> bytes:
    at: datetime = row.at
    payload = {
        "seq": row.seq,
        "at": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "actor": row.actor,
        "actor_id": row.actor_id,
        "action": row.action,
        "entity": row.entity,
        "entity_id": row.entity_id,
        "before": row.before,
        "after": row.after,
        "reason": row.reason,
        "prev_hash": prev_hash,
    }
    if kid is not None:
        payload["kid"] = kid
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def _sha256(row: Any, prev_hash: str) -> str:
    return hashlib.sha256(_canonical(row, prev_hash, None)).hexdigest()


def _pages(conn: sa.Connection, columns: Sequence[Any]) -> Iterator[list[Any]]:
    after = 0
    while True:
        rows = list(
            conn.execute(
                sa.select(*columns).where(AUDIT.c.seq > after).order_by(AUDIT.c.seq).limit(PAGE)
            )
        )
        if not rows:
            return
        yield rows
        after = rows[-1].seq


def _verify(conn: sa.Connection, columns: Sequence[Any], hash_of: Callable[[Any], str]) -> int:
    """Walk the stored chain; raise ChainBroken at its first bad entry; return its length."""
    expected, prev = 1, GENESIS
    for rows in _pages(conn, columns):
        for row in rows:
            if row.seq != expected:
                raise ChainBroken(f"entry {expected} is missing")
            if row.prev_hash != prev:
                raise ChainBroken(f"the link of entry {row.seq} to the previous one is broken")
            if not hmac.compare_digest(hash_of(row), row.hash):
                raise ChainBroken(f"entry {row.seq} does not match its hash")
            prev, expected = row.hash, expected + 1
    return expected - 1


def _rehash(
    conn: sa.Connection, columns: Sequence[Any], hash_of: Callable[[Any, str], str]
) -> None:
    """Rewrite every link and hash in chain order (each hash covers the new previous one)."""
    update = (
        AUDIT.update()
        .where(AUDIT.c.seq == sa.bindparam("b_seq"))
        .values(prev_hash=sa.bindparam("b_prev"), hash=sa.bindparam("b_hash"))
    )
    prev = GENESIS
    for rows in _pages(conn, columns):
        params = []
        for row in rows:
            new = hash_of(row, prev)
            params.append({"b_seq": row.seq, "b_prev": prev, "b_hash": new})
            prev = new
        conn.execute(update, params)


def _suspend_append_only(conn: sa.Connection) -> None:
    if conn.dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    else:
        op.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")


def _restore_append_only(conn: sa.Connection) -> None:
    if conn.dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )
    else:
        op.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update")


def _audit_keys() -> tuple[str, dict[str, bytes]]:
    from app.config import get_settings

    keys: dict[str, bytes] = {}
    for item in get_settings().audit_keys.get_secret_value().split(","):
        kid, _, secret = (part.strip() for part in item.strip().partition(":"))
        if kid and secret:
            keys[kid] = secret.encode("utf-8")
    if not keys:
        raise RuntimeError("V2V_AUDIT_KEYS holds no key: the audit chain cannot be re-keyed")
    return next(iter(keys)), keys


def upgrade() -> None:
    conn = op.get_bind()
    kid, keys = _audit_keys()
    columns = list(AUDIT.c)
    try:
        _verify(conn, columns, lambda row: _sha256(row, row.prev_hash))
    except ChainBroken as exc:
        raise RuntimeError(
            f"audit chain broken before re-keying: {exc}. Refusing to re-key it, which would "
            "make a tampered history verify; restore the audit log from a backup or "
            "investigate (v2v audit verify names the entry) before upgrading."
        ) from exc

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "kid",
                sqlmodel.sql.sqltypes.AutoString(length=64),
                server_default="",
                nullable=False,
            )
        )

    key = keys[kid]
    _suspend_append_only(conn)
    _rehash(
        conn,
        columns,
        lambda row, prev: hmac.new(key, _canonical(row, prev, kid), hashlib.sha256).hexdigest(),
    )
    conn.execute(sa.text("UPDATE audit_log SET kid = :kid"), {"kid": kid})
    _restore_append_only(conn)


def downgrade() -> None:
    conn = op.get_bind()
    _, keys = _audit_keys()
    keyed = [*AUDIT.c, sa.column("kid", sa.String())]

    def keyed_hash(row: Any) -> str:
        key = keys.get(row.kid)
        if key is None:
            raise ChainBroken(f"entry {row.seq} was keyed with {row.kid!r}, not in V2V_AUDIT_KEYS")
        return hmac.new(key, _canonical(row, row.prev_hash, row.kid), hashlib.sha256).hexdigest()

    try:
        _verify(conn, keyed, keyed_hash)
    except ChainBroken as exc:
        raise RuntimeError(f"audit chain broken: {exc}; refusing to re-hash it") from exc
    _suspend_append_only(conn)
    _rehash(conn, keyed, _sha256)
    _restore_append_only(conn)
    # Natively (SQLite 3.35+): batch mode would copy the table and lose its triggers.
    op.execute("ALTER TABLE audit_log DROP COLUMN kid")
