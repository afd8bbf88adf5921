"""The SQLite writer gate: writers in one process take SQLite's write lock in arrival order.

SQLite's own busy handler polls with sleeps of up to 100 ms, so a writer that arrives while
the lock is taken can lose to every writer after it: under a steady ingest stream a
coordinator's scan waited over half a second. ``app.db`` makes every SQLite write
transaction queue here before its ``BEGIN IMMEDIATE``; the connection gives the gate back
when its transaction ends. Between processes the busy timeout still arbitrates.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque

from app.telemetry import WRITER_HOLD, WRITER_WAIT

INGEST_THREAD = "v2v-ingest-writer"  # the ingest writer's threads (app.services.coldchain)


def _writer() -> str:
    return "ingest" if threading.current_thread().name == INGEST_THREAD else "other"


class FairLock:
    """A lock granted in arrival order (``threading.Lock`` promises no order: a thread that
    releases and re-acquires at once can starve the others).

    Strict arrival order is deliberate: letting people's journey writes pass the ingest
    writer (up to three at a time) starved ingest under the mix (805 readings/s against 2,323
    for main in the run beside it; groups were then bounded at 20 ms). Two lanes taking turns,
    the ingest writer ending its group as soon as a person waited (2026-12-06), kept every
    journey write's p99 under 90 ms but halved the readings stored (4,900 against 9,000 a
    second), left single readings' p99 at 153-163 ms and cut calls per CPU second from ~340
    to ~245: the lock is busy with people's writes either way, so order only moves the wait.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False
        self._since = 0.0  # when the holder was granted the lock
        self._holder = "other"  # its kind of writer (the metrics' label)

    def acquire(self, *, blocking: bool = True, timeout: float = -1) -> bool:
        asked = time.monotonic()
        with self._mutex:
            if not self._held and not self._waiters:
                self._held = True
                return self._granted(asked)
            if not blocking:
                return False
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        if turn.acquire(timeout=timeout):
            return self._granted(asked)  # handed over by release(): held, now by us
        with self._mutex:
            try:
                self._waiters.remove(turn)
            except ValueError:  # handed over between the timeout and here: ours after all
                return self._granted(asked)
            return False

    def _granted(self, asked: float) -> bool:
        self._since = now = time.monotonic()
        self._holder = writer = _writer()
        WRITER_WAIT.labels(writer).observe(now - asked)
        return True

    def waiting(self) -> bool:
        """Whether anyone is queued for the lock."""
        return bool(self._waiters)

    def release(self) -> None:
        WRITER_HOLD.labels(self._holder).observe(time.monotonic() - self._since)
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()  # handed over: the lock stays held
            else:
                self._held = False


_GATES: dict[str, FairLock] = {}
_GATES_LOCK = threading.Lock()


def gate_for(database: str) -> FairLock:
    """The gate of one database file, shared by every engine on it in this process."""
    with _GATES_LOCK:
        gate = _GATES.get(database)
        if gate is None:
            gate = _GATES[database] = FairLock()
        return gate


class GatedConnection(sqlite3.Connection):
    """A SQLite connection that gives the writer gate back when its transaction ends."""

    gate: FairLock | None = None

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self.free()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.free()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.free()

    def free(self) -> None:
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.release()
