"""P6: one loss-of-signal sweep and one delay sweep over 10,000 in-transit shipments, vs one
indexed scan of their latest readings (the reference), SQLite and PostgreSQL.

The sweeps run in-process, as the scheduler runs them (app.jobs), against a database of
10,000 cases in transit to the factory, each shipment with ten readings and its detector
state. No shipment is overdue at the measured instant, so the figures are the sweeps' cost
of looking, not of writing alerts.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing

import psycopg

from app.db import Database
from app.jobs import delays, sweeps
from bench import synth
from bench.harness import Figure, Step, median, pg_database, pg_url, prepare, workdir

ID = "p6"
TITLE = "P6 sweeps over 10k shipments"
SCALE = float(os.environ.get("V2V_BENCH_SCALE", "1"))
SHIPMENTS = max(100, int(10_000 * SCALE))
PER = 10
REPS = 5
STEPS = 6
LATEST_RAW = (
    "SELECT r.shipment_id, max(r.ts_ms) FROM reading r JOIN shipment s ON s.id = r.shipment_id "
    "WHERE s.status = 'in_transit' GROUP BY r.shipment_id"
)


def _populate(url: str, write_readings: Callable[[list[tuple[object, ...]]], None]) -> None:
    prepare(url)
    ids = synth.cohort(url, cases=SHIPMENTS, in_transit=True)
    now_ms = int(synth.NOW.timestamp() * 1000)
    rows: list[tuple[object, ...]] = []
    newest: dict[str, int] = {}
    for i, cid in enumerate(ids):
        shipment = f"s{cid[1:]}"
        last = now_ms - 5 * 60_000 - (i % 7) * 60_000  # every shipment reported recently
        for k in range(PER):
            rows.append(
                (
                    shipment,
                    f"D{i}",
                    last - (PER - 1 - k) * 600_000,
                    5.0,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    last,
                )
            )
        newest[shipment] = last
    write_readings(rows)
    synth.states(url, newest)


def _time(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def _measure(url: str, raw: Callable[[], object], label: str) -> list[Figure]:
    db = Database(url, pool_size=2)
    try:
        signal = _time(lambda: sweeps.loss_of_signal(db, now=synth.NOW))
        delay = _time(lambda: delays.delay_sweep(db, now=synth.NOW))
    finally:
        db.dispose()
    reference = _time(raw)
    return [
        _figure(
            f"P6{label[0].lower()}1",
            f"loss-of-signal sweep, {SHIPMENTS:,} in transit ({label})",
            signal,
            reference,
        ),
        _figure(
            f"P6{label[0].lower()}2",
            f"delay sweep, {SHIPMENTS:,} in transit ({label})",
            delay,
            reference,
        ),
    ]


def _figure(fid: str, what: str, ours: float, reference: float) -> Figure:
    ratio = ours / reference
    return Figure(
        fid,
        what,
        ours,
        reference,
        "s",
        "≤ 1×",
        ratio <= 1.0,
        ratio,
        note="reference = one indexed scan of the shipments' latest readings",
    )


def run(step: Step) -> list[Figure]:
    figures: list[Figure] = []
    with workdir(ID) as tmp:
        step(f"SQLite: {SHIPMENTS:,} shipments in transit")
        path = tmp / "sweeps.sqlite3"
        url = f"sqlite:///{path}"
        _populate(url, lambda rows: synth.readings_sqlite(path, iter(rows)))

        def raw_sqlite() -> None:
            with closing(sqlite3.connect(path)) as conn:
                conn.execute(LATEST_RAW).fetchall()

        step("SQLite: sweeps")
        figures += _measure(url, raw_sqlite, "SQLite")
        step("PostgreSQL: shipments in transit")
        with pg_database() as name:
            url = pg_url(name)
            _populate(url, lambda rows: synth.readings_postgres(url, iter(rows)))

            def raw_pg() -> None:
                with psycopg.connect(url) as conn:
                    conn.execute(LATEST_RAW).fetchall()

            step("PostgreSQL: sweeps")
            figures += _measure(url, raw_pg, "PostgreSQL")
    return figures
