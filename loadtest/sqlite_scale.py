"""SQLite's practical limit for readings: insert rate and trace time as the file grows.

``python -m loadtest.sqlite_scale [--readings 20000000] [--step 5000000] [--shipments 30]``

A fresh SQLite database (migrated, seeded) with ``--shipments`` shipments in transit
(bench/world.py), then realistic logger rows stored the way ingest stores them on SQLite
(5,000-row batches through the app's own connection: WAL, synchronous=FULL, one commit per
batch), the loggers interleaved as if all uploaded at once. After every ``--step`` rows it
prints the insert rate over the step, the file size, and the app's trace query
(``coldchain.traces.trace``: 500 points over one shipment's latest 35,000 readings) cold
(first run after the step) and warm (median of five). Extrapolate beyond what one run shows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from app.db import Database
from app.services.coldchain import traces
from bench.harness import SQLITE_INSERT
from bench.world import STEP_MS, build_world
from loadtest.cluster import fresh_database

BATCH = 5_000
WINDOW = 35_000


def _trace_ms(db: Database, shipment_id: str, high: int) -> float:
    low = high - WINDOW * STEP_MS
    started = time.perf_counter()
    with db.session() as session:
        points = traces.trace(session, shipment_id, low=low, high=high, max_points=500)
    if not points["points"]:
        raise RuntimeError("the trace found no readings")
    return (time.perf_counter() - started) * 1000


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.sqlite_scale", description=__doc__)
    parser.add_argument("--readings", type=int, default=20_000_000)
    parser.add_argument("--step", type=int, default=5_000_000)
    parser.add_argument("--shipments", type=int, default=30)  # the factory's capacity
    args = parser.parse_args(argv)
    with fresh_database("sqlite") as (url, _):
        world = build_world(url, loggers=args.shipments, label="S")
        path = Path(url.removeprefix("sqlite:///"))
        db = Database(url, pool_size=2)
        per_logger = BATCH // len(world.loggers) or 1
        streams = [lg.preload_rows(args.readings) for lg in world.loggers]
        stored, step_s, step_rows = 0, 0.0, 0
        raw = db.engine.raw_connection()
        try:
            while stored < args.readings:
                batch = [row for s in streams for _ in range(per_logger) for row in [next(s)]]
                started = time.perf_counter()  # the database's time, not the generator's
                cursor = raw.cursor()  # autocommit connection: the app's own BEGIN
                cursor.execute("BEGIN IMMEDIATE")
                cursor.executemany(SQLITE_INSERT, batch)
                cursor.execute("COMMIT")
                step_s += time.perf_counter() - started
                stored += len(batch)
                step_rows += len(batch)
                if step_rows >= args.step or stored >= args.readings:
                    rate = step_rows / step_s
                    logger = world.loggers[stored // BATCH % len(world.loggers)]
                    high = logger.next_ms - STEP_MS
                    cold = _trace_ms(db, logger.shipment_id, high)
                    warm = statistics.median(
                        _trace_ms(db, logger.shipment_id, high) for _ in range(5)
                    )
                    size = path.stat().st_size + Path(f"{path}-wal").stat().st_size
                    print(
                        f"sqlite {stored:>12,} readings  {size / 1e9:6.2f} GB  insert "
                        f"{rate:>9,.0f} readings/s (5,000-row commits, database time)  "
                        f"trace 500 points of {WINDOW:,}: first {cold:7.1f} ms, "
                        f"then {warm:6.1f} ms",
                        flush=True,
                    )
                    step_s, step_rows = 0.0, 0
        finally:
            raw.close()
            db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
