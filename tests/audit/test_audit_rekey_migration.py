"""Migration 0010 re-keys the audit chain: an unkeyed (plain SHA-256) chain built at 0008 is
verified, then rewritten with keyed hashes; a chain already broken is refused, untouched."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from app.db import Database
from app.migrations import alembic_config, current_revision, upgrade
from app.services.audit import chain
from models.audit import GENESIS_HASH
from models.base import UTCDateTime
from tests.conftest import NOW, _pg_exec, _pg_url

LEGACY = sa.table(
    "audit_log",
    *(sa.column(c) for c in ("seq", "actor", "actor_id", "action", "entity", "entity_id")),
    sa.column("at", UTCDateTime()),
    sa.column("before", sa.JSON()),
    sa.column("after", sa.JSON()),
    *(sa.column(c) for c in ("reason", "prev_hash", "hash")),
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def at_0008(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database migrated to 0008, the last revision with unkeyed hashes."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'legacy.sqlite3'}"
        upgrade(url, "0008")
        yield url
        return
    request.getfixturevalue("pg_template")  # skips (or fails under CI) without PostgreSQL
    name = f"v2v_legacy_{uuid.uuid4().hex[:10]}"
    _pg_exec(f'CREATE DATABASE "{name}"')
    try:
        upgrade(_pg_url(name), "0008")
        yield _pg_url(name)
    finally:
        _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _legacy_chain(url: str, *, tamper: int | None = None) -> list[str]:
    """Six entries hashed the old way (plain SHA-256); ``tamper`` edits one afterwards."""
    rows, prev = [], GENESIS_HASH
    for seq in range(1, 7):
        content = {
            "seq": seq,
            "at": NOW + timedelta(minutes=seq, microseconds=seq),
            "actor": "ncc",
            "actor_id": None,
            "action": "case.registered",
            "entity": "case",
            "entity_id": f"case-{seq}",
            "before": None if seq % 2 else {"status": "registered"},
            "after": {"status": "apheresis_scheduled", "note": "Zürich ✓", "n": seq * 1.5},
            "reason": None,
            "prev_hash": prev,
        }
        prev = hashlib.sha256(chain.canonical(**content)).hexdigest()
        rows.append({**content, "hash": prev})
    if tamper is not None:
        rows[tamper - 1]["actor"] = "mallory"
    db = Database(url, pool_size=1)
    try:
        with db.engine.begin() as conn:
            conn.execute(LEGACY.insert(), rows)
    finally:
        db.dispose()
    return [r["hash"] for r in rows]


def test_migration_rekeys_an_unkeyed_chain(at_0008: str) -> None:
    old = _legacy_chain(at_0008)
    upgrade(at_0008)
    db = Database(at_0008, pool_size=1)
    try:
        with db.session() as session:
            assert chain.verify_chain(session) == chain.VerifyResult(True, 6)
            rows = list(session.exec(chain.select(chain.AuditEntry)))
        assert {r.kid for r in rows} == {"dev-audit-2026"}
        assert not {r.hash for r in rows} & set(old)
        with pytest.raises(DatabaseError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET actor = 'x' WHERE seq = 1"))
        # And back: downgrading restores the plain SHA-256 chain exactly.
        command.downgrade(alembic_config(at_0008), "0008")
        with db.engine.connect() as conn:
            back = [h for (h,) in conn.execute(text("SELECT hash FROM audit_log ORDER BY seq"))]
        assert back == old
    finally:
        db.dispose()


def test_migration_refuses_to_rekey_a_broken_chain(at_0008: str) -> None:
    old = _legacy_chain(at_0008, tamper=3)
    with pytest.raises(RuntimeError, match="broken before re-keying: entry 3 does not match"):
        upgrade(at_0008)
    db = Database(at_0008, pool_size=1)
    try:
        # PostgreSQL rolls the whole upgrade back; SQLite keeps the migrations before 0010.
        assert current_revision(db.engine) in ("0008", "0009")
        with db.engine.connect() as conn:
            kept = [h for (h,) in conn.execute(text("SELECT hash FROM audit_log ORDER BY seq"))]
            columns = {c["name"] for c in sa.inspect(conn).get_columns("audit_log")}
        assert kept == old and "kid" not in columns
    finally:
        db.dispose()
