"""The workspace's forms (GET): register a case, a case's next steps and label, a step,
a shipment, the courier's scan page and the factory's inbound board.

Each page shows only what the API would let its reader do; the posts are in
``step_actions.py`` and ``calendar.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, Response

from app.deps import SessionDep, SettingsDep, committing
from app.errors import Forbidden, NotFound
from app.services.access.scope import CASE_READERS
from app.services.capacity import slots as capacity
from app.services.identity import labels
from app.services.journey import pages as case_pages
from app.services.journey import reads
from app.services.journey.cases import CASE_SITE_KINDS
from app.services.reference import catalogue
from app.services.shipments import board
from app.services.shipments import pages as shipment_pages
from app.services.shipments.lifecycle import CUSTODY_ROLES
from app.web.render import View, ViewDep, WebRoute
from app.web.roles import require
from app.web.workspace import (
    BEDSIDE,
    IDENTITY_BEARING,
    STEP_FROM,
    STEPS,
    coi_parts,
    local_input,
    may_record,
    may_send,
    next_actions,
    step_site,
)
from models.case import Case, CaseListQuery, CaseStatus
from models.principal import Principal, Role
from models.reference import Route, Site
from models.shipment import Direction, ShipmentStatus, ShipmentSummary

router = APIRouter(route_class=WebRoute, include_in_schema=False)
Id = Annotated[str, Path(max_length=64)]
Step = Annotated[str, Path(max_length=40)]
DirectionQuery = Annotated[Literal["to_manufacturing", "to_site"], Query()]
CONTAINER_KINDS = ("dry shipper", "LN2 dry shipper", "insulated box 2-8 °C")


def registrar(view: View) -> Principal:
    if Role(view.user.role) not in (Role.admin, Role.coordinator):
        raise Forbidden("only the hospital's coordinators register cases")
    return view.user


def custodian(view: View) -> Principal:
    require(view.can.shipments, "shipments")
    if Role(view.user.role) not in CUSTODY_ROLES:
        raise Forbidden(f"role {view.user.role} may not record custody")
    return view.user


def register_context(session: Any, principal: Principal) -> dict[str, Any]:
    """The sites a person may register for and, per site, the routes that serve it."""
    sites = [
        s
        for s in catalogue.list_sites(session)
        if s.kind in CASE_SITE_KINDS and (principal.role == Role.admin or s.code == principal.site)
    ]
    codes = {s.code for s in sites}
    routes = [
        r
        for r in catalogue.list_routes(session)
        if any(leg.from_site in codes or leg.to_site in codes for leg in r.legs)
    ]
    zone = ZoneInfo(sites[0].timezone) if len(sites) == 1 else None
    return {
        "sites": sites,
        "routes": routes,
        "products": catalogue.list_products(session),
        "fixed_site": sites[0] if principal.role == Role.coordinator and sites else None,
        "site_zone": zone.key if zone else None,
    }


def render_register(
    view: View, session: Any, *, status: int = 200, error: str | None = None, **values: Any
) -> HTMLResponse:
    return view.render(
        "forms/register.html",
        status=status,
        error=error,
        values=values,
        **register_context(session, view.user),
    )


@router.get("/register")
def register_page(view: ViewDep, session: SessionDep) -> HTMLResponse:
    """Register a case: the coordinator's own site, a route serving it, product, patient."""
    registrar(view)
    return render_register(view, session)


@router.get("/cases/{case_id}/steps")
def case_steps(case_id: Id, view: ViewDep, session: SessionDep) -> HTMLResponse:
    """A case's chain of identity, its label to print, and the steps this person may do now."""
    require(view.can.cases, "case pages")
    case = case_pages.visible_case(session, actor=view.user, case_id=case_id)
    site = session.get(Site, case.site)
    local = view.in_zone(site.timezone) if site else view
    slot = capacity.current_slot(session, case_id=case.id)
    code, check = coi_parts(case.coi)
    return local.render(
        "forms/case.html",
        case=case,
        site=site,
        coi_code=code,
        coi_check=check,
        slot=slot,
        actions=next_actions(view.user, case, has_slot=slot is not None),
        on_hold=case.hold_status == "on_hold",
    )


@router.get("/cases/{case_id}/label.{fmt}", response_model=None)
def case_label(
    case_id: Id,
    fmt: Annotated[Literal["pdf", "png", "svg"], Path()],
    view: ViewDep,
    session: SessionDep,
) -> Response:
    """The printable COI label for a dashboard session (the API's is for Bearer keys):
    the same use case, so the print is numbered and audited the same way."""
    require(Role(view.user.role) in CASE_READERS, "labels")
    case = case_pages.visible_case(session, actor=view.user, case_id=case_id)
    with committing(session):
        printed = labels.print_label(session, case=case, actor=view.user, fmt=fmt, now=view.now)
    return Response(
        printed.content,
        media_type=printed.media_type,
        headers={
            "Content-Disposition": f'inline; filename="{printed.filename}"',
            "X-V2V-Print-Number": str(printed.print_no),
            "Cache-Control": "no-store",
        },
    )


def step_context(session: Any, view: View, case: Case, step: str) -> dict[str, Any]:
    route = session.get(Route, case.route)
    if route is None:  # guaranteed by foreign keys
        raise RuntimeError("inconsistent data: route missing")
    where = session.get(Site, step_site(case, route.manufacturing_site, step))
    if where is None:
        raise RuntimeError("inconsistent data: site missing")
    code, check = coi_parts(case.coi)
    return {
        "case": case,
        "step": step,
        "title": STEPS[step],
        "where": where,
        "where_zone": ZoneInfo(where.timezone),
        "coi_code": code,
        "coi_check": check,
        "identity": step in IDENTITY_BEARING,
        "bedside": step in BEDSIDE,
        "fits": case.status == STEP_FROM[step],
        "on_hold": step in BEDSIDE and case.hold_status == "on_hold",
    }


def render_step(
    view: View,
    session: Any,
    case: Case,
    step: str,
    *,
    status: int = 200,
    error: str | None = None,
    occurred: str | None = None,
    note: str = "",
) -> HTMLResponse:
    data = step_context(session, view, case, step)
    local = view.in_zone(data["where"].timezone)
    return local.render(
        "forms/step.html",
        status=status,
        error=error,
        occurred=occurred or local_input(view.now, data["where_zone"]),
        note=note,
        **data,
    )


def step_case(session: Any, view: View, case_id: str, step: str) -> Case:
    require(view.can.cases, "case pages")
    if step not in STEPS:
        raise NotFound(f"no step form {step!r}")
    if not may_record(view.user, step):
        raise Forbidden(f"role {view.user.role} may not record {step}")
    return case_pages.visible_case(session, actor=view.user, case_id=case_id)


@router.get("/cases/{case_id}/steps/{step}")
def step_page(case_id: Id, step: Step, view: ViewDep, session: SessionDep) -> HTMLResponse:
    """Record one step: scan the label, the time, and for thaw and infusion a second person."""
    case = step_case(session, view, case_id, step)
    return render_step(view, session, case, step)


def shipment_context(session: Any, case: Case, direction: str) -> dict[str, Any]:
    route = session.get(Route, case.route)
    if route is None:  # guaranteed by foreign keys
        raise RuntimeError("inconsistent data: route missing")
    inbound = direction == Direction.to_manufacturing.value
    origin, destination = (
        (case.site, route.manufacturing_site) if inbound else (route.manufacturing_site, case.site)
    )
    code, check = coi_parts(case.coi)
    return {
        "case": case,
        "direction": direction,
        "inbound": inbound,
        "origin": session.get(Site, origin),
        "destination": session.get(Site, destination),
        "profile": route.inbound_profile if inbound else route.outbound_profile,
        "couriers": catalogue.list_couriers(session),
        "kinds": CONTAINER_KINDS,
        "coi_code": code,
        "coi_check": check,
        "fits": case.status
        in (
            (CaseStatus.apheresis_scheduled.value, CaseStatus.collected.value)
            if inbound
            else (CaseStatus.in_manufacturing.value, CaseStatus.released.value)
        ),
    }


def render_shipment(
    view: View,
    session: Any,
    case: Case,
    direction: str,
    *,
    status: int = 200,
    error: str | None = None,
    **values: Any,
) -> HTMLResponse:
    return view.render(
        "forms/shipment.html",
        status=status,
        error=error,
        values=values,
        **shipment_context(session, case, direction),
    )


def shipment_case(session: Any, view: View, case_id: str, direction: str) -> Case:
    require(view.can.cases, "case pages")
    if not may_send(view.user, direction):
        raise Forbidden(f"role {view.user.role} may not create a {direction} shipment")
    return case_pages.visible_case(session, actor=view.user, case_id=case_id)


@router.get("/cases/{case_id}/shipments/new")
def shipment_page(
    case_id: Id, view: ViewDep, session: SessionDep, direction: DirectionQuery
) -> HTMLResponse:
    """Create a shipment: route, sites and profile from the case; courier, box and loggers."""
    case = shipment_case(session, view, case_id, direction)
    return render_shipment(view, session, case, direction)


def open_shipments(session: Any, principal: Principal) -> list[ShipmentSummary]:
    rows: list[ShipmentSummary] = []
    for state in (ShipmentStatus.in_transit, ShipmentStatus.created):
        rows += board.list_shipments(
            session,
            actor=principal,
            status=state,
            direction=None,
            case_id=None,
            after=None,
            limit=100,
        )[:100]
    return rows


@router.get("/courier")
def courier_list(view: ViewDep, session: SessionDep) -> HTMLResponse:
    """The courier's open shipments, biggest tap targets first: in transit, then to collect."""
    custodian(view)
    return view.render("forms/courier_list.html", rows=open_shipments(session, view.user))


def render_custody(
    view: View,
    session: Any,
    shipment_id: str,
    *,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    shipment = shipment_pages.visible_shipment(session, actor=view.user, shipment_id=shipment_id)
    case = session.get(Case, shipment.case_id)
    if case is None:  # guaranteed by foreign keys
        raise RuntimeError("inconsistent data: case missing")
    code, check = coi_parts(case.coi)
    origin = session.get(Site, shipment.origin)
    destination = session.get(Site, shipment.destination)
    return view.render(
        "forms/courier.html",
        status=status,
        error=error,
        shipment=shipment,
        origin=origin,
        destination=destination,
        coi_code=code,
        coi_check=check,
    )


@router.get("/courier/{shipment_id}")
def custody_page(shipment_id: Id, view: ViewDep, session: SessionDep) -> HTMLResponse:
    """Scan the label, then tap picked up, handoff or delivered (phone width)."""
    custodian(view)
    return render_custody(view, session, shipment_id)


@router.get("/factory")
def factory_board(view: ViewDep, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    """A factory's incoming material and its cases at the factory, each with its next step."""
    require(view.can.cases, "case pages")
    if Role(view.user.role) not in (Role.admin, Role.manufacturer):
        raise Forbidden("the inbound board is the factory's")
    key = settings.patient_hash_key.get_secret_value()
    stages = (
        CaseStatus.in_transit_to_manufacturing,
        CaseStatus.at_manufacturing,
        CaseStatus.in_manufacturing,
        CaseStatus.released,
    )
    cases: dict[str, list[Case]] = {}
    for stage in stages:
        cases[stage.value] = reads.list_cases(
            session,
            principal=view.user,
            where=CaseListQuery(status=stage),
            patient_key=key,
            after=None,
            limit=200,
        )[:200]
    incoming = {
        s.case_id: s
        for s in reversed(  # newest last, so the newest shipment of a case wins
            board.list_shipments(
                session,
                actor=view.user,
                status=None,
                direction=Direction.to_manufacturing,
                case_id=None,
                after=None,
                limit=200,
            )
        )
        if s.status in (ShipmentStatus.in_transit.value, ShipmentStatus.delivered.value)
    }
    actions = {
        c.id: next_actions(view.user, c, has_slot=False) for rows in cases.values() for c in rows
    }
    return view.render(
        "forms/factory.html",
        stages=[s.value for s in stages],
        cases=cases,
        incoming=incoming,
        actions=actions,
        parts={c.id: coi_parts(c.coi) for rows in cases.values() for c in rows},
    )
