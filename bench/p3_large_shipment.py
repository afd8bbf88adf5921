"""P3: one 5,000-reading batch on a shipment holding 1,000,000 readings vs on an empty one.

The million readings go in with raw ``executemany`` (setup, not measured), then the app's
own re-evaluation job replays them once, so the shipment's detector state matches its
readings and the measured batches take the incremental path. Every measured batch is newer
than everything stored, and the run checks afterwards that nothing fell back to a replay.
Each repetition posts one batch to the large shipment and one to a fresh, empty shipment
(its own logger), in alternating order, to the same server.
"""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from app.db import Database
from app.jobs.sweeps import reevaluate_marked
from bench.harness import (
    SQLITE_INSERT,
    BenchError,
    Figure,
    Step,
    median,
    prepare,
    sqlite_connect,
    workdir,
)
from bench.p1_sqlite_ingest import BATCH, ingest_call
from bench.serving import drive, serve
from bench.world import STEP_MS, Logger, build_world
from models.coldchain import ShipmentState

ID = "p3"
TITLE = "P3 batch on a 1M-reading shipment"
PRELOAD = 1_000_000
REPS = 9
RATIO_GOAL = 1.2
STEPS = 5 + REPS


def _preload(path: Path, logger: Logger) -> None:
    """A million stored readings for one logger, in one transaction."""
    with closing(sqlite_connect(path)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(SQLITE_INSERT, logger.preload_rows(PRELOAD))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _replay(url: str, logger: Logger) -> None:
    """Run the app's re-evaluation job once, so the detector state matches the readings."""
    db = Database(url, pool_size=1)
    try:
        with db.transaction() as session:
            session.add(ShipmentState(shipment_id=logger.shipment_id, needs_reeval=True))
        if reevaluate_marked(db, now=datetime.now(UTC)) != 1:
            raise BenchError("the re-evaluation job did not replay the preloaded shipment")
        with db.transaction() as session:
            # The replay leaves the watermarks that ingest keeps outside the detector alone.
            session.execute(
                text(
                    "UPDATE shipment_state SET newest_ts_ms = last_ts_ms, "
                    "last_lat = (SELECT lat FROM reading WHERE shipment_id = :s "
                    "AND lat IS NOT NULL ORDER BY ts_ms DESC LIMIT 1), "
                    "last_lon = (SELECT lon FROM reading WHERE shipment_id = :s "
                    "AND lon IS NOT NULL ORDER BY ts_ms DESC LIMIT 1) "
                    "WHERE shipment_id = :s"
                ),
                {"s": logger.shipment_id},
            )
        _check_state(db, logger, PRELOAD)
    finally:
        db.dispose()


def _check_state(db: Database, logger: Logger, expected: int) -> None:
    with db.session() as session:
        state = session.get(ShipmentState, logger.shipment_id)
    last_ms = logger.next_ms - STEP_MS
    if state is None or state.needs_reeval or state.n != expected or state.last_ts_ms != last_ms:
        raise BenchError(
            f"detector state of the large shipment is not in step with its {expected} readings "
            f"(n={getattr(state, 'n', None)}, needs_reeval={getattr(state, 'needs_reeval', None)})"
        )


def run(step: Step) -> list[Figure]:
    with workdir(ID) as tmp:
        step("migrate, seed, shipments in transit")
        path = tmp / "app.sqlite3"
        url = f"sqlite:///{path}"
        prepare(url)
        world = build_world(url, loggers=REPS + 2, label="P3")
        large, empties = world.loggers[0], world.loggers[1:]
        step(f"preload {PRELOAD:,} readings (raw executemany)")
        _preload(path, large)
        step("replay them once (app.jobs.sweeps.reevaluate_marked)")
        _replay(url, large)
        step("start uvicorn")
        with serve(ID, url, tmp) as server:
            step("warm-up")
            drive(server, [[ingest_call(large.batch(BATCH)), ingest_call(empties[0].batch(BATCH))]])
            full: list[float] = []
            empty: list[float] = []
            for rep in range(REPS):
                step(f"batches {rep + 1}/{REPS}")
                pair = [(full, large), (empty, empties[rep + 1])]
                for times, logger in pair if rep % 2 == 0 else reversed(pair):
                    times.append(drive(server, [[ingest_call(logger.batch(BATCH))]]).elapsed)
        db = Database(url, pool_size=1)
        try:
            _check_state(db, large, PRELOAD + (REPS + 1) * BATCH)
        finally:
            db.dispose()
    ours, reference = median(full), median(empty)
    ratio = ours / reference
    return [
        Figure(
            "P3",
            f"{BATCH:,}-reading batch: {PRELOAD:,}-reading vs empty shipment",
            ours,
            reference,
            "s",
            f"≤ {RATIO_GOAL:g}×",
            ratio <= RATIO_GOAL,
            ratio,
        )
    ]
