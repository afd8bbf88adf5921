"""The ingest writer: per database and process one thread (SQLite) or a few (PostgreSQL),
committing readings in groups.

Every ingest path (HTTP, EPCIS, MQTT, courier feeds) hands its unit of work to ``submit``
and waits for the future. The writer takes whatever has queued up since its last commit,
runs each unit in a savepoint of one transaction and commits once (group commit), then
answers each caller: an acknowledgement is only ever sent after the COMMIT that holds it.

Why: ingest used to be serialised per process around one transaction per request, so each
request queued behind every batch before it, each paying its own commit (an fsync on SQLite).
One writer keeps the serialisation that protects the GIL (no executemany in several threads
at once) and shares the commit. A group is bounded in time as well as size (a person's
journey write on SQLite waits at the writer gate for the group in progress): 20 ms on
PostgreSQL, where two writers overlap their round trips. On SQLite the writer takes the
writer lock for a turn of up to 50 ms and commits a group every 10 ms within it, answering
its callers each time: a reading waits for its own group, not the whole turn, and the turn
ends early, once a group is committed, when another writer of the process (a person's
journey step) is waiting for the lock. A live reading (``SMALL_UNIT`` readings or fewer) is
taken before the batches queued ahead of it: under the mix a logger's single reading waited
for couriers' uploads (p99 163-246 ms over two runs, 121-149 ms taken first). A batch that
has waited ``BATCH_MAX_WAIT_S`` opens the next group, so live readings never starve it.

Failure is per caller. A unit that raises an ``AppError`` (401, 403, 422, 429) is answered
with it, its savepoint rolled back, the rest of the group untouched. Any other error (a lock
timeout, a deadlock with another process, a failed COMMIT) sends the unit, or every unit of
a group whose commit failed, back to run alone in a transaction of its own, as before: the
outcome a caller sees never depends on who shared its group. Deduplication is the unique
``(device_id, ts_ms)`` key as ever; within a group a later unit sees the earlier ones' rows.
A unit after a group's first never waits for a shipment another transaction holds (two
groups taking shipments in opposite orders would deadlock): it runs alone after the commit
(``state_store.NO_WAIT``).

A unit may come as two parts: a ``check`` that refuses (an ``AppError``) before anything is
written, and the ``work`` that writes. Such a unit needs no savepoint (a SAVEPOINT and its
RELEASE were a seventh of the writer's time under the mix, every one of it under SQLite's
one writer lock): a refusal by its check is answered and leaves nothing behind, and any
error of its work, refusals included, makes the whole group's transaction uncertain, so it
is rolled back and every unit of it runs again alone.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlmodel import Session

from app.db import Database, savepoint
from app.errors import AppError
from app.services.coldchain.state_store import NO_WAIT, StateBusy
from app.sqlite_gate import INGEST_THREAD

log = logging.getLogger(__name__)

T = TypeVar("T")

# A group stops growing at this many readings (a larger single unit runs alone): at SQLite's
# measured ~100k readings/s that bounds a group's hold on the writer lock to tens of ms.
MAX_GROUP_READINGS = 2_000
MAX_GROUP_UNITS = 64
# A group takes no more units once it has run this long: on SQLite it holds the one writer
# lock, and a person's write waits for the group in progress. Measured under the mix on
# SQLite, against main in the run beside each: 20 ms stored 0.66x main's readings/s (a
# commit, an fsync, per few units), 50 ms 2.1x; journey steps' p99 184 and 161 ms.
GROUP_BUDGET_S = 0.020
SQLITE_GROUP_BUDGET_S = 0.050  # a turn at SQLite's writer lock (Database.turn)
# Within a turn at SQLite's writer lock (the budget above), each group is committed and its
# units answered after this long: a single reading waited for the whole turn before (p99
# 160-170 ms under the mix, beside journey writes' 70-90 ms); a commit is one fsync.
SQLITE_GROUP_S = 0.010
# SQLite has one writer lock: one writer thread. A PostgreSQL writer spends most of a group
# waiting for round trips (a dozen statements a unit), and units of different shipments
# do not lock each other: a few writers overlap those waits. A group's later units take no
# shipment's detector state another transaction holds (state_store.NO_WAIT), so two groups of
# readings never deadlock on them. Custody steps inside a unit (EPCIS captures, courier
# feed pages) still wait for their shipment's and case's rows: two such groups can still
# deadlock there, PostgreSQL fails one unit after a second, and it runs again alone.
# Every writer's Python competes for the process's interpreter with people's journey steps.
# Under the PostgreSQL mix (2026-12-07, `loadtest.load --seconds 20`, runs interleaved),
# three writers against two: events' p99 135-161 ms (three runs) against 108-117 (two),
# custody's 111-119 against 93-95, single readings' 109-124 against 111-114; 3,600-4,100
# readings/s stored against 2,000 (couriers' 100-reading uploads waited 130 ms at the median
# instead of 250). P4 (one uploader) was the same (0.81x against 0.82x). One writer starved
# uploads (1 s each) and slowed live readings (p99 185-216 ms). People first: two.
POSTGRES_WRITERS = 2
# A unit of this many readings or fewer (a logger's live reading) is served before the
# batches queued with it: it waits for its own group's commit, not behind courier uploads.
SMALL_UNIT = 10
# ... but a group opens with the oldest batch once it has waited this long. Six loggers
# posting back to back keep live readings queued without pause: unbounded, a courier's
# 100-reading upload waited 1.3-1.8 s at the median and 4.9-7.2 s at p99 under the
# PostgreSQL mix (2026-12-07). With this bound: 1.1 s and 1.2 s, single readings' p99 298
# against 239 ms. A bound of 100 ms let batches open nearly every group: the live readings'
# p99 rose to 0.7-0.9 s (and to 1.0-1.2 s when every overdue batch went first).
BATCH_MAX_WAIT_S = 1.0
# An idle writer thread ends after this long; the next submit starts a new one.
IDLE_S = 5.0


@dataclass(eq=False)
class _Unit:
    work: Callable[[Session], Any]
    size: int
    check: Callable[[Session], object] | None = None  # refuses before ``work`` writes
    future: Future[Any] = field(default_factory=Future)
    value: Any = None
    done: bool = False  # ran to its end inside the group's transaction
    alone: bool = False  # to be run again in a transaction of its own
    queued_at: float = field(default_factory=time.monotonic)

    def run(self, session: Session) -> Any:
        if self.check is not None:
            self.check(session)
        return self.work(session)


class Writer:
    """The queue and thread(s) that commit one database's ingest units in groups."""

    def __init__(
        self, db: Database, *, threads: int | None = None, budget_s: float | None = None
    ) -> None:
        self._db = db
        sqlite = db.dialect == "sqlite"
        # On SQLite a turn at the writer lock lasts the budget, in groups of SQLITE_GROUP_S
        # each: a unit is answered after its own group, not after the whole turn. A budget
        # given here is one group's too (tests hold a group open with it).
        if budget_s is None:
            budget_s = SQLITE_GROUP_BUDGET_S if sqlite else GROUP_BUDGET_S
            self._group_s = SQLITE_GROUP_S if sqlite else budget_s
        else:
            self._group_s = budget_s
        self._budget_s = budget_s
        self._units: deque[_Unit] = deque()  # batches
        self._small: deque[_Unit] = deque()  # live readings (SMALL_UNIT or fewer): first
        self._cond = threading.Condition()
        self._running = 0
        self._idle = 0
        if threads is None:
            threads = 1 if sqlite else POSTGRES_WRITERS
        self._threads = threads

    def submit(
        self,
        work: Callable[[Session], T],
        *,
        size: int = 1,
        check: Callable[[Session], object] | None = None,
    ) -> Future[T]:
        """Queue ``work`` (run with a session in a write transaction, flushing only); its
        future holds the outcome once the transaction that holds it has committed.

        ``check``, if given, runs first in the same transaction and may refuse the unit
        with an ``AppError``; it must write nothing (the unit then runs without a savepoint).
        Such a unit's ``work`` must also take its shipments' detector states (the ingest
        service's order) before it writes: a ``StateBusy`` it raises is answered by running
        it again alone, and anything it had written would stay in the group's commit.
        """
        unit = _Unit(work, max(1, size), check)
        with self._cond:
            (self._small if unit.size <= SMALL_UNIT else self._units).append(unit)
            if self._idle:
                self._cond.notify()
            elif self._running < self._threads:
                self._running += 1
                threading.Thread(target=self._loop, name=INGEST_THREAD, daemon=True).start()
        return unit.future

    def _loop(self) -> None:
        group: list[_Unit] = []
        try:
            while True:
                with self._cond:
                    if not self._queued():
                        self._idle += 1
                        self._cond.wait(IDLE_S)
                        self._idle -= 1
                    if not self._queued():
                        self._running -= 1
                        return
                first = self._next(0)
                if first is None:
                    continue
                group = [first]
                try:
                    with self._db.turn():
                        self._turn(group)
                except Exception as exc:  # noqa: BLE001 - the gate was not had: a 503
                    for unit in group:  # the unit in hand (the others were answered)
                        if not unit.future.done():
                            unit.future.set_exception(exc)
                group = []
        except BaseException as exc:  # never leave a caller waiting for a dead thread
            with self._cond:
                self._running -= 1
                group += [*self._small, *self._units]
                self._small.clear()
                self._units.clear()
            for unit in group:
                if not unit.future.done():
                    unit.future.set_exception(exc)
            raise

    def _turn(self, group: list[_Unit]) -> None:
        """Serve ``group``'s one unit and, for the turn's length, whatever queues meanwhile:
        groups of at most ``self._group_s`` each, committed and answered one after the other
        (``group`` holds the one in progress, for ``_loop`` to answer if the thread dies)."""
        started = time.monotonic()
        while True:
            if self._queued():
                left = self._budget_s - (time.monotonic() - started)
                self._run(group, min(self._group_s, max(left, 0.0)))
            else:
                self._alone(group[0])  # nothing to share it with: no savepoint
            if time.monotonic() - started >= self._budget_s or self._db.others_waiting():
                return
            unit = self._next(0)
            if unit is None:
                return
            group[:] = [unit]

    def _queued(self) -> bool:
        return bool(self._small or self._units)

    def _next(self, readings: int) -> _Unit | None:
        """The next queued unit if it fits beside ``readings`` already in the group; units
        cancelled while queued are dropped (their caller is gone and was never acknowledged,
        so it will send again)."""
        with self._cond:
            while self._small or self._units:
                queue = self._small or self._units
                if not readings and self._units and self._overdue(self._units[0]):
                    queue = self._units  # a group opens with an overdue batch
                unit = queue[0]
                if readings and readings + unit.size > MAX_GROUP_READINGS:
                    return None
                queue.popleft()
                if unit.future.set_running_or_notify_cancel():
                    return unit
            return None

    @staticmethod
    def _overdue(batch: _Unit) -> bool:
        return time.monotonic() - batch.queued_at >= BATCH_MAX_WAIT_S

    def _run(self, group: list[_Unit], budget_s: float) -> None:
        try:
            self._together(group, budget_s)
        except Exception:  # noqa: BLE001 - a checked unit or the COMMIT (or BEGIN) failed
            log.warning("ingest group of %d failed; each runs alone", len(group), exc_info=True)
            for unit in group:
                if unit.done:
                    unit.done, unit.alone, unit.value = False, True, None
        for unit in group:
            if unit.done:
                unit.future.set_result(unit.value)
        for unit in group:
            if unit.alone:
                self._alone(unit)

    def _together(self, group: list[_Unit], budget_s: float) -> None:
        """Run ``group``'s unit, then whatever queues meanwhile, in one transaction, until
        the group's time (``budget_s``), size or readings bound; commit once."""
        readings = 0
        with self._db.transaction() as session:
            root = session.begin()
            started = time.monotonic()
            unit: _Unit | None = group[0]
            while unit is not None:
                if unit.check is None:
                    self._guarded(session, unit)
                else:
                    self._checked(session, unit, unit.check)
                if session.get_transaction() is not root:
                    # A unit ended the shared transaction (services never commit or roll
                    # back): what the group wrote before is not certain to be kept.
                    raise RuntimeError("an ingest unit ended the group's transaction")
                readings += unit.size
                # Later units lock no shipment another transaction holds (state_store.NO_WAIT).
                session.info[NO_WAIT] = True
                if len(group) >= MAX_GROUP_UNITS or time.monotonic() - started > budget_s:
                    break
                unit = self._next(readings)
                if unit is not None:
                    group.append(unit)

    @staticmethod
    def _guarded(session: Session, unit: _Unit) -> None:
        """Run a unit in a savepoint: its failure takes back only what it wrote."""
        try:
            with savepoint(session):
                unit.value = unit.work(session)
            unit.done = True
        except AppError as exc:  # the caller's own refusal: answer it
            unit.future.set_exception(exc)
        except StateBusy:  # a shipment another transaction holds: alone, after the commit
            unit.alone = True
        except Exception as exc:  # noqa: BLE001 - retried alone below, its error then answered
            # Seen, not raised: a deadlock or a lost connection here is worth knowing about.
            log.info(
                "an ingest unit failed in its group (%s: %s); it runs alone",
                type(exc).__name__,
                exc,
            )
            unit.alone = True

    @staticmethod
    def _checked(session: Session, unit: _Unit, check: Callable[[Session], object]) -> None:
        """Run a checked unit without a savepoint: a refusal by its check has written
        nothing; an error in its work leaves the group's transaction uncertain (raised, so
        the group is rolled back and every unit runs again alone)."""
        try:
            try:
                check(session)
            except AppError as exc:  # a refusal: nothing written
                unit.future.set_exception(exc)
                return
            try:
                unit.value = unit.work(session)
            except StateBusy:  # raised before the unit wrote anything (state_store.NO_WAIT)
                unit.alone = True
                return
        except BaseException:  # the work failed, or the check other than by refusing
            unit.alone = True
            raise
        unit.done = True

    def _alone(self, unit: _Unit) -> None:
        try:
            with self._db.transaction() as session:
                value = unit.run(session)
        except BaseException as exc:  # noqa: BLE001 - the caller's outcome
            unit.future.set_exception(exc)
        else:
            unit.future.set_result(value)


_WRITERS: weakref.WeakKeyDictionary[Database, Writer] = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()


def writer(db: Database) -> Writer:
    """This process's ingest writer for ``db``."""
    with _WRITERS_LOCK:
        found = _WRITERS.get(db)
        if found is None:
            found = _WRITERS[db] = Writer(db)
        return found


def submit(
    db: Database,
    work: Callable[[Session], T],
    *,
    size: int = 1,
    check: Callable[[Session], object] | None = None,
) -> Future[T]:
    """Queue an ingest unit of work for ``db``'s writer (see ``Writer.submit``)."""
    return writer(db).submit(work, size=size, check=check)


def run(db: Database, work: Callable[[Session], T], *, size: int = 1) -> T:
    """Run an ingest unit of work through the writer and wait for its committed outcome."""
    return submit(db, work, size=size).result()
