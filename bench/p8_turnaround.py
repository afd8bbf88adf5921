"""P8: ``GET /metrics/turnaround`` over 100,000 cases, added up from the per-cell totals
(``case_turnaround_cell``, folded from the per-case table) vs the raw fetch of their
milestones, on SQLite and PostgreSQL.

Goal (issue #16, P8): at most 0.1× the raw fetch and at most 150 ms, each at the median of
REPS requests through the real server. The reference is P5's: every milestone of the cases
with its case's site, route, product and status, fetched by the bare driver in the same run.
Also printed, not judged: the grouping by month and a product filter. The data is loaded in
bulk, which folds every cell: the figures are for a read with no cell waiting for a fold.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from bench import synth
from bench.harness import Figure, Step, pg_database, pg_url, prepare, workdir
from bench.p5_queries import METRICS_RAW, REPS, _raw_pg, _raw_sqlite, _timed_get
from bench.serving import serve

ID = "p8"
TITLE = "P8 turnaround table"
SCALE = float(os.environ.get("V2V_BENCH_SCALE", "1"))  # < 1 for a quick smoke run
CASES = int(100_000 * SCALE)
STEPS = 4
GOAL_RATIO, GOAL_S = 0.1, 0.150
PATH = "/api/v1/metrics/turnaround"


def _measure(url: str, tmp: Path) -> tuple[float, dict[str, float]]:
    key = synth.admin_key(url)
    extra: dict[str, float] = {}
    with serve(ID, url, tmp) as server, httpx.Client(base_url=server.base) as client:
        ours = _timed_get(client, f"{PATH}?group_by=route", key)
        extra["month"] = _timed_get(client, f"{PATH}?group_by=month", key)
        extra["product"] = _timed_get(client, f"{PATH}?group_by=route&product=CART-CD19", key)
    return ours, extra


def run(step: Step) -> list[Figure]:
    figures: list[Figure] = []
    with workdir(ID) as tmp:
        step(f"SQLite: migrate, seed, {CASES:,} cases")
        path = tmp / "p8.sqlite3"
        url = f"sqlite:///{path}"
        prepare(url)
        synth.cohort(url, cases=CASES)
        step("SQLite: turnaround through uvicorn")
        ours, extra = _measure(url, tmp)
        reference = _raw_sqlite(path, METRICS_RAW)
        figures.append(_figure("P8a", "SQLite", ours, reference, extra))
        step(f"PostgreSQL: {CASES:,} cases")
        with pg_database() as name:
            url = pg_url(name)
            prepare(url)
            synth.cohort(url, cases=CASES)
            step("PostgreSQL: turnaround through uvicorn")
            ours, extra = _measure(url, tmp)
            reference = _raw_pg(url, METRICS_RAW)
            figures.append(_figure("P8b", "PostgreSQL", ours, reference, extra))
    return figures


def _figure(
    fid: str, backend: str, ours: float, reference: float, extra: dict[str, float]
) -> Figure:
    ratio = ours / reference
    return Figure(
        fid,
        f"turnaround by route over {CASES:,} cases from the turnaround cells ({backend})",
        ours,
        reference,
        "s",
        f"≤ {GOAL_RATIO:g}× and ≤ {GOAL_S * 1000:.0f} ms",
        ratio <= GOAL_RATIO and ours <= GOAL_S,
        ratio,
        note=(
            f"median of {REPS} HTTP GETs; reference = raw fetch of the cases' milestones; "
            f"by month {extra['month'] * 1000:.0f} ms, by route for one product "
            f"{extra['product'] * 1000:.0f} ms"
        ),
    )
