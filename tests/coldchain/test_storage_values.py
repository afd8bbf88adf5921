"""A stored reading is the reading that was sent, bit for bit, whichever statement stored it.

On SQLite a batch is stored by one statement per (shipment, device) that walks a JSON array
of the values in C. These tests hold that path to what ``executemany`` gave for free: every
float comes back as the same double, every reading in its shipment, plain and full ones
alike, in the order they were sent.
"""

from __future__ import annotations

import math
import sqlite3
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.db import Database
from app.services.coldchain import store as reading_store
from app.services.coldchain.decode import OPTIONAL, TEMP_RANGE
from tests.coldchain.test_readings import in_transit, post
from tests.conftest import Api

_EXTRAS = tuple(OPTIONAL)  # lat, lon, humidity_pct, shock_g, light_lux, battery_pct


def _table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE TABLE reading ({', '.join(reading_store.COLUMNS)})")
    return conn


_finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-(2**62), 2**62), _finite), max_size=40),
    st.lists(
        st.tuples(st.integers(-(2**62), 2**62), _finite, st.one_of(st.none(), _finite)), max_size=40
    ),
)
def test_any_double_and_timestamp_comes_back_unchanged(
    plain: list[tuple[int, float]], full: list[tuple[int, float, float | None]]
) -> None:
    conn = _table()
    rows = [(ts, temp, extra, None, extra, 0.0, extra, None) for ts, temp, extra in full]
    if plain:
        conn.execute(reading_store.INSERT_PLAIN_JSON, ["S", "D", 7, reading_store.ENCODE(plain)])
    if rows:
        conn.execute(reading_store.INSERT_FULL_JSON, ["S", "D", 7, reading_store.ENCODE(rows)])
    back = conn.execute(f"SELECT {', '.join(reading_store.COLUMNS)} FROM reading ORDER BY rowid")
    expected = [("S", "D", ts, temp, *(None,) * 6, 7) for ts, temp in plain]
    expected += [("S", "D", *row, 7) for row in rows]
    got = list(back)
    assert len(got) == len(expected)
    for want, have in zip(expected, got, strict=True):
        assert have == want
        # -0.0 == 0.0: the sign must survive too, and ints stay ints.
        for w, h in zip(want, have, strict=True):
            assert type(w) is type(h)
            if isinstance(w, float):
                assert math.copysign(1.0, w) == math.copysign(1.0, h)


def _stored(database: Database, shipment_id: str) -> list[tuple[Any, ...]]:
    columns = ", ".join(reading_store.COLUMNS[1:-1])
    with database.engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT {columns} FROM reading WHERE shipment_id = :s ORDER BY ts_ms"),  # noqa: S608
            {"s": shipment_id},
        )
        return [tuple(r) for r in rows]


def test_a_mixed_batch_is_stored_exactly_as_sent(api: Api, database: Database) -> None:
    """Two loggers in two shipments, plain and full readings interleaved, awkward floats."""
    _, first, t0 = in_transit(api, patient="MRN-V1")
    _, second, _ = in_transit(api, patient="MRN-V2")
    temps = [TEMP_RANGE[0], 4.999999999999999, 0.1 + 0.2, 5e-324, -0.0, TEMP_RANGE[1], 2.5]
    items: list[dict[str, Any]] = []
    expected: dict[str, list[tuple[Any, ...]]] = {first["id"]: [], second["id"]: []}
    for k, temp in enumerate(temps * 2):
        shipment = first if k % 2 else second
        ts = t0 + timedelta(minutes=k)
        item: dict[str, Any] = {"device_id": shipment["device_ids"][0], "ts": ts.isoformat()}
        item["temp_c"] = temp
        extras: list[float | None] = [None] * len(_EXTRAS)
        if k % 3 == 0:  # every third reading carries every optional measure
            extras = [
                OPTIONAL[name][0] + (OPTIONAL[name][1] - OPTIONAL[name][0]) / 3 for name in _EXTRAS
            ]
            item.update(zip(_EXTRAS, extras, strict=True))
        items.append(item)
        ts_ms = int(ts.timestamp() * 1000)
        expected[shipment["id"]].append((shipment["device_ids"][0], ts_ms, temp, *extras))
    assert post(api, "courier", items) == {"accepted": len(items), "duplicates": 0, "rejected": []}
    for shipment_id, rows in expected.items():
        assert _stored(database, shipment_id) == rows
