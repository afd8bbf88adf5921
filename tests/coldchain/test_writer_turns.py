"""On SQLite the ingest writer takes the writer lock for a turn of several short groups: each
group is committed and its callers answered before the next begins, and a turn ends as
soon as another writer of the process is waiting for the lock once a group is done."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session

from app.db import Database
from app.services.coldchain.writer import SQLITE_GROUP_BUDGET_S, SQLITE_GROUP_S, Writer

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # SQLite's one lock
# A unit of work longer than a group, three of them shorter than a turn.
UNIT_S = 0.015
assert SQLITE_GROUP_S < UNIT_S < SQLITE_GROUP_BUDGET_S / 3


def _wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_a_turn_answers_each_group_once_it_is_committed(database: Database) -> None:
    writer = Writer(database)  # the defaults: a turn of several groups
    release = threading.Event()
    seen: dict[str, bool] = {}
    futures: dict[str, Future[Any]] = {}

    def blocker(_session: Session) -> None:
        release.wait(30)

    def unit(name: str, earlier: str | None) -> Any:
        def work(session: Session) -> str:
            if earlier is not None:  # answered already, while this turn goes on?
                seen[name] = futures[earlier].done()
            session.execute(text("SELECT 1"))
            time.sleep(UNIT_S)  # longer than a group: each unit its own
            return name

        return work

    busy = writer.submit(blocker)
    futures["first"] = writer.submit(unit("first", None))
    futures["second"] = writer.submit(unit("second", "first"))
    futures["third"] = writer.submit(unit("third", "second"))
    release.set()
    busy.result(30)
    assert [futures[n].result(30) for n in ("first", "second", "third")] == [
        "first",
        "second",
        "third",
    ]
    assert seen == {"second": True, "third": True}


def test_a_person_waiting_for_the_lock_ends_the_turn(database: Database) -> None:
    writer = Writer(database)
    order: list[str] = []
    release = threading.Event()

    def blocker(_session: Session) -> None:
        release.wait(30)

    running = threading.Event()

    def unit(name: str, *, wait_for_person: bool = False) -> Any:
        def work(session: Session) -> None:
            session.execute(text("SELECT 1"))
            if wait_for_person:  # the person is queued at the lock before this group ends
                running.set()
                _wait_for(database.others_waiting)
            time.sleep(UNIT_S)
            order.append(name)

        return work

    def person() -> None:
        with database.session(write=True) as session:
            session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: queues for the lock
            order.append("person")
            session.commit()

    busy = writer.submit(blocker)
    first = writer.submit(unit("first", wait_for_person=True))
    rest = [writer.submit(unit(name)) for name in ("second", "third")]
    release.set()
    assert running.wait(30)
    walker = threading.Thread(target=person)
    walker.start()
    busy.result(30)
    first.result(30)
    for future in rest:
        future.result(30)
    walker.join(30)
    # The person got the lock after the group in progress, not after the whole turn.
    assert order.index("person") < order.index("second")
    assert order[0] == "first"
