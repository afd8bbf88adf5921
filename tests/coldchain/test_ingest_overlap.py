"""The detector advances while a large batch is being stored (on SQLite in a helper thread,
on PostgreSQL while the server digests the COPY): it must end exactly where feeding the same
readings in small batches, one after the other, ends; and a COPY that loses a race to
another writer starts the detector again over what this batch really stored."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from app.db import Database
from app.services.coldchain import store as reading_store
from tests.coldchain.test_readings import in_transit, post
from tests.conftest import Api

STEP = timedelta(seconds=30)
N = reading_store.OVERLAP_MIN_READINGS * 3 // 2  # one batch within the test body limit


def _temps(n: int) -> list[float]:
    """In range, with a high excursion, a short critical one and a low one among them."""
    temps = [5.0 + (i % 7) / 10 for i in range(n)]
    for i in range(400, 460):
        temps[i] = 9.0
    for i in range(900, 904):
        temps[i] = 16.0
    for i in range(1200, 1280):
        temps[i] = 1.0
    return temps


def _items(device: str, t0: Any, temps: list[float]) -> list[dict[str, Any]]:
    return [
        {"device_id": device, "ts": (t0 + i * STEP).isoformat(), "temp_c": t}
        for i, t in enumerate(temps)
    ]


def _outcome(api: Api, database: Database, shipment_id: str) -> tuple[Any, ...]:
    got = api.get("ncc", f"/api/v1/excursions?shipment_id={shipment_id}").json()["items"]
    excursions = sorted(
        (e["kind"], e["severity"], e["status"], e["peak_c"], e["duration_min"]) for e in got
    )
    with database.engine.connect() as conn:
        state = conn.execute(
            text(
                "SELECT n, last_ts_ms, last_temp_c, mkt_w, mkt_wexp, needs_reeval "
                "FROM shipment_state WHERE shipment_id = :s"
            ),
            {"s": shipment_id},
        ).one()
    summary = api.get("courier", f"/api/v1/shipments/{shipment_id}").json()
    return excursions, tuple(state), summary["excursion_summary"]


def test_one_large_batch_ends_where_small_ones_do(api: Api, database: Database) -> None:
    _, whole, t0 = in_transit(api, patient="MRN-O1")
    _, pieces, t1 = in_transit(api, patient="MRN-O2")
    assert t0 == t1
    temps = _temps(N)
    big = _items(whole["device_ids"][0], t0, temps)
    assert post(api, "courier", big)["accepted"] == N
    small = _items(pieces["device_ids"][0], t0, temps)
    for k in range(0, N, 100):
        assert post(api, "courier", small[k : k + 100])["accepted"] == 100
    alone = _outcome(api, database, whole["id"])
    together = _outcome(api, database, pieces["id"])
    assert alone == together
    excursions, state, _ = alone
    assert [e[0] for e in excursions] == ["critical_high", "high", "low"]
    assert state[0] == N and not state[-1]


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # the COPY path is PostgreSQL's
def test_a_copy_that_loses_a_race_evaluates_what_it_stored(api: Api, database: Database) -> None:
    _, ship, t0 = in_transit(api, patient="MRN-O3")
    device = ship["device_ids"][0]
    items = _items(device, t0, _temps(N))
    rival_ts = int((t0 + 10 * STEP).timestamp() * 1000)
    url = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as rival:
        # Another writer stores one of the batch's readings and holds it uncommitted: the
        # batch's COPY waits on it, then fails when it commits.
        rival.execute(
            "INSERT INTO reading (shipment_id, device_id, ts_ms, temp_c, received_ms) "
            "VALUES (%s, %s, %s, 5.0, 0)",
            (ship["id"], device, rival_ts),
        )
        answer: dict[str, Any] = {}
        poster = threading.Thread(target=lambda: answer.update(post(api, "courier", items)))
        poster.start()
        time.sleep(1.0)
        assert poster.is_alive()  # waiting on the rival's row
        rival.commit()
        poster.join(timeout=30)
    assert answer == {"accepted": N - 1, "duplicates": 1, "rejected": []}
    excursions, state, _ = _outcome(api, database, ship["id"])
    assert state[0] == N - 1  # the detector counted what this batch stored, once
    assert [e[0] for e in excursions] == ["critical_high", "high", "low"]
