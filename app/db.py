"""Engine and session factory.

SQLite runs in WAL mode with foreign keys on, a busy timeout, and ``synchronous=FULL`` so an
acknowledged write survives a power cut. Write transactions on SQLite open with
``BEGIN IMMEDIATE``: they take the single writer lock up front and wait for it (busy
timeout) instead of failing with "database is locked" when a read snapshot goes stale.

Within one process, SQLite writers first queue for a first-come first-served gate (one per
database file, ``app.sqlite_gate``) and only then take SQLite's lock, so they are served in
arrival order instead of by SQLite's sleeping busy handler; the busy timeout still
arbitrates between processes.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Engine, bindparam, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlmodel import Session, SQLModel, select

from app.sqlite_gate import FairLock, GatedConnection, gate_for

WRITE_OPTION = "v2v_write"
# A write that must not wait for SQLite's writer lock: BEGIN IMMEDIATE fails at once with
# "database is locked" instead of waiting out the busy timeout (see Database.session).
NOWAIT_OPTION = "v2v_nowait"


def normalize_url(url: str) -> str:
    """Select psycopg 3 for PostgreSQL URLs given without a driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


@functools.cache
def _require_sqlite_json() -> None:
    """Ingest stores readings through SQLite's JSON functions: refuse to start without them."""
    with closing(sqlite3.connect(":memory:")) as probe:
        try:
            probe.execute("SELECT json_extract(value, '$[0]') FROM json_each('[[1]]')").fetchall()
        except sqlite3.OperationalError as exc:
            raise RuntimeError(
                f"this Python's SQLite ({sqlite3.sqlite_version}) has no JSON functions, which "
                "reading ingest needs (built in since SQLite 3.38): use a Python built with "
                "them, or PostgreSQL (V2V_DATABASE_URL)"
            ) from exc


# A SQLite engine's writer gate and how long a writer waits for it.
_GATES: weakref.WeakKeyDictionary[Engine, tuple[FairLock, float]] = weakref.WeakKeyDictionary()
# The gate this thread holds across its write transactions (Database.turn), if any.
_TURN = threading.local()


def make_engine(url: str, *, busy_timeout_ms: int = 10_000, pool_size: int = 10) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size)
        event.listen(engine, "checkout", _begin_as_ping)
        event.listen(engine, "set_connection_execution_options", _unbegin_for_isolation)
        return engine
    _require_sqlite_json()
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    gate = gate_for(database if database and database != ":memory:" else url)
    engine = create_engine(
        url,
        connect_args={
            "check_same_thread": False,
            "timeout": busy_timeout_ms / 1000,
            "factory": GatedConnection,
        },
        pool_size=pool_size,
        max_overflow=pool_size,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (pysqlite's implicit transactions would defer it).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    _GATES[engine] = (gate, busy_timeout_ms / 1000)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if not options.get(WRITE_OPTION, False):
            conn.exec_driver_sql("BEGIN")
            return
        nowait = options.get(NOWAIT_OPTION, False)
        driver: GatedConnection = conn.connection.driver_connection
        if getattr(_TURN, "gate", None) is not gate:  # else this thread holds it for a turn
            if not gate.acquire(blocking=not nowait, timeout=busy_timeout_ms / 1000):
                raise sqlite3.OperationalError("database is locked")
            driver.gate = gate  # released by the driver connection's commit or rollback
        cursor = driver.cursor()
        try:
            if nowait:
                cursor.execute("PRAGMA busy_timeout=0")
            cursor.execute("BEGIN IMMEDIATE")
        except BaseException:
            driver.free()
            raise
        finally:
            if nowait:
                cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.close()

    return engine


def _begin_as_ping(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """A PostgreSQL connection leaves the pool with its transaction begun, and that BEGIN is
    its liveness check: a dead connection (the server restarted, a proxy dropped it) is
    discarded and the pool hands out another, as ``pool_pre_ping`` would, without the
    separate round trip of its empty query (one in ten of a live reading's, one in thirteen
    of a journey step's, each a wake-up of a server process on a busy machine)."""
    if dbapi_conn.autocommit:
        return
    pgconn = dbapi_conn.pgconn
    if pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise DisconnectionError("a pooled connection was not idle")
    try:
        result = pgconn.exec_(b"BEGIN")  # the GIL is released while libpq waits
    except psycopg.Error as exc:
        raise DisconnectionError(str(exc)) from exc
    if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
        raise DisconnectionError(str(pgconn.get_error_message()).strip())


def _unbegin_for_isolation(conn: Any, options: dict[str, Any]) -> None:
    """An isolation level (``AUTOCOMMIT`` among them) is set before a transaction begins: the
    ``BEGIN`` a connection left the pool with is rolled back first if nothing ran in it."""
    if "isolation_level" not in options or conn.in_transaction():
        return
    driver = conn.connection.driver_connection
    if driver.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        driver.rollback()


def on_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once the session's current transaction has committed (never on a
    rollback): counters and notifications that must not count what was not kept."""
    session.info.setdefault(_ON_COMMIT, []).append(action)


_ON_COMMIT = "v2v_on_commit"
_IN_SAVEPOINT = "v2v_in_savepoint"


@event.listens_for(Session, "after_commit")
def _run_on_commit(session: Session) -> None:
    if session.info.get(_IN_SAVEPOINT):  # a savepoint released: the commit is still to come
        return
    for action in session.info.pop(_ON_COMMIT, ()):
        action()


@event.listens_for(Session, "after_rollback")
def _drop_on_commit(session: Session) -> None:
    if session.info.get(_IN_SAVEPOINT):  # ``savepoint`` drops what its block registered
        return
    session.info.pop(_ON_COMMIT, None)


def hold_row_lock(session: Session, table: str, key: str) -> None:
    """Note that this transaction has locked ``key``'s row of ``table`` (``FOR [NO KEY]
    UPDATE``), so a later step of it need not ask again (``holds_row_lock``). Not noted in a
    savepoint, whose rollback would release the lock."""
    if session.in_nested_transaction():
        return
    transaction = session.get_transaction()
    held: tuple[Callable[[], object], set[tuple[str, str]]] | None = session.info.get(_LOCKED)
    if held is None or held[0]() is not transaction:
        # Weakly: the session's info holding its own transaction would be a reference cycle
        # (see ``app.raw.Raw``).
        held = session.info[_LOCKED] = (weakref.ref(transaction), set())
    held[1].add((table, key))


def holds_row_lock(session: Session, table: str, key: str) -> bool:
    """Whether ``hold_row_lock`` noted this row in the session's current transaction (a
    transaction that ended took its locks and its notes with it)."""
    held = session.info.get(_LOCKED)
    return held is not None and held[0]() is session.get_transaction() and (table, key) in held[1]


_LOCKED = "v2v_row_locks"  # (a weak reference to the transaction that took them, {(table, key)})

Row = TypeVar("Row", bound=SQLModel)
_FOR_WRITE_KEY = "for_write_key"


@functools.cache
def _for_write(model: type[SQLModel]) -> Any:
    (key,) = model.__table__.primary_key.columns  # type: ignore[attr-defined]
    return select(model).where(key == bindparam(_FOR_WRITE_KEY)).with_for_update(key_share=True)


def row_for_write(session: Session, model: type[Row], key: object) -> Row | None:
    """Row ``key`` of ``model`` locked for this transaction's write (PostgreSQL: ``FOR NO
    KEY UPDATE``, which blocks only writers of the same row; SQLite: the write transaction
    holds the one writer lock already), or None. The statement is built once per model: built
    per call, it and its cache key cost about as much CPU as running it."""
    found: Row | None = session.exec(_for_write(model), params={_FOR_WRITE_KEY: key}).first()
    return found


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """A block of the session's transaction that rolls back alone on error, with whatever
    it registered through ``on_commit`` (SQLAlchemy fires its commit and rollback events for
    savepoints too). Not reentrant: savepoints opened inside the block are left as they are.
    """
    kept = list(session.info.get(_ON_COMMIT, ()))
    session.info[_IN_SAVEPOINT] = True
    try:
        with session.begin_nested():
            yield
    except BaseException:
        session.info[_ON_COMMIT] = kept
        raise
    finally:
        session.info.pop(_IN_SAVEPOINT, None)


class HoldingSession(Session):
    """A session that keeps every object it loads until it closes.

    SQLAlchemy's identity map holds its objects weakly: a row read only to check that it
    exists (a site, a profile) or read by a step that has returned is dropped at once, and
    the next ``session.get`` of the same key asks the database again. A request's write
    transaction reads the same few rows in several steps (creating a shipment read its case,
    profile and route twice: four round trips of 32), so its session keeps them instead: a
    request is short and loads few objects, where a job or a report may load many and uses
    a plain ``Session``.
    """


@event.listens_for(HoldingSession, "loaded_as_persistent")
@event.listens_for(HoldingSession, "pending_to_persistent")
def _hold(session: Session, instance: object) -> None:
    session.info.setdefault(_HELD, []).append(instance)


_HELD = "v2v_held"


class Database:
    """The engine plus session factories for reads and writes."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 10_000, pool_size: int = 10) -> None:
        self.engine = make_engine(url, busy_timeout_ms=busy_timeout_ms, pool_size=pool_size)
        self._write_engine = self.engine.execution_options(**{WRITE_OPTION: True})
        self._nowait_engine = self.engine.execution_options(
            **{WRITE_OPTION: True, NOWAIT_OPTION: True}
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self, *, write: bool = False, nowait: bool = False, hold: bool = False) -> Session:
        """A session; ``write`` takes SQLite's writer lock at the first statement, waiting up
        to the busy timeout for it, or not at all with ``nowait`` (SQLite only); ``hold``
        keeps what it loads until it closes (``HoldingSession``: a request's writes)."""
        engine = self._nowait_engine if nowait else self._write_engine if write else self.engine
        return (HoldingSession if hold else Session)(engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write session committed on success and rolled back on error (jobs, CLI)."""
        with self.session(write=True) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def turn(self) -> Iterator[None]:
        """On SQLite, hold the writer gate across this thread's write transactions until the
        end of the block (each still commits, and is durable, on its own); elsewhere nothing.

        The ingest writer commits a turn's groups one after the other without going back to
        the end of the queue in between: a reading is answered after its own short group
        while the writer's turn at the lock stays as long as one long group was.
        """
        found = _GATES.get(self.engine)
        if found is None:
            yield
            return
        gate, timeout_s = found
        if not gate.acquire(timeout=timeout_s):
            raise sqlite3.OperationalError("database is locked")
        _TURN.gate = gate
        try:
            yield
        finally:
            _TURN.gate = None
            gate.release()

    def others_waiting(self) -> bool:
        """On SQLite, whether another writer of this process waits for the writer lock."""
        found = _GATES.get(self.engine)
        return found is not None and found[0].waiting()

    def open_pool(self) -> int:
        """Open the PostgreSQL pool's connections now, at a server's start; how many were
        opened. The pool otherwise opens one whenever every open one is busy, so the first
        burst of requests after a start (every client of the mix at once) waited for up to
        ten: each a backend forked and authenticated, about 4 ms of the same two cores,
        then its first statements filling that backend's catalog caches. SQLite's
        connections are a file opened (nothing to gain)."""
        if self.dialect == "sqlite":
            return 0
        pool: Any = self.engine.pool
        missing = max(0, pool.size() - pool.checkedin() - pool.checkedout())
        opened = []
        try:
            for _ in range(missing):
                opened.append(self.engine.connect())
        finally:
            for conn in opened:
                conn.close()  # back to the pool, open
        return len(opened)

    def dispose(self) -> None:
        self.engine.dispose()
