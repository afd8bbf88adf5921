"""SQLite's writer lock on /metrics (app/sqlite_gate.py): how long each writer waited for it
and held it, by kind of writer, so an operator sees a lock that is busy all the time."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from app.services.coldchain.writer import Writer
from app.sqlite_gate import FairLock
from app.telemetry import REGISTRY
from tests.conftest import Api

NAMES = ("wait_seconds_count", "wait_seconds_sum", "hold_seconds_count", "hold_seconds_sum")


def _samples(writer: str) -> dict[str, float]:
    return {
        name: REGISTRY.get_sample_value(f"v2v_sqlite_writer_{name}", {"writer": writer}) or 0.0
        for name in NAMES
    }


def _added(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in NAMES}


def test_a_writer_that_waited_shows_its_wait_and_the_holder_its_hold() -> None:
    gate = FairLock()
    before = _samples("other")
    assert gate.acquire()
    asked = threading.Event()

    def second() -> None:
        asked.set()
        assert gate.acquire(timeout=10)  # waits for the first holder
        gate.release()

    thread = threading.Thread(target=second)
    thread.start()
    assert asked.wait(10)
    time.sleep(0.2)
    gate.release()
    thread.join(10)
    added = _added(before, _samples("other"))
    assert added["wait_seconds_count"] == 2  # two grants: at once, then after the wait
    assert added["wait_seconds_sum"] >= 0.15
    assert added["hold_seconds_count"] == 2
    assert added["hold_seconds_sum"] >= 0.2  # the first holder's 0.2 s at least


def test_a_refused_wait_is_not_counted_as_a_grant() -> None:
    gate = FairLock()
    assert gate.acquire()
    before = _samples("other")
    assert gate.acquire(blocking=False) is False
    assert gate.acquire(timeout=0.05) is False
    assert _added(before, _samples("other"))["wait_seconds_count"] == 0
    gate.release()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # SQLite's lock
def test_the_ingest_writer_is_counted_apart_from_other_writers(api: Api) -> None:
    database = api.database
    ingest, other = _samples("ingest"), _samples("other")
    done = Writer(database).submit(lambda _session: None)
    done.result(timeout=30)
    with database.transaction() as session:  # a request's or a job's write
        session.execute(text("SELECT 1"))  # begins it: BEGIN IMMEDIATE, behind the gate
    assert _added(ingest, _samples("ingest"))["hold_seconds_count"] >= 1
    assert _added(other, _samples("other"))["hold_seconds_count"] >= 1
