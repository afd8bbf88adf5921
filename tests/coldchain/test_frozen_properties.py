"""Property: signed excursions never change, and every excursion change is audited.

Any interleaving of reading batches (in and out of order, in and out of range), QA's
signatures of closed excursions and replays (the scheduler's ``reevaluate_marked``): after
each step, every row signed before it is the same in every column, and every excursion row
created, changed or removed has its audit entry, whose snapshot is the row as it now is.
Runs on SQLite and PostgreSQL (``db_url``), 100 examples each (about 12 s and 20 s).
"""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.clock import FrozenClock
from app.db import Database
from app.jobs import sweeps
from tests.conftest import NOW, Api
from tests.helpers import Journey

_patients = itertools.count()
SLOTS = 30  # a reading slot every 5 min
# FRESH_2_8: in range, high, higher, critical high, low.
temperature = st.sampled_from([5.0, 5.0, 9.0, 11.5, 14.0, 16.0, 1.0])
batch = st.lists(st.tuples(st.integers(0, SLOTS - 1), temperature), min_size=1, max_size=8)
step = st.one_of(
    st.tuples(st.just("readings"), batch),
    st.tuples(st.just("sign"), st.integers(0, 10)),
    st.tuples(st.just("sign"), st.integers(0, 10)),
    st.tuples(st.just("replay"), st.just(0)),
)


def _rows(database: Database, shipment_id: str) -> dict[int, dict[str, Any]]:
    with database.engine.connect() as conn:
        found = conn.execute(
            text("SELECT * FROM excursion WHERE shipment_id = :s"), {"s": shipment_id}
        )
        return {int(r["id"]): dict(r) for r in found.mappings()}


def _audit_after(database: Database, seq: int) -> list[tuple[int, str, str, Any]]:
    with database.engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT seq, action, entity_id, after FROM audit_log "
                "WHERE entity = 'excursion' AND seq > :s ORDER BY seq"
            ),
            {"s": seq},
        )
        return [
            (int(s), str(a), str(e), json.loads(after) if isinstance(after, str) else after)
            for s, a, e, after in found
        ]


def _open_alert_keys(database: Database, shipment_id: str) -> list[str]:
    with database.engine.connect() as conn:
        found = conn.execute(
            text("SELECT dedupe_key FROM alert WHERE status != 'resolved' AND dedupe_key LIKE :k"),
            {"k": f"excursion:{shipment_id}:%"},
        )
        return [str(k) for (k,) in found]


def _head(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(max(seq), 0) FROM audit_log")).scalar_one())


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=3, max_size=12))
def test_signed_rows_never_change_and_every_change_is_audited(
    api: Api, database: Database, clock: FrozenClock, steps: list[tuple[str, Any]]
) -> None:
    clock.set(NOW)
    n = next(_patients)  # a week apart each: the factory's capacity is never in the way
    j = Journey(api, patient=f"FROZEN-{n}", start=NOW - timedelta(days=30 + 7 * n))
    j.schedule()
    j.step("collected")
    ship = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(ship, "picked_up")
    device, t0 = ship["device_ids"][0], j.t
    for kind, arg in [*steps, ("replay", 0)]:
        before, seq = _rows(database, ship["id"]), _head(database)
        clock.advance(seconds=7)  # readings arrive after the signatures they follow
        signed_id: int | None = None
        if kind == "readings":
            items = [
                {
                    "device_id": device,
                    "ts": (t0 + timedelta(minutes=5 * slot)).isoformat(),
                    "temp_c": temp_c,
                }
                for slot, temp_c in arg
            ]
            r = api.post("courier", "/api/v1/readings", {"readings": items})
            assert r.status_code == 200, r.text
        elif kind == "sign":
            closed = sorted(
                i for i, r in before.items() if r["status"] == "closed" and r["disposition"] is None
            )
            if closed:
                signed_id = closed[arg % len(closed)]
                body = {
                    "decision": "accept",
                    "reason": "stability data",
                    "signature": {"password_or_key": api.keys["qa"], "meaning": "approval"},
                }
                url = f"/api/v1/excursions/{signed_id}/disposition"
                assert api.post("qa", url, body).status_code == 200
        else:
            sweeps.reevaluate_marked(database, now=clock())
        after, entries = _rows(database, ship["id"]), _audit_after(database, seq)
        audited: dict[tuple[str, str], Any] = {}
        for _, action, entity_id, snapshot in entries:
            audited[(entity_id, action)] = snapshot
        for i, row in before.items():
            if row["disposition"] is not None:
                assert after.get(i) == row, f"signed excursion {i} changed"
        for i in before.keys() - after.keys():
            assert (str(i), "excursion.removed") in audited
        for i, row in after.items():
            if i not in before:
                assert audited[(str(i), "excursion.created")]["peak_c"] == row["peak_c"]
            elif row != before[i]:
                action = "excursion.disposition" if i == signed_id else "excursion.changed"
                if (str(i), "excursion.removed") in audited:  # SQLite reuses a deleted id
                    action = "excursion.created"
                assert (str(i), action) in audited, f"excursion {i} changed unaudited"
                if action != "excursion.disposition":
                    last = audited[(str(i), action)]
                    assert (last["peak_c"], last["severity"], last["kind"]) == (
                        row["peak_c"],
                        row["severity"],
                        row["kind"],
                    )
            if row["refers_to_id"] is not None:
                assert after[row["refers_to_id"]]["disposition"] is not None
                event("an excursion referring to a signed one")
        # No alert stays open for an excursion that no longer exists (or is signed).
        starts = {r["started_ms"] for r in after.values() if r["disposition"] is None}
        for key in _open_alert_keys(database, ship["id"]):
            assert int(key.rsplit(":", 1)[1]) in starts, f"alert {key} open for nothing"
        if any(action == "excursion.late_readings" for _, action, _, _ in entries):
            event("a no-worse finding on a signed excursion")
