"""The demo cohort: two years of synthetic cases on the seeded sites and routes.

Each case's whole timeline is sampled from the distributions in ``demo.yaml`` (collection,
shipments, manufacturing, release, infusion; failures, recollections, cancellations), then
cut at ``now``: what happened by then is stored, so the latest cases are still in flight,
at whatever stage ``now`` finds them. Shipments get custody scans, a logger and its
readings every 10 minutes in transit; excursion and detector-state rows are what the
excursion detector computes from those readings. Everything is drawn from one
``random.Random(seed)``: the same (seed, now, cases) gives the same rows. Rows are written
with bulk statements, one transaction per batch of cases.

config: demo.yaml parsed; world: the seeded reference data and a plan's records; timeline:
each case's sampled plan; readings: positions, temperatures and loggers; cohort and
shipping: plans to rows, cut at ``now``; alerts: the cold-chain alerts of a shipment;
write: bulk inserts; report: counts and the summary.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from app.config import Settings, get_settings
from app.db import Database
from app.services.audit import chain as audit
from app.services.metrics import turnaround_rows
from models.case import Case
from seeds.demo.cohort import Cohort
from seeds.demo.config import DemoConfig, DemoRefused
from seeds.demo.report import CLOSED, STAGES, DemoReport, summary
from seeds.demo.world import World
from seeds.demo.write import Batch, write

__all__ = [
    "CLOSED",
    "STAGES",
    "DemoConfig",
    "DemoRefused",
    "DemoReport",
    "generate",
    "has_cases",
    "summary",
]

BATCH = 500
# Progress callback: (stage, done, total); stages "generated" and "written".
Progress = Callable[[str, int, int], None]


def has_cases(db: Database) -> bool:
    with db.session() as session:
        return session.exec(select(Case.id).limit(1)).first() is not None


def generate(
    db: Database,
    *,
    cases: int,
    seed: int,
    now: datetime,
    readings: bool = True,
    progress: Progress | None = None,
    settings: Settings | None = None,
    config: DemoConfig | None = None,
) -> DemoReport:
    """Generate and store a demo cohort of ``cases`` cases; the same arguments, the same rows."""
    settings = settings or get_settings()
    if settings.env == "production":
        raise DemoRefused(
            "the demo cohort is synthetic patient data: refused with V2V_ENV=production"
        )
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now needs a UTC offset")
    if cases < 0:
        raise ValueError("cases must not be negative")
    now = now.astimezone(UTC)
    config = config or DemoConfig.load()
    report = DemoReport(seed=seed, now=now)
    rng = random.Random(seed)
    with db.session() as session:
        world = World.load(session, config)
    cohort = Cohort(
        rng, world, config, now=now, settings=settings, readings=readings, report=report
    )
    starts = cohort.planner.starts(cases, now)
    for begin in range(0, len(starts), BATCH):
        chunk = starts[begin : begin + BATCH]
        with db.transaction() as session:
            batch = cohort.build(session, chunk)
            if begin == 0:
                _refuse_reload(session, batch)
            if progress is not None:
                progress("generated", begin + len(chunk), len(starts))
            report.rows.update(write(session, batch, cohort.fleet))
        if progress is not None:
            progress("written", begin + len(chunk), len(starts))
    with db.transaction() as session:
        # The metrics read one row per case; bulk-written milestones bypass its upkeep.
        turnaround_rows.recompute_all(session)
        audit.append(
            session,
            actor="demo",
            action="demo.generated",
            entity="demo",
            entity_id=f"seed-{seed}",
            at=now,
            after={**report.counts(), "readings": readings, "medians": report.medians()},
        )
    return report


def _refuse_reload(session: Session, batch: Batch) -> None:
    ids = [row["id"] for row in batch.rows["cases"]]
    if session.exec(select(Case.id).where(col(Case.id).in_(ids)).limit(1)).first() is not None:
        raise DemoRefused("this seed's cohort is already in the database; choose another --seed")
