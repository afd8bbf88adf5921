"""What a request's write session remembers within its transaction: the rows it loaded (so a
later step does not read them again) and the row locks it took (so a later step does not
lock them again), and nothing past the transaction's end."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from app.db import Database, hold_row_lock, holds_row_lock
from app.raw import Raw
from loadtest.client import collector_paused
from models.reference import Site
from tests.conftest import Api
from tests.helpers import Journey, iso


@contextmanager
def _statements(database: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", count)


def _site_code(database: Database) -> str:
    with database.session() as session:
        site = session.exec(select(Site)).first()
        assert site is not None, "the reference seed holds sites"
        return site.code


def test_a_request_write_session_reads_a_row_once(database: Database) -> None:
    code = _site_code(database)
    with database.session(write=True, hold=True) as session, _statements(database) as seen:
        assert session.get(Site, code) is not None  # checked, then dropped by the caller
        assert session.get(Site, code) is not None
    assert len([s for s in seen if "FROM site" in s]) == 1


def test_a_plain_session_reads_a_dropped_row_again(database: Database) -> None:
    """The reason for the above: SQLAlchemy's identity map forgets unreferenced rows."""
    code = _site_code(database)
    with database.session(write=True) as session, _statements(database) as seen:
        assert session.get(Site, code) is not None
        assert session.get(Site, code) is not None
    assert len([s for s in seen if "FROM site" in s]) == 2


def test_a_row_lock_is_known_until_its_transaction_ends(database: Database) -> None:
    with database.session(write=True) as session:
        session.connection()  # the transaction begins
        assert not holds_row_lock(session, "cases", "C1")
        hold_row_lock(session, "cases", "C1")
        assert holds_row_lock(session, "cases", "C1")
        assert not holds_row_lock(session, "cases", "C2")
        assert not holds_row_lock(session, "shipment", "C1")
        session.commit()  # the lock went with the transaction
        session.connection()
        assert not holds_row_lock(session, "cases", "C1")
        hold_row_lock(session, "cases", "C1")
        session.rollback()
        session.connection()
        assert not holds_row_lock(session, "cases", "C1")


def test_a_lock_taken_in_a_savepoint_is_not_noted(database: Database) -> None:
    """Rolling back to a savepoint releases the locks taken inside it: never relied on."""
    with database.session(write=True) as session:
        session.connection()
        with session.begin_nested():
            hold_row_lock(session, "cases", "C1")
        assert not holds_row_lock(session, "cases", "C1")


def test_pipelined_statements_answer_in_order(database: Database) -> None:
    """Several reads in one round trip on PostgreSQL (one after the other on SQLite)."""
    with database.session(write=True) as session:
        raw = Raw.of(session)
        found = raw.pipelined([("SELECT 1", ()), ("SELECT ?", (2,)), ("SELECT 3 WHERE 1 = 0", ())])
    assert found == [[(1,)], [(2,)], []]


def test_a_failing_pipelined_statement_raises(database: Database) -> None:
    with database.session(write=True) as session:
        raw = Raw.of(session)
        with pytest.raises(Exception, match="no_such_table"):
            raw.pipelined([("SELECT * FROM no_such_table", ()), ("SELECT 1", ())])


def test_raw_is_the_transactions_connection_and_follows_the_session(database: Database) -> None:
    """Within one transaction every ``Raw.of`` is the same connection (savepoints included);
    after a commit or a rollback it is the new transaction's, never the ended one's."""
    code = _site_code(database)
    with database.session(write=True) as session:
        first = Raw.of(session)
        first.run("CREATE TEMP TABLE raw_probe (k TEXT)")
        first.run("INSERT INTO raw_probe VALUES ('kept')")
        nested = session.begin_nested()
        assert Raw.of(session) is first
        Raw.of(session).run("INSERT INTO raw_probe VALUES ('taken back')")
        nested.rollback()
        # The savepoint held the raw write: rolling it back took the row with it.
        assert Raw.of(session).all("SELECT k FROM raw_probe") == [("kept",)]
        assert first.driver is session.connection().connection.driver_connection
        session.commit()
        second = Raw.of(session)
        assert second is not first
        assert second.driver is session.connection().connection.driver_connection
        session.rollback()
        third = Raw.of(session)
        assert third is not second
        # The new transaction's raw connection sees what the session's own reads see.
        assert third.one("SELECT code FROM site WHERE code = ?", [code]) == (code,)
        assert third.driver is session.connection().connection.driver_connection


def test_a_write_session_is_freed_without_the_cycle_collector(database: Database) -> None:
    """Everything a request's write session held (its transaction and connection, the rows
    it loaded, the driver connection's ``Raw``, the row locks it noted) goes when the session
    goes, by reference counting alone. Left in a reference cycle it waits for the cyclic
    collector, whose collections of tens of thousands of such objects stalled every thread
    of a loaded server for 10-30 ms every second or two."""
    code = _site_code(database)
    with collector_paused():
        with database.session(write=True, hold=True) as session:
            site = session.get(Site, code)
            assert site is not None
            raw = Raw.of(session)
            assert raw.one("SELECT code FROM site WHERE code = ?", [code]) == (code,)
            hold_row_lock(session, "site", code)
            session.commit()
            Raw.of(session).all("SELECT 1")  # the next transaction's, noted again
        gone = [weakref.ref(x) for x in (session, site, raw)]
        del session, site, raw
        assert [ref() for ref in gone] == [None, None, None]


def test_requests_leave_no_session_behind(api: Api) -> None:
    """The same through the API: after a registration, a booking, an event, a shipment, a
    scan and readings (stored by the ingest writer's thread), no session or driver
    connection of theirs is alive, with the cyclic collector off."""

    def alive() -> list[object]:
        return [o for o in gc.get_objects() if isinstance(o, (Session, Raw))]

    with collector_paused():
        # Only this test's: another test may still hold its own (a fixture, a traceback).
        earlier = [weakref.ref(o) for o in alive()]
        journey = Journey(api)
        journey.schedule()
        journey.step("collected")
        shipment = journey.ship("to_manufacturing", "FRESH_2_8")
        journey.custody(shipment, "picked_up")
        device = shipment["device_ids"][0]
        items = [
            {"device_id": device, "ts": iso(journey.at(minutes=10)), "temp_c": 5.0 + i / 10}
            for i in range(3)
        ]
        r = api.post("courier", "/api/v1/readings", {"readings": items})
        assert r.json()["accepted"] == 3, r.text
        # A thread of another test's app (a job, a writer) may be mid-session: its sessions
        # end in a moment. Ours, left in a cycle, would never end with the collector off.
        for _ in range(40):
            left = [repr(o) for o in alive() if not any(ref() is o for ref in earlier)]
            if not left:
                break
            time.sleep(0.05)
    assert left == []
