"""The routes page: local and overseas side by side, from the API's comparison."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.services.metrics import reports
from app.web.i18n import Lang
from app.web.labels import LEG
from models.principal import Principal

LEG_DAYS = {name: (24.0 if name.endswith("_h") else 1.0) for name in LEG}


def build(
    session: Session, principal: Principal, *, now: datetime, product: str, lang: Lang
) -> dict[str, Any]:
    page = reports.routes_page(session, actor=principal, product=product, now=now)
    codes, compared = page["codes"], page["compare"]
    v2v: dict[str, list[float]] = page["v2v_days"]
    kinds = {r["route"]: r["kind"] for r in compared["routes"]}
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
        "kinds": {g["key"]: g for g in page["by_kind"]},
        "distribution": distribution,
        "leg_chart": leg_chart,
        "products": page["products"],
        "product": product,
        "leg_names": list(LEG),
    }


def _leg_days(stats: dict[str, float] | None, name: str) -> float | None:
    if not stats:
        return None
    return round(stats["p50"] / LEG_DAYS[name], 3)
