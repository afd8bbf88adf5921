"""The turnaround cells (``metrics.cells``): summaries read from the stored cells plus those
logged as changed equal the from-scratch summary before and after a fold, whatever the
stored totals say for a logged cell; the fold job leaves no log and the same answers; and on
PostgreSQL two writers changing one cell never wait on each other (the earlier design's
per-cell lock made journey writes queue behind ingest's commits)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlmodel import Session

from app.db import Database
from app.jobs.turnaround import fold_cells
from app.services.metrics import cells, turnaround_rows
from tests.conftest import NOW, Api
from tests.helpers import Journey
from tests.metrics.test_summary_oracle import close, demo, oracle

__all__ = ["demo"]  # the cohort fixture, shared

WAIT_S = 10.0


def answers_match(api: Api, database: Database) -> None:
    for group_by, query in (("route", ""), ("month", ""), ("site", "&product=CART-BCMA")):
        r = api.get("viewer", f"/api/v1/metrics/turnaround?group_by={group_by}{query}")
        assert r.status_code == 200, r.text
        filters = {"product": "CART-BCMA"} if query else {}
        want = oracle(database, group_by, **filters)
        assert want
        assert [g["key"] for g in r.json()["groups"]] == [g["key"] for g in want]
        for got, expected in zip(r.json()["groups"], want, strict=True):
            close(got, expected)


def test_logged_cells_are_read_from_their_rows_until_folded(
    api: Api, database: Database, demo: None
) -> None:
    with database.session() as session:
        assert cells.logged(session) == 0  # the generator's bulk rewrite folded everything
        stored = cells.stored_cells(session)
    assert len(stored) > 4
    answers_match(api, database)
    # Every other cell's stored totals made wrong, and each such cell logged (as a writer
    # that changed its rows would): readers must recompute exactly those.
    spoiled = [cells.key_of(c) for c in stored[::2]]
    with database.transaction() as session:
        for key in spoiled:
            where = [cells.CELLS.c[k] == v for k, v in zip(cells.CELL, key, strict=True)]
            session.execute(
                update(cells.CELLS)
                .where(*where)
                .values(n=0, closed=0, vein_to_vein_s=cells.pack([]), vein_to_vein_sum=0.0)
            )
        cells.mark(session, spoiled)
        cells.mark(session, spoiled[:2])  # logged twice: the same answers
    answers_match(api, database)
    assert fold_cells(database, now=NOW) == len(spoiled)
    with database.session() as session:
        assert cells.logged(session) == 0
        assert cells.stored_cells(session) == stored
    answers_match(api, database)
    assert fold_cells(database, now=NOW) == 0  # nothing left: a no-op


def test_journey_writes_log_cells_and_the_fold_clears_them(
    api: Api, database: Database, demo: None
) -> None:
    j = Journey(api, route="KASHIWA-LOCAL", patient="CELLS-1")
    j.to_infusion()
    other = Journey(api, route="JP-US-EWR", patient="CELLS-2")
    other.schedule()
    other.step("collected")
    other.step("cancelled", coi=False)
    with database.session() as session:
        assert cells.logged(session) > 0
    answers_match(api, database)  # the logged cells from their rows
    with database.session() as session:
        want = [
            cells.cell_values(key, rows)
            for key, rows in sorted(by_cell(turnaround_rows.stored(session)).items())
        ]
    assert fold_cells(database, now=NOW) > 0
    with database.session() as session:
        assert cells.logged(session) == 0
        assert cells.stored_cells(session) == want
    answers_match(api, database)


def by_cell(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    found: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(cells.key_of(row), []).append(row)
    return found


def rewrite(database: Database, case_id: str) -> Session:
    """A session with the case's row rewritten and its cell logged, left uncommitted."""
    session = database.session(write=True)
    session.execute(delete(turnaround_rows.TABLE).where(turnaround_rows.TABLE.c.case_id == case_id))
    turnaround_rows.refresh(session, case_id=case_id)
    return session


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest.mark.postgres
def test_writers_of_one_cell_and_a_folder_never_wait_on_each_other(
    api: Api, database: Database
) -> None:
    first, second = (Journey(api, route="KASHIWA-LOCAL", patient=f"TWO-{k}") for k in (1, 2))
    for j in (first, second):
        j.schedule()
        j.step("collected")
    with database.session() as session:
        rows = by_cell(turnaround_rows.stored(session))
    assert len(rows) == 1  # one cell: same route, site, product and month
    assert fold_cells(database, now=NOW) == 1
    holder = rewrite(database, first.case["id"])  # open: its cell logged, not committed
    try:
        done: list[BaseException | int] = []

        def others() -> None:
            try:
                session = rewrite(database, second.case["id"])
                session.commit()
                session.close()
                done.append(fold_cells(database, now=NOW))
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                done.append(exc)

        worker = threading.Thread(target=others, daemon=True)
        worker.start()
        worker.join(WAIT_S)
        assert not worker.is_alive(), "a writer or the fold waited on an open writer"
        assert done == [1], done  # the second's change folded; the first's is not visible
        # While one folder is at work, another skips its turn instead of queueing.
        with database.transaction() as folding:
            cells.mark(folding, list(rows))
            assert cells.fold(folding) == 1
            assert fold_cells(database, now=NOW) == 0
        holder.commit()
    finally:
        holder.close()
    with database.session() as session:
        assert cells.logged(session) == 1  # the first writer's entry, committed after the fold
    assert fold_cells(database, now=NOW) == 1
    with database.session() as session:
        assert cells.logged(session) == 0
        (key,) = rows
        stored = cells.stored_cells(session)
        assert stored == [cells.cell_values(key, turnaround_rows.stored(session))]
