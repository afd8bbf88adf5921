"""P5: turnaround metrics over 100,000 cases, and one shipment's downsampled trace
(35,000 readings in a 10,000,000-reading database), each through the real server, vs a raw
``sqlite3`` fetch of the rows they summarise (the reference). PostgreSQL figures beside.

The 10M-reading SQLite database is built once and cached under var/bench-cache/ (about two
minutes on this machine class); later runs reuse it. The PostgreSQL trace database holds
2,000,000 readings (stated in the output) to keep `make bench` bounded.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import httpx
import psycopg

from app.migrations import head_revision
from bench import synth
from bench.harness import (
    ROOT,
    Figure,
    Step,
    median,
    pg_database,
    pg_url,
    prepare,
    workdir,
)
from bench.serving import serve

ID = "p5"
TITLE = "P5 metrics and trace"
SCALE = float(os.environ.get("V2V_BENCH_SCALE", "1"))  # < 1 for a quick smoke run
CASES = int(100_000 * SCALE)
TRACE = 35_000
TOTAL = max(TRACE * 2, int(10_000_000 * SCALE))
PG_TOTAL = max(TRACE * 2, int(2_000_000 * SCALE))
REPS = 5
STEPS = 10
CACHE = ROOT / "var" / "bench-cache"


def _timed_get(client: httpx.Client, path: str, key: str) -> float:
    times = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        r = client.get(path, headers={"authorization": f"Bearer {key}"}, timeout=300)
        times.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise RuntimeError(f"{path}: {r.status_code} {r.text[:200]}")
    return median(times)


def _raw_sqlite(path: Path, sql: str, args: tuple[object, ...] = ()) -> float:
    times = []
    for _ in range(REPS):
        with closing(sqlite3.connect(path)) as conn:
            t0 = time.perf_counter()
            conn.execute(sql, args).fetchall()
            times.append(time.perf_counter() - t0)
    return median(times)


def _raw_pg(url: str, sql: str, args: tuple[object, ...] = ()) -> float:
    times = []
    for _ in range(REPS):
        with psycopg.connect(url) as conn:
            t0 = time.perf_counter()
            conn.execute(sql, args).fetchall()  # type: ignore[arg-type]
            times.append(time.perf_counter() - t0)
    return median(times)


METRICS_RAW = (
    "SELECT m.case_id, m.type, m.occurred_at, c.site, c.route, c.product, c.status "
    "FROM milestone m JOIN cases c ON c.id = m.case_id"
)
TRACE_RAW = "SELECT ts_ms, temp_c FROM reading WHERE shipment_id = ? ORDER BY ts_ms"


def _build_trace_db(path: Path, total: int, step: Step) -> tuple[str, str]:
    """Migrated SQLite file: one infused case per shipment, TRACE readings on the target."""
    url = f"sqlite:///{path}"
    prepare(url)
    ids = synth.cohort(url, cases=total // TRACE + 1, seed=7)
    # Shipments for those cases, then the readings spread over them.
    with closing(sqlite3.connect(path)) as conn:
        conn.executemany(
            "INSERT INTO shipment (id, case_id, direction, origin, destination, profile, courier,"
            " container_serial, container_kind, device_ids, status, created_at) VALUES "
            "(?, ?, 'to_site', 'CELLARES-KASHIWA', 'NCC-EAST', 'CRYO_LN2', 'KASHIWA-COLD', 'C',"
            " 'dry shipper', '[]', 'delivered', '2026-01-01 00:00:00.000000')",
            [(f"t{cid[1:]}", cid) for cid in ids],
        )
        conn.commit()
    step(f"write {total:,} readings (raw executemany, cached)")
    per = TRACE
    rows = (
        row
        for n, cid in enumerate(ids)
        for row in synth.trace_rows(
            f"t{cid[1:]}", f"T{n}", min(per, total - n * per), 1_700_000_000_000, 60_000
        )
        if n * per < total
    )
    synth.readings_sqlite(path, rows)
    return url, f"t{ids[0][1:]}"


def run(step: Step) -> list[Figure]:
    figures: list[Figure] = []
    CACHE.mkdir(parents=True, exist_ok=True)
    cached = CACHE / f"trace-{TOTAL}-{head_revision()}.sqlite3"
    with workdir(ID) as tmp:
        step("SQLite: migrate, seed, 100,000 cases")
        path = tmp / "metrics.sqlite3"
        url = f"sqlite:///{path}"
        prepare(url)
        synth.cohort(url, cases=CASES)
        key = synth.admin_key(url)
        step("SQLite: metrics through uvicorn")
        with serve(ID, url, tmp) as server, httpx.Client(base_url=server.base) as client:
            ours = _timed_get(client, "/api/v1/metrics/turnaround?group_by=route", key)
        reference = _raw_sqlite(path, METRICS_RAW)
        figures.append(_figure("P5a", f"turnaround over {CASES:,} cases (SQLite)", ours, reference))
        if not cached.exists():
            step(f"build the {TOTAL:,}-reading database (once)")
            build = tmp / "trace.sqlite3"
            _, _ = _build_trace_db(build, TOTAL, step)
            shutil.move(build, cached)
        else:
            step("reuse the cached 10M-reading database")
            step("")
        trace_db = tmp / "trace.sqlite3"
        shutil.copy(cached, trace_db)
        with closing(sqlite3.connect(trace_db)) as conn:
            target = conn.execute(
                "SELECT shipment_id FROM reading GROUP BY shipment_id ORDER BY shipment_id LIMIT 1"
            ).fetchone()[0]
            n = conn.execute("SELECT count(*) FROM reading").fetchone()[0]
        trace_url = f"sqlite:///{trace_db}"
        key = synth.admin_key(trace_url)
        step("SQLite: trace through uvicorn")
        with serve(ID, trace_url, tmp) as server, httpx.Client(base_url=server.base) as client:
            ours = _timed_get(client, f"/api/v1/shipments/{target}/readings?max_points=500", key)
        reference = _raw_sqlite(trace_db, TRACE_RAW, (target,))
        figures.append(
            _figure("P5b", f"trace of {TRACE:,} in {n:,} readings (SQLite)", ours, reference)
        )
        step("PostgreSQL: 100,000 cases")
        with pg_database() as name:
            url = pg_url(name)
            prepare(url)
            synth.cohort(url, cases=CASES)
            key = synth.admin_key(url)
            with serve(ID, url, tmp) as server, httpx.Client(base_url=server.base) as client:
                ours = _timed_get(client, "/api/v1/metrics/turnaround?group_by=route", key)
            reference = _raw_pg(url, METRICS_RAW)
            figures.append(
                _figure("P5c", f"turnaround over {CASES:,} cases (PostgreSQL)", ours, reference)
            )
            step(f"PostgreSQL: {PG_TOTAL:,} readings (COPY)")
            ids = synth.cohort(url, cases=PG_TOTAL // TRACE + 1, seed=8)
            with psycopg.connect(url) as conn:
                conn.cursor().executemany(
                    "INSERT INTO shipment (id, case_id, direction, origin, destination, profile,"
                    " courier, container_serial, container_kind, device_ids, status, created_at)"
                    " VALUES (%s, %s, 'to_site', 'CELLARES-KASHIWA', 'NCC-EAST', 'CRYO_LN2',"
                    " 'KASHIWA-COLD', 'C', 'dry shipper', '[]', 'delivered', now())",
                    [(f"t{cid[1:]}", cid) for cid in ids],
                )
            rows = (
                row
                for k, cid in enumerate(ids)
                if k * TRACE < PG_TOTAL
                for row in synth.trace_rows(
                    f"t{cid[1:]}",
                    f"T{k}",
                    min(TRACE, PG_TOTAL - k * TRACE),
                    1_700_000_000_000,
                    60_000,
                )
            )
            synth.readings_postgres(url, rows)
            target = f"t{ids[0][1:]}"
            step("PostgreSQL: trace through uvicorn")
            with serve(ID, url, tmp) as server, httpx.Client(base_url=server.base) as client:
                ours = _timed_get(
                    client, f"/api/v1/shipments/{target}/readings?max_points=500", key
                )
            reference = _raw_pg(url, TRACE_RAW.replace("?", "%s"), (target,))
            figures.append(
                _figure(
                    "P5d",
                    f"trace of {TRACE:,} in {PG_TOTAL:,} readings (PostgreSQL)",
                    ours,
                    reference,
                )
            )
    return figures


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
        note="ours = median HTTP GET through uvicorn; reference = raw fetch of the rows",
    )
