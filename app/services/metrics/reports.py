"""Turnaround and route comparisons as a caller may see them (aggregates, no patient data)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from app.errors import Invalid, NotFound
from app.services.capacity import slots as capacity
from app.services.delays import routes
from app.services.metrics import summary
from app.services.metrics import turnaround as metrics
from models.principal import Principal, Role
from models.reference import Product, Route, Site

MAX_COMPARED = 10


def row_filters(actor: Principal) -> dict[str, str] | None:
    """Filters limiting a summary to the actor's cases; None when it may see none."""
    if actor.role not in (Role.coordinator, Role.manufacturer):
        return {}
    if actor.site is None:
        return None
    if actor.role == Role.coordinator:
        return {"site": actor.site}
    return {"manufacturing_site": actor.site}


def scoped_filters(actor: Principal, *, site: str | None, **given: Any) -> summary.Filters | None:
    """The actor's scope and the filters asked for, or None when nothing can match (a
    coordinator asking for another site's cases sees none, as for any other case)."""
    scope = row_filters(actor)
    if scope is None or (site is not None and scope.get("site", site) != site):
        return None
    return summary.Filters(
        site=scope.get("site", site), manufacturing_site=scope.get("manufacturing_site"), **given
    )


def summaries(
    session: Session, *, actor: Principal, group_by: str, site: str | None, **given: Any
) -> list[dict[str, Any]]:
    """Summaries per group over the actor's cases selected by ``given`` (Filters' fields)."""
    filters = scoped_filters(actor, site=site, **given)
    if filters is None:
        return []
    return summary.summaries(
        session, group_by=group_by, filters=filters, targets=metrics.targets(session)
    )


def require_known(
    session: Session, *, product: str | None, route: str | None, site: str | None
) -> None:
    """422 naming the query parameter whose code is not in the reference data."""
    for name, model, code in (
        ("product", Product, product),
        ("route", Route, route),
        ("site", Site, site),
    ):
        if code is not None and session.get(model, code) is None:
            raise Invalid(
                f"unknown {name} {code!r}", errors=[{"loc": f"query/{name}", "msg": "unknown"}]
            )


def turnaround_for(
    session: Session,
    *,
    actor: Principal,
    group_by: str,
    collected_from: datetime | None,
    collected_to: datetime | None,
    product: str | None = None,
    route: str | None = None,
    site: str | None = None,
) -> dict[str, Any]:
    """V2V and per-leg turnaround per group over the actor's cases collected in a window,
    optionally of one product, route or collecting site."""
    require_known(session, product=product, route=route, site=site)
    groups = summaries(
        session,
        actor=actor,
        group_by=group_by,
        site=site,
        product=product,
        routes=None if route is None else [route],
        collected_from=collected_from,
        collected_to=collected_to,
    )
    return {"group_by": group_by, "groups": groups}


def _diff(a: Any, b: Any) -> float | None:
    return round(a - b, 4) if a is not None and b is not None else None


def _p50(entry: dict[str, Any]) -> float | None:
    v2v = entry["observed"]["vein_to_vein_d"]
    return None if v2v is None else float(v2v["p50"])


def predicted_v2v_days(
    session: Session, *, model: routes.RouteModel, product: Product, now: datetime
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


def compare_routes(
    session: Session,
    *,
    actor: Principal,
    codes: Sequence[str],
    site: str | None,
    product: str,
    now: datetime,
) -> dict[str, Any]:
    """Observed and predicted V2V and cost per route, and each one's difference from the first."""
    if not 1 <= len(codes) <= MAX_COMPARED or len(set(codes)) != len(codes):
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
    found = summaries(
        session, actor=actor, group_by="route", site=site, routes=codes, product=product
    )
    by_route = {g["key"]: g for g in found}
    out: list[dict[str, Any]] = []
    for code in codes:
        model = models[code]
        observed = by_route.get(code) or summary.empty(code)
        observed.pop("key")
        days, predicted = predicted_v2v_days(session, model=model, product=product_row, now=now)
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
    differences = [
        {
            "route": entry["route"],
            "vs": base["route"],
            "vein_to_vein_d_p50": _diff(_p50(entry), _p50(base)),
            "predicted_vein_to_vein_d": _diff(
                entry["predicted_vein_to_vein_d"], base["predicted_vein_to_vein_d"]
            ),
            "cost_per_case": _diff(entry["cost_per_case"], base["cost_per_case"]),
        }
        for entry in out[1:]
    ]
    return {
        "site": site,
        "product": product,
        "as_of": now,
        "routes": out,
        "differences": differences,
    }


def route_order(session: Session) -> list[str]:
    """Route codes, local routes first (the baseline of a comparison), then overseas ones."""
    models = routes.load_models(session)
    return sorted(models, key=lambda code: (models[code].kind != "local", code))


def products(session: Session) -> list[Product]:
    """The products a comparison can be made for."""
    return list(session.exec(select(Product).order_by(col(Product.code))))


def month_by_route(
    session: Session, *, actor: Principal, month_start: datetime
) -> list[dict[str, Any]]:
    """Per route: the actor's cases infused since the month began and their V2V median."""
    # V2V never exceeds a few months, so older collections cannot end this month.
    found = summaries(
        session,
        actor=actor,
        group_by="route",
        site=None,
        collected_from=month_start - timedelta(days=180),
        infused_from=month_start,
    )
    by_route = {g["key"]: g for g in found}
    targets = metrics.targets(session)
    models = routes.load_models(session)
    out = []
    for code in sorted(models, key=lambda c: (models[c].kind != "local", c)):
        entry = by_route.get(code) or summary.empty(code)
        v2v = entry["vein_to_vein_d"]
        out.append(
            {
                "route": code,
                "kind": models[code].kind,
                "n": entry["n_infused"],
                "p50": v2v["p50"] if v2v else None,
                "target": targets.get(code),
                "on_time_rate": entry["on_time_rate"],
            }
        )
    return out


def routes_page(
    session: Session, *, actor: Principal, product: str, now: datetime
) -> dict[str, Any]:
    """Every route compared (local first), the actor's case rows and per-kind turnaround, all
    of one product."""
    codes = route_order(session)
    compared = compare_routes(
        session, actor=actor, codes=codes, site=None, product=product, now=now
    )
    filters = scoped_filters(actor, site=None, routes=codes, product=product)
    return {
        "codes": codes,
        "compare": compared,
        "v2v_days": {} if filters is None else summary.v2v_days(session, filters=filters),
        "by_kind": summaries(
            session, actor=actor, group_by="route_kind", site=None, routes=codes, product=product
        ),
        "products": products(session),
    }
