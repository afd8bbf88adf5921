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
from collections import deque


class _Turn:
    __slots__ = ("lock", "patient", "passed")

    def __init__(self, patient: bool) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.patient = patient
        self.passed = 0


class FairLock:
    """A lock granted in arrival order (``threading.Lock`` promises no order: a thread that
    releases and re-acquires at once can starve the others), except that a *patient* waiter
    (the ingest writer: a machine's batch, committed for many callers at once) lets up to
    ``PATIENCE`` impatient ones (a person's journey step) go first. A person then waits for
    whoever holds the lock and the people before them, not also for the next ingest group;
    the ingest writer waits at most ``PATIENCE`` turns longer and then commits more at once."""

    PATIENCE = 3

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[_Turn] = deque()
        self._held = False

    def acquire(self, *, blocking: bool = True, timeout: float = -1, patient: bool = False) -> bool:
        with self._mutex:
            if not self._held and not self._waiters:
                self._held = True
                return True
            if not blocking:
                return False
            turn = _Turn(patient)
            self._waiters.append(turn)
        if turn.lock.acquire(timeout=timeout):
            return True  # handed over by release(): the lock stays held, now by us
        with self._mutex:
            try:
                self._waiters.remove(turn)
            except ValueError:  # handed over between the timeout and here: ours after all
                return True
            return False

    def release(self) -> None:
        with self._mutex:
            if not self._waiters:
                self._held = False
                return
            turn = self._waiters[0]
            if turn.patient and turn.passed < self.PATIENCE:
                for other in self._waiters:
                    if not other.patient:
                        turn.passed += 1
                        turn = other
                        break
            self._waiters.remove(turn)
            turn.lock.release()  # handed over: the lock stays held


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
