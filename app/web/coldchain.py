"""The shipment page: the downsampled trace, the profile's band, excursions, MKT, custody."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.services.coldchain import disposition as excursions
from app.services.coldchain import engine as coldchain
from app.services.coldchain.trace_window import trace_window
from app.services.delays import routes
from app.services.identity.coi import display
from app.services.shipments import lifecycle as shipments
from app.services.shipments import pages as shipment_pages
from app.web.i18n import Lang
from models.case import Case
from models.reference import Profile
from models.shipment import Shipment

TRACE_POINTS = 500
CRYO_SPAN_C = 20.0  # how far below a cryogenic profile's ceiling its band is drawn


def chart(
    session: Session,
    shipment: Shipment,
    profile: Profile,
    lang: Lang,
    points: int = TRACE_POINTS,
) -> dict[str, Any]:
    """Plotly inputs: min/mean/max per bucket (from the API's trace), band and excursions."""
    trace = trace_window(
        session, shipment_id=shipment.id, from_at=None, to_at=None, max_points=points
    )
    rows = trace["points"]
    excs = excursions.of_shipment(session, shipment_id=shipment.id)
    lows = [p["min_c"] for p in rows]
    highs = [p["max_c"] for p in rows]
    floor = profile.min_c
    if floor is None:
        floor = min([*lows, profile.max_c]) - CRYO_SPAN_C if lows else profile.max_c - CRYO_SPAN_C
    last_t = rows[-1]["t"] if rows else None
    _ = lang.gettext
    return {
        "x": [lang.local_naive(p["t"]) for p in rows],
        "min": lows,
        "max": highs,
        "mean": [p["mean_c"] for p in rows],
        "band": [floor, profile.max_c],
        "excursions": [
            {
                "id": e.id,
                "x0": lang.local_naive(e.started_at),
                "x1": lang.local_naive(e.ended_at or last_t or e.started_at),
                "severity": e.severity,
                "peak": e.peak_c,
            }
            for e in excs
        ],
        "labels": {
            "mean": _("Mean"),
            "range": _("Min–max per interval"),
            "band": _("Allowed range"),
            "excursion": _("Excursion"),
            "axis_t": _("Time (%(zone)s)", zone=lang.zone.key),
            "axis_c": _("Temperature (°C)"),
        },
        # plotly.js names months in English; Japanese pages get numeric dates instead.
        "tickformat": "%m/%d %H:%M" if lang.code == "ja" else "",
        "bucket_s": trace["bucket_s"],
        "n": sum(p["n"] for p in rows),
    }


def build(session: Session, shipment: Shipment, *, now: datetime, lang: Lang) -> dict[str, Any]:
    case = session.get(Case, shipment.case_id)
    if case is None:  # a foreign key guarantees it
        raise RuntimeError(f"inconsistent data: case of shipment {shipment.id} missing")
    profile = shipment_pages.profile_of(session, shipment=shipment)
    model = routes.load_models(session)[case.route]
    return {
        "shipment": shipment,
        "case": case,
        "coi_display": display(case.coi),
        "profile": profile,
        "summary": coldchain.summary(session, shipment=shipment, profile=profile),
        "last": coldchain.last_reading(session, shipment_id=shipment.id),
        "eta": routes.shipment_eta(session, shipment=shipment, model=model, now=now),
        "custody": shipments.custody_chain(session, shipment_id=shipment.id),
        "excursions": excursions.of_shipment(session, shipment_id=shipment.id),
        "chart": chart(session, shipment, profile, lang),
    }
