"""Turnaround metrics and the local-vs-overseas route comparison (no patient data)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from app.deps import NowDep, SessionDep, require_roles
from app.errors import Invalid, NotFound
from app.services.capacity import slots as capacity
from app.services.delays import routes
from app.services.metrics import turnaround as metrics
from models.principal import Principal, Role
from models.reference import Product, Site

router = APIRouter(prefix="/metrics", tags=["metrics"])
Viewer = Annotated[
    Principal,
    require_roles(Role.admin, Role.coordinator, Role.manufacturer, Role.qa, Role.viewer),
]
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


def _scope(principal: Principal) -> dict[str, str] | None:
    """Filters limiting metrics.fetch_rows to the caller's cases; None when it may see none."""
    if principal.role not in (Role.coordinator, Role.manufacturer):
        return {}
    if principal.site is None:
        return None
    if principal.role == Role.coordinator:
        return {"site": principal.site}
    return {"manufacturing_site": principal.site}


def _scoped(principal: Principal, rows: list[metrics.CaseRow]) -> list[metrics.CaseRow]:
    if principal.role == Role.coordinator:
        return [r for r in rows if r.site == principal.site]
    if principal.role == Role.manufacturer:
        return [r for r in rows if r.manufacturing_site == principal.site]
    return rows


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
) -> dict[str, Any]:
    """V2V and per-leg turnaround per group, with on-time, excursion and attrition rates."""
    collected_from, collected_to = _instant(from_, "from"), _instant(to, "to")
    scope = _scope(principal)
    rows = (
        []
        if scope is None
        else metrics.fetch_rows(
            session, collected_from=collected_from, collected_to=collected_to, **scope
        )
    )
    groups = metrics.turnaround(rows, metrics.targets(session), group_by)
    return {"group_by": group_by, "groups": groups}


def diff(a: Any, b: Any) -> float | None:
    return round(a - b, 4) if a is not None and b is not None else None


def _p50(entry: dict[str, Any]) -> float | None:
    v2v = entry["observed"]["vein_to_vein_d"]
    return None if v2v is None else float(v2v["p50"])


def predicted_v2v_days(
    session: SessionDep, model: routes.RouteModel, product: Product, now: datetime
) -> tuple[float, dict[str, datetime]]:
    """V2V for a case collected now, given the factory's free positions and the legs."""
    factory = session.get(Site, model.manufacturing_site)
    if factory is None:  # guaranteed by foreign keys and state
        raise RuntimeError("inconsistent data: factory missing")
    arrival = now + timedelta(hours=model.transit_h("inbound"))
    ready = arrival + model.hours("receipt_to_start", 12.0)
    slot = capacity.first_fit(session, factory, ready, timedelta(hours=product.process_h))
    predicted = routes.predict(
        model, {}, now=now, apheresis_at=now, slot_start_at=slot, process_h=product.process_h
    )
    days = (predicted["infused"] - predicted["collected"]).total_seconds() / 86400
    return round(days, 3), predicted


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
    if not 1 <= len(codes) <= 10 or len(set(codes)) != len(codes):
        raise Invalid(
            "give 1 to 10 distinct route codes", errors=[{"loc": "query/routes", "msg": "bad list"}]
        )
    models = routes.load_models(session)
    unknown = [c for c in codes if c not in models]
    if unknown:
        raise NotFound(f"no route {unknown[0]!r}")
    if site is not None and session.get(Site, site) is None:
        raise NotFound(f"no site {site!r}")
    product_row = session.get(Product, product)
    if product_row is None:
        raise Invalid(
            f"unknown product {product!r}", errors=[{"loc": "query/product", "msg": "unknown"}]
        )
    rows = _scoped(principal, metrics.fetch(session, site=site, routes=codes))
    v2v_targets = metrics.targets(session)
    out: list[dict[str, Any]] = []
    for code in codes:
        model = models[code]
        observed = metrics.summarise([r for r in rows if r.route == code], v2v_targets)
        days, predicted = predicted_v2v_days(session, model, product_row, now)
        out.append(
            {
                "route": code,
                "kind": model.kind,
                "manufacturing_site": model.manufacturing_site,
                "observed": observed,
                "predicted_vein_to_vein_d": days,
                "predicted_milestones": predicted,
                "cost_per_case": model.cost_per_case,
                "currency": model.currency,
            }
        )
    base = out[0]
    differences = []
    for entry in out[1:]:
        differences.append(
            {
                "route": entry["route"],
                "vs": base["route"],
                "vein_to_vein_d_p50": diff(_p50(entry), _p50(base)),
                "predicted_vein_to_vein_d": diff(
                    entry["predicted_vein_to_vein_d"], base["predicted_vein_to_vein_d"]
                ),
                "cost_per_case": diff(entry["cost_per_case"], base["cost_per_case"]),
            }
        )
    return {
        "site": site,
        "product": product,
        "as_of": now,
        "routes": out,
        "differences": differences,
    }
