"""A case as FHIR R5: reading it into the snapshot ``integrations.fhir`` maps to resources."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.services.identity.coi import check_char
from app.services.journey import cases
from integrations.fhir import Place, Snapshot, export
from models.case import Case
from models.reference import Product, Profile, Route, Site
from models.shipment import Direction, Shipment


def _place(session: Session, code: str) -> Place:
    site = session.get(Site, code)
    return Place(code=code, name=site.name if site is not None else code)


def _snapshot(session: Session, *, case: Case) -> Snapshot:
    """The case, its product, factory, outbound storage range and latest-cycle milestones."""
    route = session.get(Route, case.route)
    product = session.get(Product, case.product)
    if route is None or product is None:  # guaranteed by foreign keys
        raise RuntimeError("inconsistent data: route or product missing")
    # The outbound shipment's profile when one exists (what the frozen product travels in),
    # otherwise the route's outbound profile.
    outbound = session.exec(
        select(Shipment.profile)
        .where(Shipment.case_id == case.id, Shipment.direction == Direction.to_site.value)
        .order_by(col(Shipment.created_at).desc())
    ).first()
    profile = session.get(Profile, outbound or route.outbound_profile)
    if profile is None:  # guaranteed by foreign keys
        raise RuntimeError("inconsistent data: profile missing")
    at: dict[str, datetime] = {}
    for milestone in cases.milestones(session, case_id=case.id):
        if milestone.cycle == case.cycle and milestone.status != "voided":
            at[milestone.type] = milestone.occurred_at
    return Snapshot(
        case_id=case.id,
        coi=case.coi,
        status=case.status,
        cycle=case.cycle,
        product_code=product.code,
        product_name=product.name,
        thaw_expiry_min=product.thaw_expiry_min,
        factory=_place(session, route.manufacturing_site),
        treatment_site=_place(session, case.site),
        storage_min_c=profile.min_c,
        storage_max_c=profile.max_c,
        milestones=at,
        coi_check_char=check_char(case.coi),
    )


def export_case(session: Session, *, case: Case, base_url: str, now: datetime) -> dict[str, Any]:
    """FHIR R5 JSON for the case: its product, or a Bundle with the dispense once infused."""
    return export(_snapshot(session, case=case), base_url=base_url.rstrip("/"), now=now)
