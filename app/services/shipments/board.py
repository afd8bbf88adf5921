"""The caller's shipments as a list, and cancelling one that has not left."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_
from sqlmodel import Session, col, select

from app.errors import Conflict, Forbidden
from app.services.access.scope import shipment_scope
from app.services.audit import chain as audit
from app.services.shipments import delivery
from app.services.shipments.lifecycle import SENDERS
from models.case import Case
from models.principal import Principal, Role
from models.shipment import Direction, Shipment, ShipmentStatus, ShipmentSummary

St = ShipmentStatus


def list_shipments(
    session: Session,
    *,
    actor: Principal,
    status: ShipmentStatus | None,
    direction: Direction | None,
    case_id: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[ShipmentSummary]:
    """The shipments the caller may see, newest first, after a keyset; one row beyond
    ``limit`` tells the caller that another page follows."""
    stmt = (
        select(Shipment, Case.coi)
        .join(Case, col(Case.id) == col(Shipment.case_id))
        .where(shipment_scope(actor))
    )
    if status is not None:
        stmt = stmt.where(Shipment.status == status.value)
    if direction is not None:
        stmt = stmt.where(Shipment.direction == direction.value)
    if case_id is not None:
        stmt = stmt.where(Shipment.case_id == case_id)
    if after is not None:
        created_at, shipment_id = after
        stmt = stmt.where(
            or_(
                col(Shipment.created_at) < created_at,
                (col(Shipment.created_at) == created_at) & (col(Shipment.id) < shipment_id),
            )
        )
    order = (col(Shipment.created_at).desc(), col(Shipment.id).desc())
    rows = session.exec(stmt.order_by(*order).limit(limit + 1)).all()
    return [ShipmentSummary.model_validate({**s.model_dump(), "coi": coi}) for s, coi in rows]


def cancel(
    session: Session, *, shipment: Shipment, actor: Principal, reason: str, now: datetime
) -> Shipment:
    """Cancel a shipment before pickup (its origin's sender or an admin); frees its loggers."""
    if Role(actor.role) not in SENDERS[Direction(shipment.direction)]:
        raise Forbidden(f"only the sender of this shipment may cancel it, not a {actor.role}")
    if shipment.status != St.created:
        code = {
            St.in_transit.value: "shipment-in-transit",
            St.delivered.value: "shipment-delivered",
        }.get(shipment.status, "shipment-cancelled")
        raise Conflict(
            f"a shipment can be cancelled only before pickup; this one is {shipment.status}",
            code=code,
            extra={"current_status": shipment.status},
        )
    shipment.status = St.cancelled.value
    shipment.cancelled_at = now
    shipment.cancel_reason = reason
    session.add(shipment)
    delivery.end_transit(session, shipment=shipment, at=now, now=now)
    audit.append(
        session,
        actor=actor,
        action="shipment.cancelled",
        entity="shipment",
        entity_id=shipment.id,
        at=now,
        before={"shipment_status": St.created.value},
        after={"shipment_status": shipment.status, "device_ids": shipment.device_ids},
        reason=reason,
    )
    return shipment
