"""The ingest hot path's statements, on the transaction's own DB-API connection (Raw).

Reading ingest runs a handful of indexed statements per batch. Through the ORM each costs
hundreds of microseconds of Python (compilation, result and identity-map machinery); on the
raw connection of the same transaction it costs a few. Everything here runs inside the
caller's write transaction, so it commits or rolls back with the rest of the request.
SQL is written once with ``?`` placeholders and rewritten for psycopg (``%s``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import msgspec

from app.raw import Raw, utc_ms
from app.services.coldchain.decode import Columns

# Columns of ``reading`` in insert order; a plain reading binds only the first four + last.
COLUMNS = (
    "shipment_id",
    "device_id",
    "ts_ms",
    "temp_c",
    "lat",
    "lon",
    "humidity_pct",
    "shock_g",
    "light_lux",
    "battery_pct",
    "received_ms",
)
PLAIN_COLUMNS = ("shipment_id", "device_id", "ts_ms", "temp_c", "received_ms")


# ---- lookups ------------------------------------------------------------------------------


def device_couriers_query(raw: Raw, device_ids: Sequence[str]) -> tuple[str, Sequence[str]]:
    """(device_id, courier) of these devices, as a statement for ``Raw``."""
    sql = f"SELECT id, courier FROM device WHERE id IN ({raw.marks(device_ids)})"  # noqa: S608
    return sql, device_ids


def courier_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[str, str]]:
    return [(str(d), str(c)) for d, c in rows]


Interval = tuple[str, int, int | None, str, int | None, int | None]


def assignments(raw: Raw, device_ids: Sequence[str]) -> list[Interval]:
    return assignment_rows(raw.all(*assignments_query(raw, device_ids)))


def assignments_query(raw: Raw, device_ids: Sequence[str]) -> tuple[str, Sequence[str]]:
    """Every interval of these devices, with its shipment's pickup and delivery (the
    late-data bounds), as a statement for ``Raw``; ``assignment_rows`` reads its rows."""
    sql = (
        "SELECT a.device_id, a.assigned_from, a.assigned_until, a.shipment_id, "  # noqa: S608
        "s.picked_up_at, s.delivered_at, CASE WHEN s.delivered_at IS NULL THEN NULL ELSE "
        "(SELECT max(c.recorded_at) FROM custody_event c WHERE c.shipment_id = s.id "
        "AND c.action = 'delivered') END "
        "FROM device_assignment a JOIN shipment s ON s.id = a.shipment_id "
        f"WHERE a.device_id IN ({raw.marks(device_ids)})"
    )
    return sql, device_ids


def assignment_rows(rows: Sequence[Sequence[Any]]) -> list[Interval]:
    """(device_id, from_ms, until_ms, shipment_id, picked_up_ms, delivered_ms) per interval.

    ``delivered_ms`` is the later of the delivery and when it was recorded: a delivery
    recorded late (a document imported after the fact) brings its readings with it.
    """
    return [
        (
            str(d),
            utc_ms(start),
            utc_ms(end) if end is not None else None,
            str(s),
            utc_ms(picked) if picked is not None else None,
            max(utc_ms(delivered), utc_ms(recorded) if recorded is not None else 0)
            if delivered is not None
            else None,
        )
        for d, start, end, s, picked, delivered, recorded in rows
    ]


def existing(raw: Raw, device_ids: Sequence[str], low: int, high: int) -> set[tuple[str, int]]:
    """(device_id, ts_ms) already stored for these devices within [low, high]."""
    rows = raw.all(
        f"SELECT device_id, ts_ms FROM reading WHERE device_id IN ({raw.marks(device_ids)}) "  # noqa: S608
        "AND ts_ms BETWEEN ? AND ?",
        [*device_ids, low, high],
    )
    return {(str(d), int(t)) for d, t in rows}


# ---- storage ------------------------------------------------------------------------------


# ``value->>k`` (SQLite 3.38+) takes an element without parsing a path string each time: a
# 5,000-reading batch with every optional measure is stored in 17.5 ms instead of 25.9 (plain
# readings, two values each, the same either way). It returns what json_extract returns.
_ARROW = sqlite3.sqlite_version_info >= (3, 38, 0)


def _insert_json(columns: Sequence[str]) -> str:
    """One statement for a whole group: shipment and device bound once, every reading's
    values from a JSON array of arrays (``columns[2:-1]`` in order), the receipt bound once."""
    picks = ", ".join(
        f"value->>{k}" if _ARROW else f"json_extract(value, '$[{k}]')"
        for k in range(len(columns) - 3)
    )
    return (
        f"INSERT INTO reading ({', '.join(columns)}) "  # noqa: S608
        f"SELECT ?, ?, {picks}, ? FROM json_each(?)"
    )


INSERT_PLAIN_JSON = _insert_json(PLAIN_COLUMNS)
INSERT_FULL_JSON = _insert_json(COLUMNS)
ENCODE = msgspec.json.Encoder().encode


def insert_sqlite(
    raw: Raw,
    shipment_id: str,
    device_id: str,
    received_ms: int,
    plain: Sequence[tuple[int, float]],
    full: Sequence[tuple[Any, ...]],
) -> None:
    """Store one shipment's readings from one device: plain ones as ``(ts_ms, temp_c)``,
    the others as ``(ts_ms, temp_c, lat, lon, humidity_pct, shock_g, light_lux,
    battery_pct)``, each kind with one statement.

    SQLite walks the JSON array in C, in order: no Python per row, and the interpreter's
    lock is free for other requests while it does (``executemany`` binds every row in
    Python). Floats go through msgspec's shortest round-trip text and SQLite's parser,
    which gives back the same double (tests/coldchain/test_storage_values.py checks it).
    """
    if plain:
        raw.run(INSERT_PLAIN_JSON, [shipment_id, device_id, received_ms, ENCODE(plain)])
    if full:
        raw.run(INSERT_FULL_JSON, [shipment_id, device_id, received_ms, ENCODE(full)])


# A batch this large is stored by a helper thread while the writer's thread runs the
# detector: SQLite works in C without the interpreter's lock, so the two overlap (below it,
# the hand-over costs more than the overlap saves).
OVERLAP_MIN_READINGS = 1_000
# One (shipment, device)'s readings: plain ones as (ts_ms, temp_c), the others with all six
# optional measures after them.
Group = tuple[list[tuple[int, float]], list[tuple[Any, ...]]]
_HELPERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="v2v-sqlite-insert")


def groups(
    columns: Columns, shipments: list[str | None], fresh: list[int]
) -> dict[tuple[str, str], Group]:
    """The fresh readings by (shipment, device), plain and full apart, in batch order."""
    ids, ts, temps, extras = columns.device_ids, columns.ts_ms, columns.temps, columns.extras
    n = len(ts)
    first = shipments[fresh[0]]
    if (  # the usual batch: one logger in one shipment, all new
        len(fresh) == n
        and first is not None
        and ids.count(ids[0]) == n
        and shipments.count(first) == n
    ):
        if extras.count(None) == n:  # no optional measure
            return {(first, ids[0]): (list(zip(ts, temps, strict=True)), [])}
        plain = [(t, c) for t, c, e in zip(ts, temps, extras, strict=True) if e is None]
        full = [(t, c, *e) for t, c, e in zip(ts, temps, extras, strict=True) if e is not None]
        return {(first, ids[0]): (plain, full)}
    groups: dict[tuple[str, str], Group] = {}
    for i in fresh:
        key = (str(shipments[i]), ids[i])
        group = groups.get(key)
        if group is None:
            group = groups[key] = ([], [])
        extra = extras[i]
        if extra is None:
            group[0].append((ts[i], temps[i]))
        else:
            group[1].append((ts[i], temps[i], *extra))
    return groups


def insert_sqlite_overlapped(
    raw: Raw,
    groups: dict[tuple[str, str], Group],
    received_ms: int,
    during: Callable[[], None],
) -> None:
    """Store each (shipment, device) group with ``insert_sqlite`` and run ``during`` (which
    must not touch the database) meanwhile. The connection is only ever used by one thread
    at a time: ``during`` runs beside the insert, never beside another statement, and this
    returns (or raises) only once the insert has ended."""

    started = threading.Event()

    def insert() -> None:
        started.set()
        for (shipment_id, device_id), (plain, full) in groups.items():
            insert_sqlite(raw, shipment_id, device_id, received_ms, plain, full)

    if sum(len(plain) + len(full) for plain, full in groups.values()) < OVERLAP_MIN_READINGS:
        insert()
        during()
        return
    future = _HELPERS.submit(insert)
    try:
        # Let the helper take the interpreter's lock first: it gives it up inside SQLite.
        # Started at once, ``during`` would keep it and the insert would wait for its end.
        started.wait()
        during()
    finally:
        wait([future])  # never leave the connection busy in another thread
    future.result()


# PostgreSQL's types of ``COLUMNS``, for a binary COPY: the server takes each value as sent
# instead of parsing its text (5,000 readings stored in 35 ms instead of 39, the same rows
# interleaved on one migrated database). varchar's binary form is text's.
COPY_TYPES = ("text", "text", "int8", "float8", *("float8",) * 6, "int8")
COPY_BINARY = f"COPY reading ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"


def copy_postgresql(
    raw: Raw, rows: list[tuple[Any, ...]], during: Callable[[], None] | None = None
) -> bool:
    """COPY straight into ``reading`` inside a savepoint; False if a concurrent writer won.

    ``during`` (which must not touch the database) runs once every row is sent, while the
    server is still storing them, before the COPY is ended and its outcome awaited.

    A conflict means some of the readings are stored already (a resend: ingest does not look
    first when no item repeats, the unique key answers that) or another transaction is
    storing them right now (a retry racing its first attempt): the savepoint is rolled back
    and the caller takes the conflict-safe path.
    """
    import psycopg

    try:
        with raw.driver.transaction(), raw.driver.cursor() as cur:  # a savepoint
            with cur.copy(COPY_BINARY) as copy:
                copy.set_types(COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
                if during is not None:
                    during()
    except psycopg.errors.UniqueViolation:
        return False
    return True


# A unit of this many readings or fewer (a logger's live reading) is stored with one
# INSERT … ON CONFLICT DO NOTHING: a COPY costs a savepoint, the COPY's own start and end
# and a release, four round trips and psycopg's copy machinery for one row.
INSERT_MAX_ROWS = 10


def insert_postgresql(raw: Raw, rows: list[tuple[Any, ...]]) -> set[tuple[str, int]]:
    """Insert what is not stored yet, in one statement; the (device_id, ts_ms) inserted.

    A reading stored already (a resend) or being stored by a concurrent transaction (a
    retry racing its first attempt: the insert waits for it) is skipped by the unique key.
    """
    values = ", ".join([f"({raw.marks(COLUMNS)})"] * len(rows))
    found = raw.all(
        f"INSERT INTO reading ({', '.join(COLUMNS)}) VALUES {values} "  # noqa: S608
        "ON CONFLICT (device_id, ts_ms) DO NOTHING RETURNING device_id, ts_ms",
        [v for row in rows for v in row],
    )
    return {(str(r[0]), int(r[1])) for r in found}


def upsert_postgresql(raw: Raw, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Insert what is not stored yet (ON CONFLICT DO NOTHING); return the rows inserted."""
    cols = ", ".join(COLUMNS)
    with raw.driver.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS reading_in "
            "(LIKE reading INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        cur.execute("TRUNCATE reading_in")
        with cur.copy(f"COPY reading_in ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO reading ({cols}) SELECT {cols} FROM reading_in "  # noqa: S608
            f"ON CONFLICT (device_id, ts_ms) DO NOTHING RETURNING {cols}"
        )
        return [tuple(r) for r in cur.fetchall()]
