"""The per-case turnaround rows kept by the services equal a from-scratch recomputation,
after any sequence of journey events, corrections, recollections, shipments and excursions;
migration 0015 fills them from existing records the same way. The cells as readers see them
(stored, or recomputed while logged as changed) are what the rows add up to, before and
after any fold; migration 0016 fills them."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from alembic import command
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.errors import LockNotAvailable
from sqlalchemy import text

from app.db import Database
from app.jobs import sweeps
from app.jobs.turnaround import fold_cells
from app.migrations import alembic_config, current_revision, head_revision, upgrade
from app.services.metrics import cells, turnaround_rows
from models.metrics import SPANS
from tests.conftest import NOW, Api
from tests.helpers import Journey, event, iso

ROUTES = ("KASHIWA-LOCAL", "JP-US-EWR", "TOKYO-KASHIWA")
MIN = timedelta(minutes=1)
_patients = itertools.count()


def table_and_recomputation(database: Database) -> tuple[list[Any], list[Any]]:
    with database.session() as session:
        stored = turnaround_rows.stored(session)
        fresh = sorted(turnaround_rows.recomputed(session), key=lambda r: r["case_id"])
    return stored, fresh


def assert_in_step(database: Database) -> list[Any]:
    stored, fresh = table_and_recomputation(database)
    assert stored == fresh
    # The cells a reader adds up are the totals of their rows, folded or not.
    found: dict[tuple[Any, ...], list[Any]] = {}
    for row in stored:
        found.setdefault(cells.key_of(row), []).append(row)
    want = [as_read(cells.cell_values(key, rows)) for key, rows in sorted(found.items())]
    with database.session() as session:
        assert [as_read(c) for c in cells.current(session, [], [])] == want
    return stored


def as_read(cell: dict[str, Any]) -> dict[str, Any]:
    """A cell with its spans as lists (stored ones come packed, read ones as arrays)."""
    return {
        k: list(cells.unpack(v) if isinstance(v, bytes) else v) if k in SPANS else v
        for k, v in cell.items()
    }


def assert_folded(database: Database) -> None:
    """After a fold: no log left, and the stored cells are their rows' totals."""
    fold_cells(database, now=NOW)
    stored = assert_in_step(database)
    found: dict[tuple[Any, ...], list[Any]] = {}
    for row in stored:
        found.setdefault(cells.key_of(row), []).append(row)
    with database.session() as session:
        assert cells.logged(session) == 0
        kept = cells.stored_cells(session)
    assert kept == [cells.cell_values(key, rows) for key, rows in sorted(found.items())]


class Walker:
    """One case taken a step at a time; refused steps are fine (they must change nothing)."""

    def __init__(self, api: Api, route: str) -> None:
        self.api = api
        self.j = Journey(
            api, route=route, patient=f"ROWS-{next(_patients)}", start=NOW - timedelta(days=90)
        )
        self.stage = 0
        self.inbound: dict[str, Any] | None = None
        self.outbound: dict[str, Any] | None = None
        self.in_transit: dict[str, Any] | None = None
        self.readings_from = self.hot_from = self.j.t

    def _event(self, type_: str, coi: bool = True) -> Any:
        persona, site = (
            (self.j.maker, self.j.factory)
            if type_ in {"received_at_manufacturing", "manufacturing_started", "qc_released"}
            or type_ == "manufacturing_failed"
            else (self.j.coord, self.j.site)
        )
        return event(
            self.api,
            persona,
            self.j.case,
            type_,
            self.j.at(hours=1),
            site,
            self.j.coi if coi else None,
        )

    def _ship(self, direction: str) -> None:
        fresh = direction == "to_manufacturing" and self.j.route != "JP-US-EWR"
        profile = "FRESH_2_8" if fresh else "CRYO_LN2"
        shipment = self.j.ship(direction, profile)
        if direction == "to_manufacturing":
            self.inbound = shipment
        else:
            self.outbound = shipment

    def _custody(self, shipment: dict[str, Any] | None, action: str) -> None:
        if shipment is None:
            return
        body = {
            "action": action,
            "occurred_at": iso(self.j.at(hours=1)),
            "from_party": "a",
            "to_party": "b",
            "coi": self.j.coi,
        }
        r = self.api.post(self.j.courier, f"/api/v1/shipments/{shipment['id']}/custody", body)
        if r.status_code == 201 and action == "picked_up":
            self.in_transit, self.readings_from = shipment, self.j.t
        elif action == "delivered":
            self.in_transit = None

    def plan(self) -> list[Callable[[], Any]]:
        return [
            self.j.schedule,
            lambda: self._event("collected"),
            lambda: self._ship("to_manufacturing"),
            lambda: self._custody(self.inbound, "picked_up"),
            lambda: self._custody(self.inbound, "delivered"),
            lambda: self._event("received_at_manufacturing"),
            lambda: self._event("manufacturing_started", coi=False),
            lambda: self._event("qc_released", coi=False),
            lambda: self._ship("to_site"),
            lambda: self._custody(self.outbound, "picked_up"),
            lambda: self._custody(self.outbound, "delivered"),
            lambda: self._event("received_at_site"),
            lambda: self._event("thawed"),
            lambda: self._event("infused"),
        ]

    def advance(self) -> None:
        steps = self.plan()
        if self.stage < len(steps):
            try:
                steps[self.stage]()
            except AssertionError:  # a helper refused (e.g. a shipment already open)
                pass
            self.stage += 1

    def cancel(self) -> None:
        self._event("cancelled", coi=False)

    def fail_and_recollect(self) -> None:
        if self._event("manufacturing_failed", coi=False).status_code == 201:
            r = self._event("recollection", coi=False)
            if r.status_code == 201:
                self.stage = 1  # collect again, in the next cycle

    def _milestones(self) -> list[dict[str, Any]]:
        r = self.api.get("admin", f"/api/v1/cases/{self.j.case['id']}")
        return [m for m in r.json()["milestones"] if m["status"] != "voided"]

    def correct(self, action: str) -> None:
        found = self._milestones()
        if not found:
            return
        last = max(found, key=lambda m: (m["occurred_at"], m["id"]))
        body: dict[str, Any] = {
            "action": action,
            "reason": "entered against the wrong time",
            "signature": {"password_or_key": self.api.keys["admin"], "meaning": "correction"},
        }
        if action == "amend":
            body["occurred_at"] = iso(datetime.fromisoformat(last["occurred_at"]) - 7 * MIN)
        self.api.post(
            "admin", f"/api/v1/cases/{self.j.case['id']}/milestones/{last['id']}/corrections", body
        )

    def temperatures(self, temps: list[float], late: bool) -> None:
        """Readings on the shipment in transit: ``late`` ones fall between the last hot ones
        (a backfill the replay must fold in)."""
        shipment = self.in_transit
        if shipment is None:
            return
        start = self.hot_from + 5 * MIN if late else self.readings_from + 10 * MIN
        items = [
            {"device_id": shipment["device_ids"][0], "ts": iso(start + 10 * k * MIN), "temp_c": t}
            for k, t in enumerate(temps)
        ]
        r = self.api.post(self.j.courier, "/api/v1/readings", {"readings": items})
        assert r.status_code == 200, r.text
        if not late:
            self.hot_from, self.readings_from = start, start + 10 * len(temps) * MIN


# Out of range, critical at one reading; out of range long enough for an alarm; in range.
HOT = {"FRESH_2_8": [5.0, 12.5, 13.0, 16.5, 5.5], "CRYO_LN2": [-190.0, -120.0, -125.0, -190.0]}
WARM = {"FRESH_2_8": [5.0, 9.0, 9.5, 9.0, 5.0], "CRYO_LN2": [-190.0, -148.0, -149.0, -190.0]}
COLD = {"FRESH_2_8": 5.0, "CRYO_LN2": -190.0}
operation = st.tuples(
    st.sampled_from([0, 0, 0, 1, 2]),  # mostly one case, so it gets far
    st.sampled_from(
        ["advance"] * 6 + ["cancel", "fail", "amend", "void", "hot", "warm", "late", "new", "fold"]
    ),
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(operation, min_size=4, max_size=40), routes=st.permutations(ROUTES))
# Always tried as well: excursions, a backfill and its replay, corrections, a recollection.
@example(
    ops=[(0, "advance")] * 4
    + [(0, "warm"), (0, "late"), (0, "hot"), (0, "amend"), (0, "advance"), (0, "void")]
    + [(1, "advance")] * 7
    + [(0, "fold"), (1, "fail"), (1, "advance"), (1, "amend"), (2, "advance"), (2, "cancel")],
    routes=list(ROUTES),
)
def test_the_table_equals_a_recomputation_after_any_sequence(
    api: Api, database: Database, ops: list[tuple[int, str]], routes: list[str]
) -> None:
    walkers = [Walker(api, route) for route in routes]
    for index, op in ops:
        w = walkers[index]
        if op == "advance":
            w.advance()
        elif op == "cancel":
            w.cancel()
        elif op == "fail":
            w.fail_and_recollect()
        elif op in ("amend", "void"):
            w.correct(op)
        elif op in ("hot", "warm") and w.in_transit is not None:
            w.temperatures((HOT if op == "hot" else WARM)[w.in_transit["profile"]], late=False)
        elif op == "late" and w.in_transit is not None:
            w.temperatures([COLD[w.in_transit["profile"]]] * 4, late=True)
            sweeps.reevaluate_marked(database, now=NOW)
        elif op == "new":
            walkers[index] = Walker(api, w.j.route)
        elif op == "fold":
            assert_folded(database)
        assert_in_step(database)
    assert_folded(database)


def test_a_row_follows_its_case(api: Api, database: Database) -> None:
    w = Walker(api, "KASHIWA-LOCAL")
    for _ in range(4):  # scheduled, collected, shipment created, picked up
        w.advance()
    (row,) = assert_in_step(database)
    assert row["shipped"] and not row["excursion"] and row["outcome"] is None
    assert row["received_at_manufacturing_s"] is None and row["vein_to_vein_s"] is None
    w.temperatures(HOT["FRESH_2_8"], late=False)  # above 15 °C: a critical excursion
    (row,) = assert_in_step(database)
    assert row["excursion"]
    while w.stage < len(w.plan()):
        w.advance()
    (row,) = assert_in_step(database)
    assert row["outcome"] == "infused"
    assert row["vein_to_vein_s"] == row["infused_s"] - row["collected_s"] > 0
    w.correct("void")  # the infusion voided: the case is open again
    (row,) = assert_in_step(database)
    assert row["outcome"] is None and row["infused_s"] is None
    # A cancelled case before collection has no row; a recollection drops the old cycle's.
    other = Walker(api, "JP-US-EWR")
    other.advance()
    other.cancel()
    assert len(assert_in_step(database)) == 1
    third = Walker(api, "TOKYO-KASHIWA")
    for _ in range(7):
        third.advance()
    third.fail_and_recollect()
    rows = assert_in_step(database)
    assert third.j.case["id"] not in {r["case_id"] for r in rows}


def test_migration_0015_fills_the_table_from_existing_records(
    api: Api, database: Database, db_url: str
) -> None:
    for route in ("KASHIWA-LOCAL", "JP-US-EWR"):
        Journey(api, route=route, patient=f"MIG-{route}").to_infusion()
    Walker(api, "TOKYO-KASHIWA").advance()  # scheduled only: no row
    cancelled = Journey(api, patient="MIG-C")
    cancelled.schedule()
    cancelled.step("collected")
    cancelled.step("cancelled", coi=False)
    before = assert_in_step(database)
    assert len(before) == 3
    database.engine.dispose()
    command.downgrade(alembic_config(db_url), "0014")
    assert current_revision(database.engine) == "0014"
    upgrade(db_url)
    assert current_revision(database.engine) == head_revision()
    assert assert_in_step(database) == before
    with database.session() as session:
        assert cells.logged(session) == 0
    assert_folded(database)  # 0016 wrote the cells: a fold finds nothing to change


@pytest.mark.parametrize("route", ["KASHIWA-LOCAL"])
def test_bulk_recompute_rewrites_every_row(api: Api, database: Database, route: str) -> None:
    Journey(api, route=route, patient="BULK-1").to_infusion()
    before = assert_in_step(database)
    with database.transaction() as session:
        assert turnaround_rows.recompute_all(session) == 1
    with database.session() as session:
        assert cells.logged(session) == 0  # the cells rewritten with the rows
    assert assert_in_step(database) == before
    assert_folded(database)


def test_a_warning_leaves_the_flag_and_its_rise_to_major_sets_it(api: Api) -> None:
    database: Database = api.database
    w = Walker(api, "KASHIWA-LOCAL")
    for _ in range(4):  # scheduled, collected, shipment created, picked up
        w.advance()
    w.temperatures([5.0, 9.0], late=False)  # out of range, shorter than the 10-min dwell
    (row,) = assert_in_step(database)
    assert not row["excursion"]
    with database.session() as session:
        (severity,) = session.execute(text("SELECT severity FROM excursion")).one()
    assert severity == "warning"
    w.temperatures([9.0, 9.0], late=False)  # the same excursion, now 30 min long: major
    (row,) = assert_in_step(database)
    assert row["excursion"]


def test_refreshers_of_one_case_take_turns(api: Api, database: Database) -> None:
    # PostgreSQL: two transactions refreshing one case's row (an event, an excursion from
    # ingest) must not both compute from what neither has committed: the second waits.
    if database.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: the writers already take turns")
    w = Walker(api, "KASHIWA-LOCAL")
    w.advance()
    w.advance()  # collected: the case has a row
    case_id = w.j.case["id"]
    with database.session(write=True) as first:
        turnaround_rows.refresh(first, case_id=case_id)  # its turn lasts to its end
        with database.session(write=True) as second:
            second.execute(text("SET LOCAL lock_timeout = '300ms'"))
            with pytest.raises(LockNotAvailable):
                turnaround_rows.refresh(second, case_id=case_id)
            second.rollback()
        first.rollback()
    assert_in_step(database)
