"""P4: PostgreSQL batch ingest through HTTP vs psycopg ``COPY`` of the same rows.

Our figure: readings/s of 5,000-reading POSTs on a uvicorn server whose database is a fresh
``v2v_bench_<random>`` on 127.0.0.1. Reference: the same rows, ``COPY reading FROM STDIN``
into a second database cloned from the first before any reading (same schema, indexes and
shipments), one transaction per 5,000 rows. Both databases are dropped afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import psycopg

from app.services.coldchain.store import COPY_BINARY, COPY_TYPES
from bench.harness import (
    PG_COPY,
    Figure,
    Step,
    median,
    pg_database,
    pg_url,
    prepare,
    ratio_figure,
    workdir,
)
from bench.p1_sqlite_ingest import BATCH, ingest_call
from bench.serving import drive, serve
from bench.world import Batch, World, build_world

ID = "p4"
TITLE = "P4 PostgreSQL batch ingest"
# Issue #16: at least 0.8x of psycopg COPY of the same rows (was 0.5x).
RATIO_GOAL = 0.8
LOGGERS = 8
REPS = 7
BATCHES_PER_REP = 8
STEPS = 3 + REPS


def copy_reference(
    conn: psycopg.Connection[tuple[object, ...]],
    batches: Sequence[Batch],
    *,
    binary: bool = False,
) -> float:
    """Seconds to COPY the batches, one transaction each: in text (the reference), or in
    binary as ingest does (``binary``, its floor)."""
    t0 = time.perf_counter()
    for batch in batches:
        statement = COPY_BINARY if binary else PG_COPY
        with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
            if binary:
                copy.set_types(COPY_TYPES)
            for row in batch.rows:
                copy.write_row(row)
    return time.perf_counter() - t0


def _batches(world: World, rep: int) -> list[Batch]:
    first = rep * BATCHES_PER_REP
    return [world.loggers[(first + k) % LOGGERS].batch(BATCH) for k in range(BATCHES_PER_REP)]


def run(step: Step) -> list[Figure]:
    with workdir(ID) as tmp, pg_database() as name:
        step("create database, migrate, seed, 8 shipments in transit")
        url = pg_url(name)
        prepare(url)
        world = build_world(url, loggers=LOGGERS, label="P4")
        with (
            pg_database(template=name) as ref_name,
            psycopg.connect(pg_url(ref_name)) as ref,
        ):
            step("start uvicorn")
            with serve(ID, url, tmp) as server:
                step("warm-up")
                warm = _batches(world, REPS)
                drive(server, [[ingest_call(b) for b in warm]])
                copy_reference(ref, warm)
                ours: list[float] = []
                theirs: list[float] = []
                binary: list[float] = []
                server_cpu = 0.0
                for rep in range(REPS):
                    step(f"batches {rep + 1}/{REPS}")
                    batches = _batches(world, rep)
                    readings = BATCH * len(batches)
                    if rep % 2:
                        theirs.append(readings / copy_reference(ref, batches))
                    c0 = server.cpu_seconds()
                    result = drive(server, [[ingest_call(b) for b in batches]])
                    server_cpu += server.cpu_seconds() - c0
                    ours.append(readings / result.elapsed)
                    if not rep % 2:
                        theirs.append(readings / copy_reference(ref, batches))
                    # Fresh timestamps for the same rows' shape (the first copies are stored).
                    binary.append(readings / copy_reference(ref, _batches(world, rep), binary=True))
    per_batch_ms = 1000 * server_cpu / (REPS * BATCHES_PER_REP)
    return [
        ratio_figure(
            "P4",
            f"PostgreSQL {BATCH:,}-reading POSTs vs psycopg COPY",
            median(ours),
            median(theirs),
            "readings/s",
            at_least=RATIO_GOAL,
            note=(
                f"server CPU per batch {per_batch_ms:.0f} ms (PostgreSQL's not counted); "
                f"the binary COPY ingest uses, raw: {median(binary):,.0f} readings/s "
                f"(ours {median(ours) / median(binary):.2f}× of that)"
            ),
        )
    ]
