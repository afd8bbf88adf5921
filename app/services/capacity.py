"""Manufacturing slots. The seam where factory capacity is enforced.

A case reserves the manufacturing position its material will need from its predicted
arrival at the factory (apheresis + the route's inbound legs) for the product's process time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from models.case import Case, Slot
from models.reference import Product, Route, RouteLeg


def predicted_arrival(session: Session, *, route: Route, apheresis_at: datetime) -> datetime:
    inbound_h = sum(
        leg.expected_h
        for leg in session.exec(
            select(RouteLeg).where(
                RouteLeg.route_code == route.code, RouteLeg.direction == "inbound"
            )
        )
    )
    return apheresis_at + timedelta(hours=inbound_h)


def reserve_slot(session: Session, *, case: Case, apheresis_at: datetime) -> Slot:
    route = session.get(Route, case.route)
    product = session.get(Product, case.product)
    assert route is not None and product is not None
    start = predicted_arrival(session, route=route, apheresis_at=apheresis_at)
    slot = Slot(
        case_id=case.id,
        site=route.manufacturing_site,
        start_at=start,
        end_at=start + timedelta(hours=product.process_h),
    )
    session.add(slot)
    session.flush()
    return slot


def release_slots(session: Session, *, case: Case) -> None:
    for slot in session.exec(
        select(Slot).where(Slot.case_id == case.id, Slot.status == "reserved")
    ):
        slot.status = "released"
        session.add(slot)
    session.flush()


def current_slot(session: Session, *, case_id: str) -> Slot | None:
    return session.exec(
        select(Slot)
        .where(Slot.case_id == case_id, Slot.status == "reserved")
        .order_by(col(Slot.id).desc())
    ).first()
