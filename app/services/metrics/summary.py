"""Turnaround summaries: without a time window from the cells' totals, with one from
``case_turnaround`` (one narrow row per case).

Without a time window every filter and grouping is a cell attribute, so a summary adds up
its cells' totals (``cells.current``: the stored ones, and those awaiting a fold recomputed
from their rows) and reads each percentile off the cells' sorted values by selection across
them (``kth.neighbours``), without sorting or fetching every case's. With one, it reads the
per-case rows:

The figures are those ``turnaround.summarise`` defines over from-scratch rows (tests hold the
two against each other). PostgreSQL computes everything in one grouped query, percentiles
with ``percentile_cont`` (linear interpolation between order statistics, as
``turnaround.quantile``). SQLite has no percentile function: counts and rates come from one
grouped query, and each group's values of a span are sorted in memory (only the two values
around a percentile are converted).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, case, cast, func, literal, true
from sqlalchemy import select as select_columns
from sqlalchemy.dialects.postgresql import array
from sqlmodel import Session

from app.services.delays.targets import LEGS
from app.services.metrics import cells as stored_cells
from app.services.metrics.case_rows import _driver_rows
from app.services.metrics.cells import CELLS, SUMS
from app.services.metrics.kth import neighbours
from app.services.metrics.turnaround_rows import TABLE

T = TABLE.c
# (output name, span column, hours per unit): the whole V2V in days, then each leg.
MEASURES = (
    ("vein_to_vein_d", "vein_to_vein_s", 24.0),
    *((leg.name, leg.name.rsplit("_", 1)[0] + "_s", leg.hours_per_unit) for leg in LEGS),
)
QUANTILES = (0.5, 0.9)


@dataclass(frozen=True)
class Filters:
    """Which cases a summary covers: every condition given must hold."""

    site: str | None = None
    product: str | None = None
    routes: Sequence[str] | None = None
    manufacturing_site: str | None = None
    collected_from: datetime | None = None
    collected_to: datetime | None = None
    infused_from: datetime | None = None

    def untimed(self) -> bool:
        """Whether only cell attributes are restricted (no time window)."""
        return all(v is None for v in (self.collected_from, self.collected_to, self.infused_from))

    def attributes(self, table: Any) -> list[ColumnElement[bool]]:
        """The conditions on a case's attributes, over a table's columns of those names."""
        found: list[ColumnElement[bool]] = [true()]
        for name, value in (
            ("site", self.site),
            ("product", self.product),
            ("manufacturing_site", self.manufacturing_site),
        ):
            if value is not None:
                found.append(table.c[name] == value)
        if self.routes is not None:
            found.append(table.c.route.in_(list(self.routes)))
        return found

    def where(self) -> ColumnElement[bool]:
        found = self.attributes(TABLE)
        if self.collected_from is not None:
            found.append(T.collected_s >= self.collected_from.timestamp())
        if self.collected_to is not None:
            found.append(T.collected_s < self.collected_to.timestamp())
        if self.infused_from is not None:
            found.append(T.infused_s >= self.infused_from.timestamp())
        return and_(*found)


def _value(span: str, per: float) -> Any:
    # The same arithmetic as the from-scratch summary: seconds → hours → the unit.
    return T[span] / 3600.0 / per


def _counters(key: Any, targets: dict[str, float | None]) -> list[Any]:
    """Counts per group, each a plain count() (cheap on both databases), and each span's
    count, sum, min and max in seconds (converted to its unit by ``_span_stats``)."""
    limits = {code: limit for code, limit in targets.items() if limit is not None}
    limit_s = case(*((T.route == code, literal(v * 86400.0)) for code, v in limits.items()))
    columns = [
        key.label("key"),
        func.count().label("n"),
        func.count(T.vein_to_vein_s).label("n_infused"),
        func.count(case((T.vein_to_vein_s <= limit_s, 1))).label("on_time")
        if limits
        else literal(0).label("on_time"),
        func.count(case((T.route.in_(list(limits)), T.vein_to_vein_s))).label("with_target"),
        func.count(case((T.outcome == "cancelled", 1))).label("cancelled"),
        func.count(T.outcome).label("closed"),  # infused or cancelled, else NULL
        func.count(case((T.shipped, 1))).label("shipped"),
        func.count(case((and_(T.shipped, T.excursion), 1))).label("excursions"),
    ]
    for name, span, _ in MEASURES:
        columns += [
            func.count(T[span]).label(f"{name}:n"),
            func.sum(T[span]).label(f"{name}:sum"),
            func.min(T[span]).label(f"{name}:min"),
            func.max(T[span]).label(f"{name}:max"),
        ]
    return columns


def _span_stats(row: dict[str, Any], name: str, per: float, p50: float, p90: float) -> Any:
    count = int(row[f"{name}:n"] or 0)
    if not count:
        return None
    return _stats(
        count,
        row[f"{name}:sum"] / 3600.0 / per,
        row[f"{name}:min"] / 3600.0 / per,
        row[f"{name}:max"] / 3600.0 / per,
        p50,
        p90,
    )


def _rates(row: dict[str, Any]) -> dict[str, float | None]:
    def rate(part: Any, whole: Any) -> float | None:
        return round(int(part) / int(whole), 4) if whole else None

    return {
        "on_time_rate": rate(row["on_time"], row["with_target"]),
        "excursion_rate": rate(row["excursions"], row["shipped"]),
        "attrition_rate": rate(row["cancelled"], row["closed"]),
    }


def _stats(
    count: int, total: float, low: float, high: float, p50: float, p90: float
) -> dict[str, float] | None:
    if not count:
        return None
    return {
        "p50": round(p50, 4),
        "p90": round(p90, 4),
        "mean": round(total / count, 4),
        "min": round(low, 4),
        "max": round(high, 4),
    }


def empty(key: str) -> dict[str, Any]:
    """The summary of no cases."""
    return {
        "key": key,
        "n": 0,
        "n_infused": 0,
        "vein_to_vein_d": None,
        "legs": {name: None for name, _, _ in MEASURES[1:]},
        "on_time_rate": None,
        "excursion_rate": None,
        "attrition_rate": None,
    }


def _shape(row: dict[str, Any], stats: dict[str, dict[str, float] | None]) -> dict[str, Any]:
    return {
        "key": str(row["key"]),
        "n": int(row["n"]),
        "n_infused": int(row["n_infused"]),
        "vein_to_vein_d": stats["vein_to_vein_d"],
        "legs": {name: stats[name] for name, _, _ in MEASURES[1:]},
        **_rates(row),
    }


def summaries(
    session: Session, *, group_by: str, filters: Filters, targets: dict[str, float | None]
) -> list[dict[str, Any]]:
    """One summary per group (key order) over the cases the filters select."""
    if filters.untimed():
        return _from_cells(session, group_by, filters, targets)
    key = T[group_by]
    if session.get_bind().dialect.name == "postgresql":
        return _postgresql(session, key, filters, targets)
    return _sqlite(session, group_by, key, filters, targets)


def _postgresql(
    session: Session, key: Any, filters: Filters, targets: dict[str, float | None]
) -> list[dict[str, Any]]:
    columns = _counters(key, targets)
    for name, span, per in MEASURES:
        value = cast(_value(span, per), Float)
        columns.append(
            func.percentile_cont(array(QUANTILES)).within_group(value).label(f"{name}:q")
        )
    stmt = select_columns(*columns).where(filters.where()).group_by(key)
    out = []
    for found in session.execute(stmt).mappings():
        row = dict(found)
        stats = {
            name: _span_stats(row, name, per, *(row[f"{name}:q"] or (math.nan, math.nan)))
            for name, _, per in MEASURES
        }
        out.append(_shape(row, stats))
    return sorted(out, key=lambda g: g["key"])


def _sqlite(
    session: Session,
    group_by: str,
    key: Any,
    filters: Filters,
    targets: dict[str, float | None],
) -> list[dict[str, Any]]:
    stmt = select_columns(*_counters(key, targets)).where(filters.where()).group_by(key)
    groups = [dict(r) for r in session.execute(stmt).mappings()]
    picks = _sqlite_quantiles(session, group_by, key, filters, groups)
    out = []
    for row in groups:
        stats = {
            name: _span_stats(row, name, per, *picks[(row["key"], name)])
            for name, _, per in MEASURES
        }
        out.append(_shape(row, stats))
    return sorted(out, key=lambda g: g["key"])


def _sqlite_quantiles(
    session: Session, group_by: str, key: Any, filters: Filters, groups: list[dict[str, Any]]
) -> dict[tuple[Any, str], tuple[float, float]]:
    """Each group's p50 and p90 of each measure."""
    picks: dict[tuple[Any, str], tuple[float, float]] = {}
    # The spans in one fetch, each group's sorted in memory; only the two values around a
    # percentile are converted.
    stmt = select_columns(key, *(T[span] for _, span, _ in MEASURES)).where(filters.where())
    columns: dict[Any, list[list[float]]] = defaultdict(lambda: [[] for _ in MEASURES])
    for k, *spans in _driver_rows(session, stmt):
        lists = columns[k]
        for i, v in enumerate(spans):
            if v is not None:
                lists[i].append(v)
    for row in groups:
        lists = columns[row["key"]]
        for (name, _, per), values in zip(MEASURES, lists, strict=True):
            values.sort()
            picks[(row["key"], name)] = _pick(values, per)
    return picks


def _pick(ordered: list[float], per: float) -> tuple[float, float]:
    """p50 and p90 of sorted spans in seconds, in the unit (``turnaround.quantile``'s
    interpolation between the two converted order statistics)."""
    if not ordered:
        return (math.nan, math.nan)
    n, found = len(ordered), []
    for p in QUANTILES:
        h = (n - 1) * p
        lo = math.floor(h)
        a, b = ordered[lo] / 3600.0 / per, ordered[min(lo + 1, n - 1)] / 3600.0 / per
        found.append(a + (h - lo) * (b - a))
    return (found[0], found[1])


def v2v_days(session: Session, *, filters: Filters) -> dict[str, list[float]]:
    """Each route's V2V in days (rounded to 0.01) over its infused cases, sorted."""
    stmt = select_columns(T.route, T.vein_to_vein_s / 3600.0 / 24.0).where(
        filters.where(), T.vein_to_vein_s.is_not(None)
    )
    out: dict[str, list[float]] = defaultdict(list)
    for route, days in _driver_rows(session, stmt):
        out[route].append(round(days, 2))
    return {route: sorted(days) for route, days in out.items()}


def _from_cells(
    session: Session, group_by: str, filters: Filters, targets: dict[str, float | None]
) -> list[dict[str, Any]]:
    """Summaries added up from the selected cells' totals, per group."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    found = stored_cells.current(session, filters.attributes(CELLS), filters.attributes(TABLE))
    for cell in found:
        groups[str(cell[group_by])].append(cell)
    limits = {code: v * 86400.0 for code, v in targets.items() if v is not None}
    out = []
    for key, group in sorted(groups.items()):
        v2v = [cell["vein_to_vein_s"] for cell in group]
        timed = [
            (limits[c["route"]], run)
            for c, run in zip(group, v2v, strict=True)
            if c["route"] in limits
        ]
        row = {
            "key": key,
            "n": sum(c["n"] for c in group),
            "n_infused": sum(len(run) for run in v2v),
            "on_time": sum(bisect_right(run, limit) for limit, run in timed),
            "with_target": sum(len(run) for _, run in timed),
            **{
                name: sum(c[name] for c in group)
                for name in ("cancelled", "closed", "shipped", "excursions")
            },
        }
        stats: dict[str, dict[str, float] | None] = {}
        for name, span, per in MEASURES:
            runs = [c[span] for c in group if len(c[span])]
            count = sum(len(run) for run in runs)
            if not count:
                stats[name] = None
                continue
            unit = 3600.0 * per
            stats[name] = _stats(
                count,
                sum(c[SUMS[span]] for c in group) / 3600.0 / per,
                min(run[0] for run in runs) / 3600.0 / per,
                max(run[-1] for run in runs) / 3600.0 / per,
                *_merged_quantiles(runs, count, unit),
            )
        out.append(_shape(row, stats))
    return out


def _merged_quantiles(runs: Sequence[Sequence[float]], n: int, unit: float) -> tuple[float, float]:
    """p50 and p90 of sorted runs of spans in seconds, in the unit (as ``_pick``)."""
    found = []
    for p in QUANTILES:
        h = (n - 1) * p
        lo = math.floor(h)
        a, b = (v / unit for v in neighbours(runs, lo))
        found.append(a + (h - lo) * (b - a))
    return (found[0], found[1])
