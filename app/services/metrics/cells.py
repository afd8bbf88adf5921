"""Per-cell turnaround totals (``case_turnaround_cell``): a cache a summary without a time
window adds up, kept exact by a log of the cells to redo (``case_turnaround_cell_dirty``).

A cell is the cases sharing a route, route kind, factory, collecting site, product and month
(``CELL``): every attribute such a summary filters or groups by.

Writers never touch the stored cells. ``turnaround_rows.refresh``, in the transaction that
changes a case's row, only appends one log entry per cell the row leaves or enters
(``mark``): a plain insert with no unique key and no lock, so no journey write or ingest
commit ever waits on another because of the cells (an earlier design rewrote the cells in
the writer's transaction under a per-cell lock held to commit, and journey writes queued
behind ingest's grouped commits).

Readers (``current``) take, in one statement and so one snapshot, the stored cells that have
no log entry and the rows of those that do, and recompute the latter: a read is exact for
everything committed before it, folded or not.

Folding (``fold``: the scheduled job; ``rebuild``: bulk writers and migration 0016) rewrites
logged cells from their rows and deletes exactly the log entries it read. One folder at a
time: on PostgreSQL a transaction-level advisory lock (the job skips its turn when another
holds it, so it never queues); on SQLite the writer lock every write transaction takes. The
order is what makes the delete safe. The folder reads the log entries first, in a statement
of its own, and the cells' rows afterwards; under READ COMMITTED each statement sees every
commit made before it starts, and an entry commits in the same transaction as the row
change it records. So every entry the folder read belongs to a change committed before its
row read began, which that read therefore includes: deleting the entry loses nothing. A
change committing after the log read leaves an entry the folder never saw, so the cell stays
logged and readers keep recomputing it until a later fold (whatever the folder wrote for it
meanwhile). The advisory lock is held until the folder commits, so a second folder starts
its log read after the first one's rewrite is visible and cannot overwrite a newer cell with
an older one.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    Table,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal_column,
    null,
    or_,
    union_all,
)
from sqlalchemy import select as select_columns
from sqlmodel import Session

from app.raw import Raw
from app.services.metrics.case_rows import _driver_rows
from models.metrics import CELL, SPANS, CaseTurnaround, TurnaroundCell, TurnaroundCellDirty

TABLE: Table = CaseTurnaround.__table__  # type: ignore[attr-defined]
CELLS: Table = TurnaroundCell.__table__  # type: ignore[attr-defined]
DIRTY: Table = TurnaroundCellDirty.__table__  # type: ignore[attr-defined]
# Each span's sum column in a cell (its sorted values are in the span's own column).
SUMS = {span: span.removesuffix("_s") + "_sum" for span in SPANS}
COUNTS = ("n", "cancelled", "closed", "shipped", "excursions")
# What a cell's totals are computed from: its key, then each row's flags and spans.
CELL_INPUTS = (*CELL, "outcome", "shipped", "excursion", *SPANS)
# pg_(try_)advisory_xact_lock's key for folders ("V2VCEL").
FOLD_LOCK = 0x5632_5643_454C
FOLD_LIMIT = 5_000  # log entries one fold takes (the rest wait for the next)
KEYS_PER_QUERY = 50

Key = tuple[Any, ...]


def key_of(row: Mapping[Any, Any]) -> Key:
    """A row's cell."""
    return tuple(row[k] for k in CELL)


# Every journey write logs its cells: plain text on the driver's connection, the values in
# CELL's order (key_of); the names are the model's own.
_MARK = (
    f"INSERT INTO {DIRTY.name} ({', '.join(CELL)}) "  # noqa: S608
    f"VALUES ({', '.join('?' for _ in CELL)})"
)


def mark(session: Session, keys: Iterable[Key]) -> None:
    """Log cells whose rows the caller's transaction changed (appends only: never waits)."""
    entries = list(dict.fromkeys(keys))  # each cell once, in the order given
    if entries:
        Raw.of(session).many(_MARK, entries)


def marking(keys: Iterable[Key]) -> list[tuple[str, Key]]:
    """``mark``'s statements, for a caller that pipelines them with its own (``Raw``)."""
    return [(_MARK, entry) for entry in dict.fromkeys(keys)]


def pack(values: Iterable[float]) -> bytes:
    """Values sorted, as little-endian doubles (a cell's span column)."""
    packed = array("d", sorted(values))
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def unpack(blob: bytes) -> array[float]:
    """A cell's span column as its sorted values."""
    found = array("d")
    found.frombytes(blob)
    if sys.byteorder == "big":
        found.byteswap()
    return found


def cell_values(key: Sequence[Any], rows: Sequence[Mapping[Any, Any]]) -> dict[str, Any]:
    """A cell's totals from its rows (``CELL_INPUTS``), as stored."""
    spans = {span: [r[span] for r in rows if r[span] is not None] for span in SPANS}
    return {
        **dict(zip(CELL, key, strict=True)),
        "n": len(rows),
        "cancelled": sum(1 for r in rows if r["outcome"] == "cancelled"),
        "closed": sum(1 for r in rows if r["outcome"] is not None),
        "shipped": sum(1 for r in rows if r["shipped"]),
        "excursions": sum(1 for r in rows if r["shipped"] and r["excursion"]),
        **{span: pack(found) for span, found in spans.items()},
        **{SUMS[span]: math.fsum(found) for span, found in spans.items()},
    }


def _same_cell(table: Table, other: Table) -> ColumnElement[bool]:
    return and_(*(table.c[k] == other.c[k] for k in CELL))


def _any_of(table: Table, keys: Sequence[Key]) -> ColumnElement[bool]:
    """A table's rows in some cells (one equality per key column: the cell index serves)."""
    return or_(*(and_(*(table.c[k] == v for k, v in zip(CELL, key, strict=True))) for key in keys))


def _lock(session: Session, *, wait: bool) -> bool:
    """The folders' turn (PostgreSQL; SQLite's writer lock already serialises them)."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    if wait:
        session.execute(select_columns(func.pg_advisory_xact_lock(FOLD_LOCK)))
        return True
    return bool(session.execute(select_columns(func.pg_try_advisory_xact_lock(FOLD_LOCK))).scalar())


def _rows_of(session: Session, keys: Sequence[Key]) -> dict[Key, list[Mapping[Any, Any]]]:
    """The rows (``CELL_INPUTS``) of some cells, by cell, through the cell index."""
    found: dict[Key, list[Mapping[Any, Any]]] = {key: [] for key in keys}
    columns = [TABLE.c[k] for k in CELL_INPUTS]
    for start in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[start : start + KEYS_PER_QUERY]
        stmt = select_columns(*columns).where(_any_of(TABLE, chunk))
        for row in session.execute(stmt).mappings():
            found[key_of(row)].append(row)
    return found


def fold(session: Session, *, limit: int = FOLD_LIMIT) -> int:
    """Rewrite the logged cells from their rows and drop the entries read (the scheduled
    job, in its own transaction); the number of cells rewritten, 0 when another folder is
    at work. Safe against concurrent writers by its order (see the module docstring)."""
    if not _lock(session, wait=False):
        return 0
    d = DIRTY.c
    # First the log (its own statement), then the rows: see the module docstring.
    entries = session.execute(
        select_columns(d.id, *(d[k] for k in CELL)).order_by(d.id).limit(limit)
    ).all()
    if not entries:
        return 0
    keys = sorted({tuple(entry[1:]) for entry in entries})
    rows = _rows_of(session, keys)
    for start in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[start : start + KEYS_PER_QUERY]
        session.execute(delete(CELLS).where(_any_of(CELLS, chunk)))
    fresh = [cell_values(key, rows[key]) for key in keys if rows[key]]
    if fresh:
        session.execute(insert(CELLS), fresh)
    _forget(session, [entry[0] for entry in entries])
    return len(keys)


def _forget(session: Session, ids: Sequence[int]) -> None:
    """Delete these log entries (and no other)."""
    for start in range(0, len(ids), 900):
        session.execute(delete(DIRTY).where(DIRTY.c.id.in_(ids[start : start + 900])))


def rebuild(session: Session) -> int:
    """Rewrite every cell from the rows and drop the log entries read first (bulk writers
    after ``recompute_all``'s rows, migration 0016); the number of cells. Exactly those ids,
    not every id up to the largest: on PostgreSQL a smaller id may commit later."""
    _lock(session, wait=True)
    ids = list(session.execute(select_columns(DIRTY.c.id)).scalars())
    cells: dict[Key, list[Mapping[Any, Any]]] = defaultdict(list)
    for row in session.execute(select_columns(*(TABLE.c[k] for k in CELL_INPUTS))).mappings():
        cells[key_of(row)].append(row)
    session.execute(delete(CELLS))
    values = [cell_values(key, rows) for key, rows in sorted(cells.items())]
    for start in range(0, len(values), 500):
        session.execute(insert(CELLS), values[start : start + 500])
    _forget(session, ids)
    return len(values)


def stored_cells(session: Session) -> list[dict[str, Any]]:
    """Every stored cell as a dict, in key order (what ``cell_values`` would write)."""
    found = session.execute(select_columns(CELLS).order_by(*(CELLS.c[k] for k in CELL)))
    return [dict(row) for row in found.mappings()]


def logged(session: Session) -> int:
    """How many log entries wait for a fold."""
    return int(session.execute(select_columns(func.count()).select_from(DIRTY)).scalar_one())


def current(
    session: Session,
    cell_filter: Sequence[ColumnElement[bool]],
    row_filter: Sequence[ColumnElement[bool]],
) -> list[dict[str, Any]]:
    """The selected cells as they stand (stored if not logged, else recomputed from their
    rows), each with its key, counts (``COUNTS``), each span's sorted values in seconds and
    each span's sum (``SUMS``). The filters are the same conditions over ``CELLS`` and over
    ``TABLE``; both parts are one statement, so one snapshot."""
    d = DIRTY.c
    logged_cells = select_columns(*(d[k] for k in CELL)).distinct().subquery("logged")
    stored = select_columns(
        literal_column("'c'").label("kind"),
        *(CELLS.c[k] for k in (*CELL, *COUNTS, *SPANS)),
        *(CELLS.c[SUMS[span]] for span in SPANS),
    ).where(
        *cell_filter,
        ~exists(select_columns(literal_column("1")).where(_same_cell(DIRTY, CELLS))),
    )
    t = TABLE.c
    recounted = (
        select_columns(
            literal_column("'r'").label("kind"),
            *(t[k] for k in CELL),
            literal_column("1").label("n"),
            case((t.outcome == "cancelled", 1), else_=0).label("cancelled"),
            case((t.outcome.is_not(None), 1), else_=0).label("closed"),
            case((t.shipped, 1), else_=0).label("shipped"),
            case((and_(t.shipped, t.excursion), 1), else_=0).label("excursions"),
            *(null().cast(LargeBinary).label(span) for span in SPANS),
            *(t[span].label(SUMS[span]) for span in SPANS),  # the row's own value
        )
        .select_from(logged_cells.join(TABLE, _same_cell(TABLE, logged_cells)))  # type: ignore[arg-type]
        .where(*row_filter)
    )
    stmt = union_all(stored, recounted)
    postgresql = session.get_bind().dialect.name == "postgresql"
    cells: dict[Key, dict[str, Any]] = {}
    width = len(CELL)
    for kind, *values in _driver_rows(session, stmt, binary=postgresql):
        key = tuple(values[:width])
        counts = values[width : width + len(COUNTS)]
        rest = values[width + len(COUNTS) :]
        if kind == "c":
            cells[key] = {
                **dict(zip(CELL, key, strict=True)),
                **dict(zip(COUNTS, counts, strict=True)),
                **{s: unpack(blob) for s, blob in zip(SPANS, rest[: len(SPANS)], strict=True)},
                **{SUMS[s]: v for s, v in zip(SPANS, rest[len(SPANS) :], strict=True)},
            }
            continue
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = {
                **dict(zip(CELL, key, strict=True)),
                **dict.fromkeys(COUNTS, 0),
                **{span: [] for span in SPANS},
            }
        for name, count in zip(COUNTS, counts, strict=True):
            cell[name] += count
        for span, value in zip(SPANS, rest[len(SPANS) :], strict=True):
            if value is not None:
                cell[span].append(value)
    for cell in cells.values():
        for span in SPANS:
            if isinstance(cell[span], list):
                cell[span].sort()
                cell[SUMS[span]] = math.fsum(cell[span])
    return [cells[key] for key in sorted(cells)]
