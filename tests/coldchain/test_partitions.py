"""``reading`` partitioned by month on PostgreSQL (migration 0014, coldchain/partitions.py):
an existing table converted with every row, id and dedup intact; months created ahead by the
scheduled job, moving rows that landed in DEFAULT; a trace pruned to its window's months.
On SQLite all of it is a no-op."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import text

from app.clock import FrozenClock
from app.db import Database
from app.jobs.partitions import create_ahead
from app.migrations import alembic_config, drift, upgrade
from app.scheduler import Scheduler, default_jobs
from app.services.coldchain import partitions, traces
from tests.coldchain.test_readings import in_transit, post, readings
from tests.conftest import Api, pg_copy

MONTHS_2025 = [(2025, 9), (2025, 10), (2025, 12)]  # November left empty on purpose


@pytest.fixture
def db_url(pg_template: str) -> Iterator[str]:
    """This module's tests are about PostgreSQL: a fresh seeded PostgreSQL database."""
    with pg_copy(pg_template) as url:
        yield url


def _ms(year: int, month: int, day: int = 1, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


def _insert(db: Database, shipment_id: str, device: str, stamps: list[int]) -> None:
    """Rows written straight into ``reading`` (storage is under test here, not ingest)."""
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO reading (shipment_id, device_id, ts_ms, temp_c, received_ms) "
                "VALUES (:s, :d, :t, 5.5, :t)"
            ),
            [{"s": shipment_id, "d": device, "t": t} for t in stamps],
        )


def _rows(db: Database) -> list[tuple[Any, ...]]:
    with db.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT id, shipment_id, device_id, ts_ms, temp_c, received_ms, "
                    "tableoid::regclass::text FROM reading ORDER BY id"
                )
            )
        ]


def _relkind(db: Database) -> str:
    with db.engine.connect() as conn:
        return str(
            conn.execute(text("SELECT relkind FROM pg_class WHERE relname = 'reading'")).scalar()
        )


@pytest.mark.postgres
def test_an_existing_table_is_converted_with_every_row_its_ids_and_dedup(
    api: Api, db_url: str
) -> None:
    _, ship, t0 = in_transit(api)
    post(api, "courier", readings(ship["device_ids"][0], t0, [5.0, 5.5, 6.0]))
    api.database.engine.dispose()
    # Down to 0013 (a plain table, the readings kept), then readings in several months.
    command.downgrade(alembic_config(db_url), "0013")
    db = Database(db_url, pool_size=1)
    try:
        assert _relkind(db) == "r"
        assert len(_rows(db)) == 3
        _insert(db, ship["id"], "T-MIG", [_ms(y, m, 15, h) for y, m in MONTHS_2025 for h in (1, 2)])
        before = _rows(db)
        db.engine.dispose()

        upgrade(db_url)
        assert _relkind(db) == "p"
        after = _rows(db)
        # Every row, with its id, in its month's partition (the API's in October 2026).
        assert [r[:6] for r in after] == [r[:6] for r in before]
        for row in after:
            at = datetime.fromtimestamp(row[3] / 1000, UTC)
            assert row[6] == partitions.name_of(at.year, at.month)
        with db.engine.begin() as conn:
            resent = conn.execute(
                text(
                    "INSERT INTO reading (shipment_id, device_id, ts_ms, temp_c, received_ms) "
                    "VALUES (:s, 'T-MIG', :t, 9, 0), (:s, 'T-MIG', :n, 9, 0) "
                    "ON CONFLICT (device_id, ts_ms) DO NOTHING RETURNING id"
                ),
                {"s": ship["id"], "t": _ms(2025, 10, 15, 1), "n": _ms(2025, 10, 15, 3)},
            ).all()
        assert len(resent) == 1  # the resend is a duplicate, the new one stored
        assert resent[0][0] > max(r[0] for r in before)  # the id sequence carried on
        assert drift(db.engine) == []
        db.engine.dispose()

        # And back: a plain table again, with the same rows.
        command.downgrade(alembic_config(db_url), "0013")
        assert _relkind(db) == "r"
        assert len(_rows(db)) == len(before) + 1
    finally:
        db.dispose()


@pytest.mark.postgres
def test_months_are_created_ahead_once_moving_their_rows_out_of_default(
    api: Api, database: Database
) -> None:
    _, ship, _ = in_transit(api)
    # A logger dated in 2031 before any 2031 month exists: DEFAULT takes it, nothing refused.
    stamps = [_ms(2031, 2, 3), _ms(2031, 2, 27, 23), _ms(2031, 6, 1)]
    _insert(database, ship["id"], "T-AHEAD", stamps)
    assert {r[6] for r in _rows(database)} == {partitions.DEFAULT}

    now = datetime(2031, 1, 20, 3, tzinfo=UTC)
    assert create_ahead(database, now=now) == 4  # January to April
    assert create_ahead(database, now=now) == 0  # idempotent
    where = {r[3]: r[6] for r in _rows(database)}
    assert where == {
        stamps[0]: "reading_y2031m02",
        stamps[1]: "reading_y2031m02",
        stamps[2]: partitions.DEFAULT,
    }
    with database.session() as session:
        listed = [p.name for p in partitions.list_partitions(session)]
    assert listed[-5:] == [
        "reading_y2031m01",
        "reading_y2031m02",
        "reading_y2031m03",
        "reading_y2031m04",
        partitions.DEFAULT,
    ]
    with database.engine.begin() as conn:  # the dedup key holds in the new partition too
        again = conn.execute(
            text(
                "INSERT INTO reading (shipment_id, device_id, ts_ms, temp_c, received_ms) "
                "VALUES (:s, 'T-AHEAD', :t, 1, 0) ON CONFLICT (device_id, ts_ms) DO NOTHING"
            ),
            {"s": ship["id"], "t": stamps[0]},
        )
        assert again.rowcount == 0


def _relations(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            found.add(plan["Relation Name"])
        for value in plan.values():
            found |= _relations(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= _relations(value)
    return found


@pytest.mark.postgres
def test_a_trace_reads_only_the_months_of_its_window(api: Api, database: Database) -> None:
    _, ship, _ = in_transit(api)
    with database.transaction() as session:
        partitions.ensure_ahead(session, now=datetime(2031, 1, 5, tzinfo=UTC), months=3)
    _insert(
        database, ship["id"], "T-TRACE", [_ms(2031, m, d) for m in (1, 2, 3, 4) for d in (2, 9)]
    )

    def touched(low: int, high: int) -> set[str]:
        params = {"s": ship["id"], "low": low, "high": high, "bucket": 60_000}
        with database.session() as session:
            (plan,) = session.execute(
                text("EXPLAIN (FORMAT JSON) " + str(traces.GROUPED)), params
            ).one()
            points = traces.trace(session, ship["id"], low=low, high=high, max_points=500)
        assert points["points"]  # the window does hold readings
        return _relations(plan)

    assert touched(_ms(2031, 2, 1), _ms(2031, 2, 20)) == {"reading_y2031m02"}
    assert touched(_ms(2031, 2, 5), _ms(2031, 3, 5)) == {"reading_y2031m02", "reading_y2031m03"}


def test_on_sqlite_partitioning_is_a_no_op(sqlite_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "plain.sqlite3"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}", pool_size=1)
    try:
        now = datetime(2031, 1, 20, tzinfo=UTC)
        assert create_ahead(db, now=now) == 0
        with db.transaction() as session:
            assert partitions.ensure_ahead(session, now=now) == {}
            assert partitions.list_partitions(session) == []
        with db.engine.connect() as conn:
            names = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master"))}
        assert "reading" in names and not any(n.startswith("reading_y") for n in names)
        assert drift(db.engine) == []
    finally:
        db.dispose()


@pytest.mark.postgres
def test_the_scheduler_leader_creates_the_months_ahead(database: Database) -> None:
    with httpx.Client() as client:
        job = default_jobs(client)["partitions"]
    assert job[1] == 3_600
    clock = FrozenClock(datetime(2032, 5, 2, tzinfo=UTC))
    scheduler = Scheduler(database, clock=clock, jobs={"partitions": job}, client=httpx.Client())
    try:
        assert scheduler.run_job("partitions")  # this instance leads
    finally:
        scheduler.shutdown()
    with database.session() as session:
        names = {p.name for p in partitions.list_partitions(session)}
    assert {f"reading_y2032m{m:02d}" for m in (5, 6, 7, 8)} <= names
    assert "reading_y2032m09" not in names
