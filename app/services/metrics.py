"""Turnaround metrics over fetched columns (never per-case ORM objects).

Definitions (hours ``_h``, days ``_d``; latest collection cycle of each case):
vein_to_vein_d = infused − collected; collection_to_receipt_h = received_at_manufacturing −
collected; receipt_to_start_h = manufacturing_started − received_at_manufacturing;
start_to_release_d = qc_released − manufacturing_started; release_to_site_h =
received_at_site − qc_released; site_to_infusion_d = infused − received_at_site.
Percentiles interpolate linearly between order statistics (statistics.quantiles, inclusive).
A case without an infusion never enters V2V statistics. on_time_rate: infused cases whose V2V
met the route's vein_to_vein_d target. excursion_rate: cases with a major or critical
excursion among cases that shipped. attrition_rate: collected cases cancelled before
infusion, among collected cases that are infused or cancelled.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, case, func
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from models.case import Case, Milestone
from models.coldchain import Excursion
from models.reference import Route, Site
from models.shipment import Shipment

CASES: Table = Case.__table__  # type: ignore[attr-defined]
MILESTONE_TABLE: Table = Milestone.__table__  # type: ignore[attr-defined]
ROUTES: Table = Route.__table__  # type: ignore[attr-defined]
SITES: Table = Site.__table__  # type: ignore[attr-defined]
LEGS = (
    ("collection_to_receipt_h", "collected", "received_at_manufacturing", 1.0),
    ("receipt_to_start_h", "received_at_manufacturing", "manufacturing_started", 1.0),
    ("start_to_release_d", "manufacturing_started", "qc_released", 24.0),
    ("release_to_site_h", "qc_released", "received_at_site", 1.0),
    ("site_to_infusion_d", "received_at_site", "infused", 24.0),
)
GROUPINGS = ("route", "route_kind", "manufacturing_site", "site", "product", "month")


def quantile(sorted_values: Sequence[float], p: float) -> float:
    """Linear interpolation between order statistics (= statistics.quantiles inclusive)."""
    n = len(sorted_values)
    if n == 1:
        return sorted_values[0]
    h = (n - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


def stats(values: Iterable[float]) -> dict[str, float] | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return {
        "p50": round(quantile(ordered, 0.5), 4),
        "p90": round(quantile(ordered, 0.9), 4),
        "mean": round(sum(ordered) / len(ordered), 4),
        "min": round(ordered[0], 4),
        "max": round(ordered[-1], 4),
    }


@dataclass
class CaseRow:
    id: str
    site: str
    route: str
    route_kind: str
    manufacturing_site: str
    product: str
    status: str
    timezone: str
    epoch: dict[str, float] = field(default_factory=dict)  # milestone -> epoch seconds
    shipped: bool = False
    excursion: bool = False

    @property
    def times(self) -> dict[str, datetime]:
        return {k: datetime.fromtimestamp(v, UTC) for k, v in self.epoch.items()}

    def hours(self, start: str, end: str) -> float | None:
        if start in self.epoch and end in self.epoch:
            return (self.epoch[end] - self.epoch[start]) / 3600
        return None

    def key(self, group_by: str) -> str:
        if group_by == "month":
            local = datetime.fromtimestamp(self.epoch["collected"], ZoneInfo(self.timezone))
            return local.strftime("%Y-%m")
        return str(getattr(self, group_by))


MILESTONES = (
    "collected",
    "received_at_manufacturing",
    "manufacturing_started",
    "qc_released",
    "received_at_site",
    "infused",
)


def _epoch(session: Session, column: Any) -> Any:
    """Epoch seconds of a timestamp expression, computed by the database."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", column)
    return (func.julianday(column) - 2440587.5) * 86400.0


def fetch(
    session: Session,
    *,
    site: str | None = None,
    routes: Sequence[str] | None = None,
    collected_from: datetime | None = None,
    collected_to: datetime | None = None,
) -> list[CaseRow]:
    """One row per collected case: its journey times and flags, in three set queries."""
    c = CASES.c
    r, st = ROUTES.c, SITES.c
    stmt = (
        select_columns(
            c.id, c.site, c.route, r.kind, r.manufacturing_site, c.product, c.status, st.timezone
        )
        .join(ROUTES, r.code == c.route)
        .join(SITES, st.code == c.site)
    )
    if site:
        stmt = stmt.where(c.site == site)
    if routes:
        stmt = stmt.where(c.route.in_(list(routes)))
    rows = {
        r[0]: CaseRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in session.execute(stmt)
    }
    # One row per case, the pivot done by the database: epoch seconds of each milestone of
    # the current collection cycle (no per-milestone rows cross into Python).
    m = MILESTONE_TABLE.c
    pivot = [
        _epoch(session, func.max(case((m.type == name, m.occurred_at)))).label(name)
        for name in MILESTONES
    ]
    times = session.execute(
        select_columns(m.case_id, *pivot)
        .join(CASES, c.id == m.case_id)
        .where(m.cycle == c.cycle, m.type.in_(MILESTONES))
        .group_by(m.case_id)
    )
    for case_id, *values in times:
        row = rows.get(case_id)
        if row is not None:
            row.epoch = {
                k: float(v) for k, v in zip(MILESTONES, values, strict=True) if v is not None
            }
    shipped = session.execute(select_columns(col(Shipment.case_id)).distinct())
    for (case_id,) in shipped:
        if case_id in rows:
            rows[case_id].shipped = True
    bad = session.execute(
        select_columns(col(Shipment.case_id))
        .join(Excursion, col(Excursion.shipment_id) == col(Shipment.id))
        .where(col(Excursion.severity).in_(["major", "critical"]))
        .distinct()
    )
    for (case_id,) in bad:
        if case_id in rows:
            rows[case_id].excursion = True
    low = collected_from.timestamp() if collected_from else None
    high = collected_to.timestamp() if collected_to else None
    out = []
    for row in rows.values():
        collected = row.epoch.get("collected")
        if collected is None:
            continue
        if low is not None and collected < low:
            continue
        if high is not None and collected >= high:
            continue
        out.append(row)
    return out


def targets(session: Session) -> dict[str, float | None]:
    return {
        r.code: (
            float(r.targets["vein_to_vein_d"]) if "vein_to_vein_d" in (r.targets or {}) else None
        )
        for r in session.exec(select(Route))
    }


def summarise(rows: Sequence[CaseRow], v2v_targets: dict[str, float | None]) -> dict[str, Any]:
    infused = [r for r in rows if "infused" in r.epoch]
    v2v = [(r, r.hours("collected", "infused") or 0.0) for r in infused]
    with_target = [(r, h) for r, h in v2v if v2v_targets.get(r.route) is not None]
    on_time = sum(1 for r, h in with_target if h / 24 <= (v2v_targets[r.route] or 0))
    closed = [r for r in rows if r.status in ("infused", "cancelled")]
    attrited = sum(1 for r in closed if r.status == "cancelled")
    shipped = [r for r in rows if r.shipped]
    legs: dict[str, Any] = {}
    for name, start, end, per in LEGS:
        values = [h / per for r in rows if (h := r.hours(start, end)) is not None]
        legs[name] = stats(values)
    return {
        "n": len(rows),
        "n_infused": len(infused),
        "vein_to_vein_d": stats(h / 24 for _, h in v2v),
        "legs": legs,
        "on_time_rate": round(on_time / len(with_target), 4) if with_target else None,
        "excursion_rate": (
            round(sum(1 for r in shipped if r.excursion) / len(shipped), 4) if shipped else None
        ),
        "attrition_rate": round(attrited / len(closed), 4) if closed else None,
    }


def turnaround(
    rows: Sequence[CaseRow], v2v_targets: dict[str, float | None], group_by: str
) -> list[dict[str, Any]]:
    groups: dict[str, list[CaseRow]] = defaultdict(list)
    for row in rows:
        groups[row.key(group_by)].append(row)
    return [
        {"key": key, **summarise(members, v2v_targets)} for key, members in sorted(groups.items())
    ]
