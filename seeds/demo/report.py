"""What the demo generated: counts, turnaround observed at ``now``, and its summary table."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from statistics import median
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table as RichTable

from models.case import CaseStatus

CLOSED = frozenset({CaseStatus.infused.value, CaseStatus.cancelled.value})
STAGES = ("generated", "written")  # of the progress callback


@dataclass
class DemoReport:
    seed: int
    now: datetime
    cases: int = 0
    skipped: bool = False
    by_status: Counter[str] = field(default_factory=Counter)
    by_route: Counter[tuple[str, str]] = field(default_factory=Counter)  # (route, status)
    rows: Counter[str] = field(default_factory=Counter)  # rows written per table
    # Observed at `now`, per route kind: vein-to-vein and collection -> arrival at the
    # hospital (days, latest cycle), and closed cases (infused or cancelled after collection).
    v2v_d: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    to_site_d: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    closed: Counter[str] = field(default_factory=Counter)
    attrited: Counter[str] = field(default_factory=Counter)

    @property
    def in_flight(self) -> int:
        return sum(n for s, n in self.by_status.items() if s not in CLOSED)

    def medians(self) -> dict[str, dict[str, float | None]]:
        kinds = sorted(set(self.v2v_d) | set(self.to_site_d) | set(self.closed))
        return {
            k: {
                "v2v_d": round(median(self.v2v_d[k]), 2) if self.v2v_d[k] else None,
                "collection_to_site_d": (
                    round(median(self.to_site_d[k]), 2) if self.to_site_d[k] else None
                ),
                "attrition": round(self.attrited[k] / self.closed[k], 4)
                if self.closed[k]
                else None,
            }
            for k in kinds
        }

    def counts(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "now": self.now,
            "cases": self.cases,
            "by_status": dict(sorted(self.by_status.items())),
            "rows": dict(sorted(self.rows.items())),
        }


def summary(report: DemoReport) -> RenderableType:
    """Cases by route and status, rows written, and the turnaround observed at ``now``."""
    statuses = sorted(report.by_status, key=lambda s: list(CaseStatus).index(CaseStatus(s)))
    routes = sorted({route for route, _ in report.by_route})
    table = RichTable(title=f"demo cohort: {report.cases} cases, seed {report.seed}")
    table.add_column("status")
    for route in routes:
        table.add_column(route, justify="right")
    for status in statuses:
        table.add_row(status, *(str(report.by_route[(route, status)]) for route in routes))
    rows = report.rows
    lines = [
        f"readings {rows['reading']:,}, shipments {rows['shipment']:,}, "
        f"excursions {rows['excursion']:,}, alerts {rows['alert']:,}, "
        f"in flight at {report.now:%Y-%m-%d %H:%M}Z: {report.in_flight}"
    ]
    for kind, m in report.medians().items():
        lines.append(
            f"{kind}: median V2V {m['v2v_d']} d, collection -> at hospital "
            f"{m['collection_to_site_d']} d, attrition {m['attrition']}"
        )
    return Group(table, *lines)
