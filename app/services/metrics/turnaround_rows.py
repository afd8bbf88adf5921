"""The per-case turnaround rows (``case_turnaround``), kept in step with what they summarise.

``refresh`` is the one writer: every use case that changes a row's inputs calls it in its own
transaction (a milestone recorded or corrected, a cancellation or recollection, a shipment
created, an excursion written or removed). It recomputes the case's row from its records with
the same set query a from-scratch computation uses (``case_rows.fetch_rows``), so the
incremental table and a recomputation cannot mean different things; tests hold one against
the other after random sequences of changes. Bulk writers (the demo generator, the benchmark
data, migration 0014) call ``recompute_all``.

A change to a row also logs the cells (``metrics.cells``) the row leaves and enters, an
append that never waits on another writer; the cells' stored totals are rewritten later, by a
fold, and readers recompute logged cells from their rows meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, delete, insert
from sqlalchemy import select as select_columns
from sqlmodel import Session

from app.db import holds_row_lock
from app.raw import Raw
from app.services.metrics import case_rows, cells
from app.services.metrics.case_rows import (
    AT,
    COLUMN,
    EXCURSION,
    MILESTONES,
    SHIPPED,
    STATUS,
    VOIDED_ONE,
    fetch_rows,
    group_key,
)
from models.metrics import SPANS, TIMES, CaseTurnaround

TABLE: Table = CaseTurnaround.__table__  # type: ignore[attr-defined]
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


def recomputed(session: Session) -> list[dict[str, Any]]:
    """Every case's row as a from-scratch computation gives it."""
    return [values(row) for row in fetch_rows(session)]


# Every journey write refreshes its case's row: its statements are plain numbers and text,
# run on the driver's connection (through SQLAlchemy's Session each cost several times the
# statement itself). The column names are the table's own.
COLUMNS = tuple(c.name for c in TABLE.columns)
_LOCK_CASE = "SELECT id FROM cases WHERE id = ? FOR NO KEY UPDATE"  # writers take turns
# The row as it stands and whether the case has a voided milestone: one round trip (a row
# always comes back; its columns are NULL when the case has none yet).
_BEFORE = (
    f"SELECT {', '.join('t.' + c for c in COLUMNS)}, "  # noqa: S608 - the table's own names
    f"EXISTS ({VOIDED_ONE}) "
    "FROM (SELECT 1 AS one) AS o LEFT JOIN case_turnaround AS t ON t.case_id = ?"
)


def refresh(session: Session, *, case_id: str) -> None:
    """Bring one case's row in step with its records, in the caller's transaction: one round
    trip reads (after the case's lock, when the caller does not hold it yet), one writes."""
    session.flush()
    raw = Raw.of(session)
    reads: list[tuple[str, Any]] = []
    if raw.postgres and not holds_row_lock(session, "cases", case_id):
        # Writers of one case's inputs (an event, an excursion from ingest) take turns here,
        # so the last to commit recomputed from what the others committed. A journey step
        # locked the case when it loaded it (the same lock), and need not ask again. The
        # reads after it in the pipeline take their snapshots once it is granted.
        reads.append((_LOCK_CASE, (case_id,)))
    reads += [(_BEFORE, (case_id, case_id)), case_rows.one_case_query(session, case_id)]
    *_, before, found = raw.pipelined(reads)
    if len(before) != 1:  # a LEFT JOIN to one row gives one row
        raise RuntimeError("the turnaround row's read gave nothing")
    *stored, voided = before[0]
    # SQLite gives its booleans back as 0 and 1, which compare equal to False and True.
    old = None if stored[0] is None else dict(zip(COLUMNS, stored, strict=True))
    fresh = [
        values(row) for row in case_rows.one_case_rows(session, found, case_id, voided=bool(voided))
    ]
    if not fresh:
        if old is not None:
            session.execute(delete(TABLE).where(TABLE.c.case_id == case_id))
            cells.mark(session, [cells.key_of(old)])
        return
    (row,) = fresh
    if row == old:
        return  # nothing changed: no write, no cell to redo
    changed = [cells.key_of(row)] + ([] if old is None else [cells.key_of(old)])
    raw.pipelined([(_upsert(tuple(row)), tuple(row.values())), *cells.marking(changed)])


_UPSERTS: dict[tuple[str, ...], str] = {}


def _upsert(columns: tuple[str, ...]) -> str:
    """The insert-or-update of one row (every journey write runs it), the same text on both
    databases."""
    found = _UPSERTS.get(columns)
    if found is None:
        if not set(columns) <= set(COLUMNS):
            raise ValueError(
                f"not columns of case_turnaround: {sorted(set(columns) - set(COLUMNS))}"
            )
        updates = ", ".join(f"{k} = excluded.{k}" for k in columns if k != "case_id")
        found = _UPSERTS[columns] = (
            f"INSERT INTO case_turnaround ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT (case_id) DO UPDATE SET {updates}"
        )
    return found


def recompute_all(session: Session) -> int:
    """Rewrite every row from scratch, then every cell (bulk writers); the number of rows."""
    session.flush()
    rows = recomputed(session)
    session.execute(delete(TABLE))
    for start in range(0, len(rows), CHUNK):
        session.execute(insert(TABLE), rows[start : start + CHUNK])
    cells.rebuild(session)
    return len(rows)


def stored(session: Session) -> list[dict[str, Any]]:
    """Every stored row as a dict, by case id (what ``recomputed`` is compared with)."""
    found = session.execute(select_columns(TABLE).order_by(TABLE.c.case_id)).mappings()
    return [dict(row) for row in found]
