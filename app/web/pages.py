"""Dashboard pages (GET). Each page can also return one live region (``?part=``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse

from app.deps import SessionDep
from app.errors import NotFound
from app.services.journey import holds
from app.services.journey import pages as case_pages
from app.services.shipments import pages as shipment_pages
from app.web import alertlist, comparison, journey, overview, record_actions, vendor
from app.web import coldchain as coldchain_view
from app.web.render import ViewDep, WebRoute, env
from app.web.roles import require
from models.case import Case
from models.reference import Site

router = APIRouter(route_class=WebRoute, include_in_schema=False)
router.include_router(vendor.router)
env.globals["plotly_js"] = vendor.URL  # base.html names it; dashboard.js loads it for /routes
Part = Annotated[str | None, Query(max_length=20, pattern="^[a-z_]+$")]
Id = Annotated[str, Path(max_length=64)]

OVERVIEW_PARTS = {
    "alerts": "_overview_alerts.html",
    "shipments": "_overview_shipments.html",
    "stages": "_overview_stages.html",
    "tasks": "_overview_tasks.html",
}


def _part(parts: dict[str, str], part: str | None) -> str | None:
    if part is None:
        return None
    if part not in parts:
        raise NotFound(f"no live region {part!r}")
    return parts[part]


@router.get("/")
def overview_page(view: ViewDep, session: SessionDep, part: Part = None) -> HTMLResponse:
    """Open alerts, shipments in transit, cases by stage and this month's V2V per route."""
    template = _part(OVERVIEW_PARTS, part) or "overview.html"
    if part == "alerts":
        require(view.can.alerts, "alerts")
    if part == "stages":
        require(view.can.cases or view.can.metrics, "case counts")
    data = overview.build(session, view.user, view.can, view.now, view.lang.zone, part)
    return view.render(template, **data)


@router.get("/cases/{case_id}")
def case_page(case_id: Id, view: ViewDep, session: SessionDep, part: Part = None) -> HTMLResponse:
    """One case: the journey against its targets, its label, slot, custody and alerts."""
    require(view.can.cases, "case pages")
    case = case_pages.visible_case(session, actor=view.user, case_id=case_id)
    site = session.get(Site, case.site)
    local = view.in_zone(site.timezone) if site else view
    parts = {"timeline": "_case_timeline.html", "alerts": "_case_alerts.html"}
    template = _part(parts, part) or "case.html"
    if part == "alerts":
        require(view.can.alerts, "alerts")
    data = journey.build(session, view.user, case, now=view.now, alerts_too=view.can.alerts)
    # The traces only for the whole page: a live region's poll never draws them.
    charts = {
        s.id: coldchain_view.chart(
            session, s, shipment_pages.profile_of(session, shipment=s), local.lang
        )
        for s in data["shipments"]
        if s.picked_up_at is not None and part is None
    }
    outcome = record_actions.take_result(view.request) if part is None else None
    return local.render(
        template, charts=charts, outcome=outcome, form_zone=local.lang.zone.key, **data
    )


@router.get("/shipments/{shipment_id}")
def shipment_page(
    shipment_id: Id, view: ViewDep, session: SessionDep, part: Part = None
) -> HTMLResponse:
    """One shipment: temperature chart with band and excursions, MKT, custody chain."""
    require(view.can.shipments, "shipment pages")
    shipment = shipment_pages.visible_shipment(session, actor=view.user, shipment_id=shipment_id)
    case = session.get(Case, shipment.case_id)
    site = session.get(Site, case.site) if case else None
    local = view.in_zone(site.timezone) if site else view
    data = coldchain_view.build(session, shipment, now=view.now, lang=local.lang)
    hold = holds.state(session, case=case) if case else None
    parts = {"live": "_shipment_live.html", "excursions": "_shipment_excursions.html"}
    template = _part(parts, part) or "shipment.html"
    return local.render(template, hold=hold, **data)


@router.get("/routes")
def routes_page(
    view: ViewDep,
    session: SessionDep,
    product: Annotated[str, Query(max_length=32)] = "CART-CD19",
) -> HTMLResponse:
    """Local and overseas routes side by side: observed, predicted and cost."""
    require(view.can.metrics, "route comparisons")
    data = comparison.build(session, view.user, now=view.now, product=product, lang=view.lang)
    return view.render("routes.html", **data)


@router.get("/alerts")
def alerts_page(
    view: ViewDep,
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=20)] = "open",
    kind: Annotated[str | None, Query(max_length=40)] = None,
    severity: Annotated[str | None, Query(max_length=20)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    part: Part = None,
) -> HTMLResponse:
    """Alerts with filters and acknowledgement; excursions awaiting QA's signed decision."""
    require(view.can.alerts, "alerts")
    data = alertlist.build(
        session,
        view.user,
        view.can,
        status=status,
        kind=kind,
        severity=severity,
        cursor=cursor,
    )
    template = _part({"list": "_alerts_list.html"}, part) or "alerts.html"
    return view.render(template, **data)
