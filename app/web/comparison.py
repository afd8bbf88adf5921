"""The routes page: local and overseas side by side, from the API's comparison."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.routers import metrics as metrics_api
from app.services.delays import routes
from app.services.metrics import turnaround as metrics
from app.web.i18n import Lang
from app.web.labels import LEG
from models.principal import Principal
from models.reference import Product

LEG_DAYS = {name: (24.0 if name.endswith("_h") else 1.0) for name in LEG}


def route_order(session: Session) -> list[str]:
    """Local routes first (the baseline), then overseas ones."""
    models = routes.load_models(session)
    return sorted(models, key=lambda code: (models[code].kind != "local", code))


def products(session: Session) -> list[Product]:
    return list(session.exec(select(Product).order_by(col(Product.code))))


def build(
    session: Session, principal: Principal, *, now: datetime, product: str, lang: Lang
) -> dict[str, Any]:
    codes = route_order(session)
    compared = metrics_api.compare(
        principal=principal,
        session=session,
        now=now,
        routes_=",".join(codes),
        site=None,
        product=product,
    )
    rows = metrics_api._scoped(principal, metrics.fetch(session, routes=codes))
    v2v: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        hours = row.hours("collected", "infused")
        if hours is not None:
            v2v[row.route].append(round(hours / 24, 2))
    kinds = {r["route"]: r["kind"] for r in compared["routes"]}
    by_kind = metrics.turnaround(rows, metrics.targets(session), "route_kind")
    _ = lang.gettext
    leg_chart = {
        "routes": codes,
        "legs": [
            {
                "name": _(label),
                "days": [
                    _leg_days(entry["observed"]["legs"].get(name), name)
                    for entry in compared["routes"]
                ],
            }
            for name, label in LEG.items()
        ],
        "labels": {"axis": _("Median days per leg")},
    }
    distribution = {
        "routes": [
            {"route": code, "kind": kinds[code], "days": sorted(v2v.get(code, []))}
            for code in codes
        ],
        "labels": {"axis": _("Vein-to-vein days (infused cases)")},
    }
    return {
        "compare": compared,
        "kinds": {g["key"]: g for g in by_kind},
        "distribution": distribution,
        "leg_chart": leg_chart,
        "products": products(session),
        "product": product,
        "leg_names": list(LEG),
    }


def _leg_days(stats: dict[str, float] | None, name: str) -> float | None:
    if not stats:
        return None
    return round(stats["p50"] / LEG_DAYS[name], 3)
