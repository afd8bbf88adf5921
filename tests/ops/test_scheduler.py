"""The scheduler: an injected clock, job isolation, and one leader among instances."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text

from app.clock import FrozenClock
from app.db import Database
from app.scheduler import Scheduler
from tests.conftest import NOW


def _counting(runs: list[tuple[str, datetime]], name: str) -> Any:
    def job(_db: Database, now: datetime) -> None:
        runs.append((name, now))

    return job


def test_exactly_one_instance_runs_each_tick_and_leadership_moves_on(database: Database) -> None:
    runs: list[tuple[str, datetime]] = []
    clock = FrozenClock(NOW)
    others = [Database(database.engine.url.render_as_string(False), pool_size=2) for _ in range(2)]
    instances = [
        Scheduler(db, clock=clock, jobs={"tick": (_counting(runs, f"i{i}"), 1)})
        for i, db in enumerate([database, *others])
    ]
    try:
        for _ in range(3):
            ran = [s.run_job("tick") for s in instances]
            if database.dialect == "postgresql":
                assert ran.count(True) == 1
            else:  # one host: every instance may run; the jobs are idempotent
                assert all(ran)
        if database.dialect == "postgresql":
            leader = next(s for s in instances if s.lock.held())
            # Between ticks the leader's connection holds its lock outside any transaction.
            with database.engine.connect() as conn:
                open_ = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                        "current_database() AND state LIKE 'idle in transaction%' "
                        "AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            assert open_ == 0
            assert {name for name, _ in runs} == {f"i{instances.index(leader)}"}
            # The leader dies: its connection closes and the lock goes to the next caller.
            leader.lock.release()
            leader.lock.held = lambda: False  # type: ignore[method-assign]
            runs.clear()
            ran = [s.run_job("tick") for s in instances]
            assert ran.count(True) == 1 and runs[0][0] != f"i{instances.index(leader)}"
        assert all(now == NOW for _, now in runs)
    finally:
        for s in instances:
            s.shutdown()
        for db in others:
            db.dispose()


def test_a_failing_job_is_contained(database: Database) -> None:
    def boom(_db: Database, _now: datetime) -> None:
        raise RuntimeError("boom")

    s = Scheduler(database, clock=FrozenClock(NOW), jobs={"boom": (boom, 1)})
    try:
        assert s.run_job("boom") is True
    finally:
        s.shutdown()
