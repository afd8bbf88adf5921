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

from sqlalchemy import Table, bindparam, delete, insert
from sqlalchemy import select as select_columns
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from app.services.metrics import cells
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


def recomputed(session: Session, *, case_id: str | None = None) -> list[dict[str, Any]]:
    """The rows a from-scratch computation gives (one case's, or every case's)."""
    return [values(row) for row in fetch_rows(session, case_id=case_id)]


# Every journey write refreshes its case's row: its statements are built once.
_LOCK_CASE = (
    select_columns(CASES.c.id)
    .where(CASES.c.id == bindparam("case_id"))
    .with_for_update(key_share=True)
)
_BEFORE = select_columns(TABLE).where(TABLE.c.case_id == bindparam("case_id"))


def refresh(session: Session, *, case_id: str) -> None:
    """Bring one case's row in step with its records, in the caller's transaction."""
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        # Writers of one case's inputs (an event, an excursion from ingest) take turns here,
        # so the last to commit recomputed from what the others committed.
        session.execute(_LOCK_CASE, {"case_id": case_id})
    before = session.execute(_BEFORE, {"case_id": case_id}).first()
    old = None if before is None else dict(before._mapping)
    fresh = recomputed(session, case_id=case_id)
    if not fresh:
        if old is not None:
            session.execute(delete(TABLE).where(TABLE.c.case_id == case_id))
            cells.mark(session, [cells.key_of(old)])
        return
    (row,) = fresh
    if row == old:
        return  # nothing changed: no write, no cell to redo
    session.execute(_upsert(session.get_bind().dialect.name, tuple(row)), row)
    cells.mark(session, [cells.key_of(row)] + ([] if old is None else [cells.key_of(old)]))


_UPSERTS: dict[tuple[str, tuple[str, ...]], Any] = {}


def _upsert(dialect_name: str, columns: tuple[str, ...]) -> Any:
    """The insert-or-update of one row, built once per dialect (every journey write runs it)."""
    found = _UPSERTS.get((dialect_name, columns))
    if found is None:
        dialect = postgresql if dialect_name == "postgresql" else sqlite
        stmt = dialect.insert(TABLE).values({k: bindparam(k) for k in columns})
        found = stmt.on_conflict_do_update(
            index_elements=[TABLE.c.case_id],
            set_={k: stmt.excluded[k] for k in columns if k != "case_id"},
        )
        _UPSERTS[(dialect_name, columns)] = found
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
