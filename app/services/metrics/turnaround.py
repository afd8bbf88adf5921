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
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlmodel import Session, select

from app.services.delays.targets import LEGS
from app.services.metrics.case_rows import (
    AT,
    COLUMN,
    EXCURSION,
    GROUPINGS,
    MILESTONES,
    ROUTE,
    SHIPPED,
    STATUS,
    CaseRow,
    fetch,
    fetch_rows,
    group_key,
)
from models.reference import Route

# The rows are re-exported: callers reach them as metrics.fetch, metrics.CaseRow, ...
__all__ = [
    "GROUPINGS",
    "LEGS",
    "MILESTONES",
    "CaseRow",
    "fetch",
    "fetch_rows",
    "quantile",
    "stats",
    "summarise",
    "targets",
    "turnaround",
]


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
    """p50, p90, mean, min and max of some values (None when there are none)."""
    return _stats_of(list(values))


def _stats_of(ordered: list[float]) -> dict[str, float] | None:
    ordered.sort()  # in place: the caller's list is its own
    if not ordered:
        return None
    return {
        "p50": round(quantile(ordered, 0.5), 4),
        "p90": round(quantile(ordered, 0.9), 4),
        "mean": round(sum(ordered) / len(ordered), 4),
        "min": round(ordered[0], 4),
        "max": round(ordered[-1], 4),
    }


def targets(session: Session) -> dict[str, float | None]:
    return {
        r.code: (
            float(r.targets["vein_to_vein_d"]) if "vein_to_vein_d" in (r.targets or {}) else None
        )
        for r in session.exec(select(Route))
    }


def summarise(
    rows: Sequence[Sequence[Any]], v2v_targets: dict[str, float | None]
) -> dict[str, Any]:
    """Counts, V2V and leg statistics and rates of some cases (CaseRows or plain rows)."""
    # Column lists and sorted lists of floats: the Python work stays a few passes per case.
    at = {name: [r[i] for r in rows] for name, i in AT.items()}
    infused = [r for r in rows if r[AT["infused"]] is not None]
    v2v = [
        (b - a) / 3600 if a is not None else 0.0
        for a, b in zip(at["collected"], at["infused"], strict=True)
        if b is not None
    ]
    limits = [v2v_targets.get(r[ROUTE]) for r in infused]
    with_target = [(limit, h) for limit, h in zip(limits, v2v, strict=True) if limit is not None]
    on_time = sum(1 for limit, h in with_target if h / 24 <= (limit or 0))
    status = Counter([r[STATUS] for r in rows])
    closed = status["infused"] + status["cancelled"]
    shipped = [r[EXCURSION] for r in rows if r[SHIPPED]]
    legs: dict[str, Any] = {}
    for name, start, end, per in LEGS:
        legs[name] = _stats_of(
            [
                (b - a) / 3600 / per
                for a, b in zip(at[start], at[end], strict=True)
                if a is not None and b is not None
            ]
        )
    return {
        "n": len(rows),
        "n_infused": len(v2v),
        "vein_to_vein_d": _stats_of([h / 24 for h in v2v]),
        "legs": legs,
        "on_time_rate": round(on_time / len(with_target), 4) if with_target else None,
        "excursion_rate": (
            round(sum(1 for e in shipped if e) / len(shipped), 4) if shipped else None
        ),
        "attrition_rate": round(status["cancelled"] / closed, 4) if closed else None,
    }


def turnaround(
    rows: Sequence[Sequence[Any]], v2v_targets: dict[str, float | None], group_by: str
) -> list[dict[str, Any]]:
    """One summary per group, in key order."""
    groups: dict[str, list[Sequence[Any]]] = defaultdict(list)
    if group_by == "month":
        for row in rows:
            groups[group_key(row, group_by)].append(row)
    else:
        index = COLUMN[group_by]
        for row in rows:
            groups[row[index]].append(row)
    return [
        {"key": str(key), **summarise(members, v2v_targets)}
        for key, members in sorted(groups.items())
    ]
