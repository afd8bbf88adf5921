"""Turnaround metrics and the local-vs-overseas route comparison (no patient data)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from app.deps import NowDep, SessionDep, require_roles
from app.errors import Invalid
from app.services.access.scope import METRICS_VIEWERS
from app.services.metrics import reports
from app.services.metrics import turnaround as metrics
from models.principal import Principal

router = APIRouter(prefix="/metrics", tags=["metrics"])
Viewer = Annotated[Principal, require_roles(*METRICS_VIEWERS)]
GroupBy = Literal["route", "route_kind", "manufacturing_site", "site", "product", "month"]


def _instant(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Invalid(
            f"{name}: not a date or an RFC 3339 time",
            errors=[{"loc": f"query/{name}", "msg": "bad time"}],
        ) from exc
    if parsed.tzinfo is None:
        raise Invalid(
            f"{name} needs a UTC offset", errors=[{"loc": f"query/{name}", "msg": "naive"}]
        )
    return parsed


@router.get("/turnaround", description=metrics.__doc__)
def turnaround(
    principal: Viewer,
    session: SessionDep,
    group_by: GroupBy = "route",
    from_: Annotated[
        str | None,
        Query(
            alias="from", max_length=40, description="Collected on or after (date = UTC midnight)"
        ),
    ] = None,
    to: Annotated[str | None, Query(max_length=40, description="Collected before")] = None,
    product: Annotated[str | None, Query(max_length=32, description="Only this product")] = None,
    route: Annotated[str | None, Query(max_length=32, description="Only this route")] = None,
    site: Annotated[
        str | None, Query(max_length=32, description="Only cases collected at this site")
    ] = None,
) -> dict[str, Any]:
    """V2V and per-leg turnaround per group, with on-time, excursion and attrition rates."""
    return reports.turnaround_for(
        session,
        actor=principal,
        group_by=group_by,
        collected_from=_instant(from_, "from"),
        collected_to=_instant(to, "to"),
        product=product,
        route=route,
        site=site,
    )


@router.get("/routes/compare", description=metrics.__doc__)
def compare(
    principal: Viewer,
    session: SessionDep,
    now: NowDep,
    routes_: Annotated[
        str,
        Query(
            alias="routes",
            max_length=200,
            description="Comma-separated route codes; the first is the baseline",
        ),
    ],
    site: Annotated[str | None, Query(max_length=32)] = None,
    product: Annotated[str, Query(max_length=32)] = "CART-CD19",
) -> dict[str, Any]:
    """Observed and predicted V2V and cost per route, and each route's difference from the first."""
    codes = [c.strip() for c in routes_.split(",") if c.strip()]
    return reports.compare_routes(
        session, actor=principal, codes=codes, site=site, product=product, now=now
    )
