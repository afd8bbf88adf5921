"""Storage: migrations on empty databases, no drift, UTC instants, SQLite durability pragmas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError

from app.db import Database
from app.migrations import current_revision, drift, head_revision, upgrade
from models.reference import Courier
from tests.conftest import _pg_exec, _pg_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    request.getfixturevalue("pg_template")  # skips (or fails under CI) without PostgreSQL
    name = f"v2v_empty_{uuid.uuid4().hex[:10]}"
    _pg_exec(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_head_on_an_empty_database_leaves_no_drift(empty_url: str) -> None:
    upgrade(empty_url)
    db = Database(empty_url, pool_size=1)
    try:
        assert current_revision(db.engine) == head_revision()
        assert drift(db.engine) == []
    finally:
        db.dispose()


def test_instants_come_back_as_utc_whatever_offset_went_in(database: Database) -> None:
    jst = timezone(timedelta(hours=9))
    from models.principal import Principal

    with database.transaction() as session:
        session.add(
            Principal(
                id="p1",
                name="n",
                role="qa",
                key_prefix="abc",
                key_hash="h",
                created_at=datetime(2026, 11, 26, 23, 30, tzinfo=jst),
            )
        )
    with database.session() as session:
        row = session.get(Principal, "p1")
        assert row is not None
        assert row.created_at.tzinfo is not None and row.created_at.utcoffset() == timedelta(0)
        assert row.created_at == datetime(2026, 11, 26, 14, 30, tzinfo=UTC)


def test_naive_datetimes_are_refused_on_write(database: Database) -> None:
    from models.principal import Principal

    naive = Principal(
        id="p2",
        name="n",
        role="qa",
        key_prefix="abd",
        key_hash="h",
        created_at=datetime(2026, 11, 26, 12, 0),
    )
    with database.session(write=True) as session:
        session.add(naive)
        with pytest.raises(StatementError, match="naive datetime"):
            session.flush()


def test_sqlite_runs_wal_with_foreign_keys_and_full_sync(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'p.sqlite3'}", busy_timeout_ms=1234)
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    finally:
        db.dispose()


def test_foreign_keys_are_enforced(database: Database) -> None:
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), database.transaction() as session:
        session.execute(
            text(
                "INSERT INTO route_leg (route_code, direction, seq, from_site, to_site, mode, "
                "customs, handling_h, customs_h, expected_h) VALUES "
                "('NOPE', 'inbound', 1, 'NOPE', 'NOPE', 'ground', false, 0, 0, 1)"
            )
        )


def test_seeds_load_idempotently(database: Database) -> None:
    from seeds.loader import load_reference

    with database.transaction() as session:
        report = load_reference(session)
    assert report.created == {} and report.updated == {}
    with database.session() as session:
        assert session.get(Courier, "KASHIWA-COLD") is not None
