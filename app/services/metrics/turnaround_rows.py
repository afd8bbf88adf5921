"""The per-case turnaround rows (``case_turnaround``), kept in step with what they summarise.

``refresh`` is the one writer: every use case that changes a row's inputs calls it in its own
transaction (a milestone recorded or corrected, a cancellation or recollection, a shipment
created, an excursion written or removed). It recomputes the case's row from its records with
the same set query a from-scratch computation uses (``case_rows.fetch_rows``), so the
incremental table and a recomputation cannot mean different things; tests hold one against
the other after random sequences of changes. Bulk writers (the demo generator, the benchmark
data, migration 0014) call ``recompute_all``.

It also rewrites the totals of the cells (``case_turnaround_cell``) the case's row leaves and
enters, from those cells' rows, so a cell's totals are always what its rows sum to.
"""

from __future__ import annotations

import math
import sys
import zlib
from array import array
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, and_, delete, func, insert
from sqlalchemy import select as select_columns
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from app.services.metrics.case_rows import (
    AT,
    CASES,
    COLUMN,
    EXCURSION,
    MILESTONES,
    SHIPPED,
    STATUS,
    fetch_rows,
    group_key,
)
from models.metrics import CELL, SPANS, TIMES, CaseTurnaround, TurnaroundCell

TABLE: Table = CaseTurnaround.__table__  # type: ignore[attr-defined]
CELLS: Table = TurnaroundCell.__table__  # type: ignore[attr-defined]
# Each span's sum column in a cell (its sorted values are in the span's own column).
SUMS = {span: span.removesuffix("_s") + "_sum" for span in SPANS}
# What a cell's totals are computed from: its key, then each row's flags and spans.
CELL_INPUTS = (*CELL, "outcome", "shipped", "excursion", *SPANS)
# pg_advisory_xact_lock's first key for cell locks (the second is the cell's checksum).
CELL_LOCKS = 0x76325643
OUTCOMES = ("infused", "cancelled")
CHUNK = 5_000


def values(row: Sequence[Any]) -> dict[str, Any]:
    """A table row's values from a from-scratch row (CaseRow's layout)."""
    at = {column: row[AT[name]] for column, name in zip(TIMES, MILESTONES, strict=True)}
    spans = {
        name: at[end] - at[start] if at[start] is not None and at[end] is not None else None
        for name, (start, end) in SPANS.items()
    }
    status = row[STATUS]
    return {
        "case_id": row[0],
        **{name: row[COLUMN[name]] for name in COLUMN},
        "month": group_key(row, "month"),
        **at,
        **spans,
        "shipped": bool(row[SHIPPED]),
        "excursion": bool(row[EXCURSION]),
        "outcome": status if status in OUTCOMES else None,
    }


def recomputed(session: Session, *, case_id: str | None = None) -> list[dict[str, Any]]:
    """The rows a from-scratch computation gives (one case's, or every case's)."""
    return [values(row) for row in fetch_rows(session, case_id=case_id)]


def refresh(session: Session, *, case_id: str) -> None:
    """Bring one case's row in step with its records, in the caller's transaction."""
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        # Writers of one case's inputs (an event, an excursion from ingest) take turns here,
        # so the last to commit recomputed from what the others committed.
        session.execute(
            select_columns(CASES.c.id).where(CASES.c.id == case_id).with_for_update(key_share=True)
        )
    before = session.execute(
        select_columns(*(TABLE.c[k] for k in CELL)).where(TABLE.c.case_id == case_id)
    ).first()
    cells = set() if before is None else {tuple(before)}
    fresh = recomputed(session, case_id=case_id)
    if not fresh:
        session.execute(delete(TABLE).where(TABLE.c.case_id == case_id))
        recount(session, cells)
        return
    (row,) = fresh
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(TABLE).values(row)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[TABLE.c.case_id],
            set_={k: stmt.excluded[k] for k in row if k != "case_id"},
        )
    )
    recount(session, cells | {tuple(row[k] for k in CELL)})


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
    """A cell's totals from its rows (``CELL_INPUTS``)."""
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


def recount(session: Session, cells: Iterable[tuple[Any, ...]]) -> None:
    """Rewrite some cells' totals from their rows (a cell left without rows has none)."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    for key in sorted(cells):  # one order for every writer: no deadlock between two cells
        if postgresql:
            # Writers of one cell take turns, so the last to commit counted what the others
            # committed (each statement after the lock reads the latest commits).
            checksum = zlib.crc32("\x1f".join(key).encode())
            session.execute(
                select_columns(func.pg_advisory_xact_lock(CELL_LOCKS, checksum - (1 << 31)))
            )
        rows = (
            session.execute(
                select_columns(*(TABLE.c[k] for k in CELL_INPUTS)).where(
                    and_(*(TABLE.c[k] == v for k, v in zip(CELL, key, strict=True)))
                )
            )
            .mappings()
            .all()
        )
        session.execute(
            delete(CELLS).where(and_(*(CELLS.c[k] == v for k, v in zip(CELL, key, strict=True))))
        )
        if rows:
            session.execute(insert(CELLS).values(cell_values(key, rows)))


def rebuild_cells(session: Session) -> int:
    """Rewrite every cell's totals from the rows (bulk writers, migration 0016); how many."""
    cells: dict[tuple[Any, ...], list[Mapping[Any, Any]]] = defaultdict(list)
    for row in session.execute(select_columns(*(TABLE.c[k] for k in CELL_INPUTS))).mappings():
        cells[tuple(row[k] for k in CELL)].append(row)
    session.execute(delete(CELLS))
    values = [cell_values(key, rows) for key, rows in sorted(cells.items())]
    for start in range(0, len(values), 500):
        session.execute(insert(CELLS), values[start : start + 500])
    return len(values)


def stored_cells(session: Session) -> list[dict[str, Any]]:
    """Every stored cell as a dict, in key order (what ``rebuild_cells`` would write)."""
    found = session.execute(select_columns(CELLS).order_by(*(CELLS.c[k] for k in CELL)))
    return [dict(row) for row in found.mappings()]


def recompute_all(session: Session) -> int:
    """Rewrite every row from scratch (bulk writers); the number of rows."""
    session.flush()
    rows = recomputed(session)
    session.execute(delete(TABLE))
    for start in range(0, len(rows), CHUNK):
        session.execute(insert(TABLE), rows[start : start + CHUNK])
    rebuild_cells(session)
    return len(rows)


def stored(session: Session) -> list[dict[str, Any]]:
    """Every stored row as a dict, by case id (what ``recomputed`` is compared with)."""
    found = session.execute(select_columns(TABLE).order_by(TABLE.c.case_id)).mappings()
    return [dict(row) for row in found]
