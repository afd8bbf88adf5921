"""Property: the same readings in any order and batching give the same excursions and MKT.

Readings go through the real HTTP ingest in random batches and orders; late ones mark the
shipment, the re-evaluation job replays it; the result must equal the detector run once over
the readings in time order.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.db import Database
from app.jobs import sweeps
from app.services.coldchain.detector import Rules, evaluate
from app.times import from_ms
from models.reference import Profile
from seeds.loader import SEED_DIR, _read
from tests.conftest import NOW, Api
from tests.helpers import Journey

FRESH = Rules.from_profile(
    next(
        Profile.model_validate(p)
        for p in _read("profiles.yaml", SEED_DIR)
        if p["code"] == "FRESH_2_8"
    )
)
_patients = itertools.count()
# Mostly in range, with excursions high and low and the odd critical reading.
temperature = st.one_of(
    st.floats(2.0, 8.0), st.floats(8.1, 14.0), st.floats(0.5, 1.9), st.sampled_from([16.0, -1.0])
).map(lambda t: round(t, 2))


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    temps=st.lists(temperature, min_size=2, max_size=60),
    gaps=st.lists(st.sampled_from([5, 10, 10, 10, 15, 40]), min_size=60, max_size=60),
    data=st.data(),
)
def test_any_order_and_batching_gives_the_in_order_result(
    api: Api, database: Database, temps: list[float], gaps: list[int], data: st.DataObject
) -> None:
    j = Journey(api, patient=f"ORDER-{next(_patients)}", start=NOW - timedelta(days=30))
    j.schedule()
    j.step("collected")
    ship = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(ship, "picked_up")
    device = ship["device_ids"][0]
    t = j.t
    items: list[dict[str, Any]] = []
    for temp_c, gap in zip(temps, gaps, strict=False):
        items.append({"device_id": device, "ts": t.isoformat(), "temp_c": temp_c})
        t += timedelta(minutes=gap)
    shuffled = data.draw(st.permutations(items))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(items) - 1), max_size=4)))
    for start, end in itertools.pairwise([0, *cuts, len(items)]):
        r = api.post("courier", "/api/v1/readings", {"readings": shuffled[start:end]})
        assert r.status_code == 200 and r.json()["accepted"] == end - start
    sweeps.reevaluate_marked(database, now=NOW)

    t0 = int(j.t.timestamp() * 1000)
    expected_state, expected = evaluate(
        FRESH, [(t0 + sum(gaps[:i]) * 60_000, temp_c) for i, temp_c in enumerate(temps)]
    )
    got = api.get("ncc", f"/api/v1/excursions?shipment_id={ship['id']}&limit=500").json()["items"]
    assert sorted(
        (e["kind"], e["started_at"], e["duration_min"], e["peak_c"], e["severity"], e["status"])
        for e in got
    ) == sorted(
        (
            e.kind,
            _iso(e.started_ms),
            round(e.duration_ms / 60_000, 3),
            e.peak_c,
            e.severity,
            "closed" if e.ended_ms is not None else "open",
        )
        for e in expected
    )
    summary = api.get("ncc", f"/api/v1/shipments/{ship['id']}").json()["excursion_summary"]
    mkt = expected_state.mkt_c()
    assert summary["mkt_c"] == (pytest.approx(round(mkt, 3), abs=1e-3) if mkt is not None else None)
    assert summary["out_of_range_min"] == pytest.approx(expected_state.oor_total_ms() / 60_000)


def _iso(ms: int) -> str:
    return from_ms(ms).isoformat().replace("+00:00", "Z")
