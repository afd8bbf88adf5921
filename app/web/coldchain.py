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
from app.web import trace_svg
from app.web.i18n import Lang
from models.case import Case
from models.reference import Profile
from models.shipment import Shipment

# One bucket per pixel column or so, and under SQLite's compound-select limit (traces.py).
TRACE_POINTS = 480
CRYO_SPAN_C = 20.0  # how far below a cryogenic profile's ceiling the chart reaches at least


def chart(
    session: Session,
    shipment: Shipment,
    profile: Profile,
    lang: Lang,
    points: int = TRACE_POINTS,
) -> dict[str, Any]:
    """The trace drawn as inline SVG (min/max per bucket from the API's trace, the band and
    the excursions), with the figures its caption names."""
    trace = trace_window(
        session, shipment_id=shipment.id, from_at=None, to_at=None, max_points=points
    )
    rows = trace["points"]
    excs = excursions.of_shipment(session, shipment_id=shipment.id)
    # A cryogenic profile has only a ceiling: the chart reaches some way below it.
    floor = None if profile.min_c is not None else profile.max_c - CRYO_SPAN_C
    spans = [trace_svg.Span(e.started_at, e.ended_at, e.severity, e.peak_c) for e in excs]
    n = sum(p["n"] for p in rows)
    svg = trace_svg.render(
        rows,
        bucket_s=trace["bucket_s"],
        band=(profile.min_c, profile.max_c),
        spans=spans,
        lang=lang,
        ident=f"trace-{shipment.id}",
        floor_c=floor,
        readings=n,
    )
    return {"svg": svg, "excursions": len(spans), "bucket_s": trace["bucket_s"], "n": n}


def build(session: Session, shipment: Shipment, *, now: datetime, lang: Lang) -> dict[str, Any]:
    case = session.get(Case, shipment.case_id)
    if case is None:  # a foreign key guarantees it
        raise RuntimeError(f"inconsistent data: case of shipment {shipment.id} missing")
    profile = shipment_pages.profile_of(session, shipment=shipment)
    model = routes.load_model(session, case.route)
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
