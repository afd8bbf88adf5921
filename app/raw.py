"""Statements on the driver's own connection: the hot paths' plain SQL, without the ORM.

``Raw.of(session)`` gives the DB-API connection of the session's transaction, with one
placeholder style (``?``) on both databases, and runs statements one at a time or, on
PostgreSQL, several in one round trip (``pipelined``).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Table
from sqlmodel import Session

from models.base import UTCDateTime


def utc_ms(value: Any) -> int:
    """Epoch milliseconds of a stored instant (SQLite: naive UTC text; PostgreSQL: aware)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


_PYFORMAT: dict[str, str] = {}  # statements rewritten for psycopg, by their ``?`` form


class Compiled(str):
    """SQL already in the driver's own placeholder style (a compiled Core statement's
    text), passed to ``Raw`` as it is."""

    __slots__ = ()


def _none() -> None:
    return None


def _ref(obj: object | None) -> Callable[[], Any]:
    """A weak reference to ``obj``, or a callable giving None."""
    return _none if obj is None else weakref.ref(obj)


class Raw:
    """The DB-API connection of a session's transaction, with one placeholder style.

    ``Raw.of(session)`` gives the one kept for the session's current transaction.
    """

    @classmethod
    def of(cls, session: Session) -> Raw:
        raw: Raw | None = session.info.get("v2v_raw")
        if raw is not None:
            # The same root transaction, still active, holds the same connection: no need to
            # ask the session for it (a fifth of a millisecond per journey write, all told)
            # unless a savepoint began or ended since: the session emits a savepoint's
            # SAVEPOINT only when it is asked for its connection inside it.
            txn = session.get_transaction()
            if txn is not None and txn is raw.txn() and txn.is_active:
                nested = session.get_nested_transaction()
                if nested is not raw.nested():
                    session.connection()
                    raw.nested = _ref(nested)
                return raw
        raw = session.info["v2v_raw"] = cls(session)
        return raw

    def __init__(self, session: Session) -> None:
        conn = self.conn = session.connection()
        # The session keeps this object in its ``info``, so it refers back to the session
        # and its transactions only weakly: a cycle would leave the session, its connection
        # and every row it loaded to the cyclic garbage collector, whose collections of
        # tens of thousands of such objects stalled every thread of the server for 10-30 ms
        # every second or two under load.
        self._session = weakref.ref(session)
        self.txn = _ref(session.get_transaction())
        self.nested = _ref(session.get_nested_transaction())
        self.postgres = conn.dialect.name == "postgresql"
        driver = conn.connection.driver_connection
        if driver is None:  # a pooled connection always has one
            raise RuntimeError("no DB-API connection behind the session")
        self.driver: Any = driver

    @property
    def info(self) -> dict[Any, Any]:
        """The session's own notes (``ingest_no_wait``); empty once it is gone."""
        session = self._session()
        return session.info if session is not None else {}

    def sql(self, statement: str) -> str:
        if not self.postgres or isinstance(statement, Compiled):
            return statement
        out = _PYFORMAT.get(statement)
        if out is None:
            out = _PYFORMAT[statement] = statement.replace("?", "%s")
        return out

    def all(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.driver.cursor()
        try:
            cur.execute(self.sql(statement), params)
            return list(cur.fetchall())
        finally:
            cur.close()

    def one(self, statement: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        cur = self.driver.cursor()
        try:
            cur.execute(self.sql(statement), params)
            row = cur.fetchone()
            return tuple(row) if row is not None else None
        finally:
            cur.close()

    def pipelined(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[tuple[Any, ...]]]:
        """Each statement's rows, the statements run in order. On PostgreSQL they go in one
        round trip (psycopg's pipeline mode): the server still runs them one after the
        other, each with its own snapshot (READ COMMITTED), taken once the one before has
        finished, so a read after a lock sees what committed while the lock was awaited. If
        one fails, the ones after it are not run. A ``Compiled`` statement goes as it is; a
        statement that returns no rows (a write) gives an empty list."""
        if not self.postgres:
            return [self.all(statement, params) for statement, params in statements]
        cursors = [self.driver.cursor() for _ in statements]
        try:
            with self.driver.pipeline():
                for cur, (statement, params) in zip(cursors, statements, strict=True):
                    cur.execute(self.sql(statement), params)
            return [
                [] if cur.description is None else [tuple(row) for row in cur.fetchall()]
                for cur in cursors
            ]
        finally:
            for cur in cursors:
                cur.close()

    def run(self, statement: str, params: Sequence[Any] = ()) -> None:
        cur = self.driver.cursor()
        try:
            cur.execute(self.sql(statement), params)
        finally:
            cur.close()

    def many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        cur = self.driver.cursor()
        try:
            cur.executemany(self.sql(statement), rows)
        finally:
            cur.close()

    def compiled(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any], *, binary: bool = False
    ) -> list[tuple[Any, ...]]:
        """All rows of SQL already compiled for this driver (its own placeholders, not
        ``?``: a compiled Core statement's text and parameters); ``binary``: PostgreSQL's
        binary format (bytea columns in half the bytes of hex)."""
        cur = self.driver.cursor(binary=True) if binary and self.postgres else self.driver.cursor()
        try:
            cur.execute(sql, params)
            return list(cur.fetchall())
        finally:
            cur.close()

    def marks(self, values: Sequence[Any]) -> str:
        """Placeholders for an IN list."""
        return ", ".join("?" for _ in values)

    def stamp(self, at: datetime) -> Any:
        """An instant as the UTCDateTime column type stores it (a naive one refused, as the
        type refuses it)."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("naive datetime refused: every instant must carry a UTC offset")
        at = at.astimezone(UTC)
        return at if self.postgres else at.replace(tzinfo=None).isoformat(" ", "microseconds")


class TableInsert:
    """A table's INSERT as the driver's own statement, over the model's columns (no input
    reaches its text; ``skip`` leaves out a generated key), its values bound as SQLAlchemy's
    column types bind them: JSON as its text (None as JSON null, as the ``JSON`` type stores
    it) and instants as ``UTCDateTime`` stores them."""

    def __init__(self, table: Table, *, skip: Sequence[str] = (), returning: str | None = None):
        self.columns = tuple(c.name for c in table.columns if c.name not in skip)
        names, marks = ", ".join(self.columns), ", ".join("?" for _ in self.columns)
        self.sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608
        if returning is not None:
            self.sql += f" RETURNING {returning}"
        self._json = frozenset(c.name for c in table.columns if isinstance(c.type, JSON))
        self._instants = frozenset(c.name for c in table.columns if isinstance(c.type, UTCDateTime))

    def values(self, raw: Raw, row: Mapping[str, Any]) -> list[Any]:
        return [
            json.dumps(row[c])
            if c in self._json
            else raw.stamp(row[c])
            if c in self._instants
            else row[c]
            for c in self.columns
        ]

    def values_of(self, raw: Raw, instance: object) -> list[Any]:
        """The values of a model instance's attributes."""
        return self.values(raw, {c: getattr(instance, c) for c in self.columns})
