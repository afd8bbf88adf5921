"""The end of a shipment: its loggers are freed and the alerts about its transit close.

A shipment ends with the courier's ``delivered`` scan, or, when the courier skipped it, with
the receipt milestone at the factory or the site: the material is in the receiver's hands,
so the transit's loss-of-signal, hold-time and fresh-stability alerts no longer apply and
the logger may ride again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from app.services.alerts import lifecycle as alerts
from app.services.audit import chain as audit
from models.alert import Alert, AlertKind, AlertStatus
from models.case import Case
from models.principal import Principal
from models.shipment import CustodyAction, CustodyEvent, DeviceAssignment, Direction, Shipment
from models.shipment import ShipmentStatus as St

# Alerts whose condition is the transit itself (hold time covers fresh stability too).
TRANSIT_ALERTS = (AlertKind.loss_of_signal.value, AlertKind.hold_time_at_risk.value)
RECEIPTS = {
    "received_at_manufacturing": Direction.to_manufacturing,
    "received_at_site": Direction.to_site,
}


# What a delivery ends, asked with every delivery scan: built once (see ``end_transit``).
_OPEN_ASSIGNMENTS = select(DeviceAssignment).where(
    DeviceAssignment.shipment_id == bindparam("shipment_id"),
    col(DeviceAssignment.assigned_until).is_(None),
)
_OPEN_TRANSIT_ALERTS = select(Alert).where(
    Alert.shipment_id == bindparam("shipment_id"),
    col(Alert.kind).in_(TRANSIT_ALERTS),
    col(Alert.status) != AlertStatus.resolved.value,
)


_IN_TRANSIT = (
    select(Shipment)
    .where(
        Shipment.case_id == bindparam("case_id"),
        Shipment.direction == bindparam("direction"),
        Shipment.status == St.in_transit.value,
    )
    .with_for_update(key_share=True)
)


def end_transit(session: Session, *, shipment: Shipment, at: datetime, now: datetime) -> list[int]:
    """End the shipment's device assignments at ``at`` and resolve its transit alerts."""
    params = {"shipment_id": shipment.id}
    for assignment in session.exec(_OPEN_ASSIGNMENTS, params=params):
        assignment.assigned_until = max(at, assignment.assigned_from)
        session.add(assignment)
    resolved: list[int] = []
    for alert in session.exec(_OPEN_TRANSIT_ALERTS, params=params):
        alerts.resolve(session, alert=alert, now=now)
        alert.resolve_reason = alert.resolve_reason or "shipment delivered"
        session.add(alert)
        if alert.id is not None:
            resolved.append(alert.id)
    session.flush()
    return resolved


def on_receipt(
    session: Session,
    *,
    case: Case,
    actor: Principal,
    event_type: str,
    occurred_at: datetime,
    now: datetime,
) -> Shipment | None:
    """After a receipt milestone: deliver the case's shipment still in transit, if any.

    The delivery is dated at the receipt and written to the custody chain as the system's,
    so the record shows that no courier scanned it.
    """
    direction = RECEIPTS.get(event_type)
    if direction is None:
        return None
    shipment = session.exec(
        _IN_TRANSIT, params={"case_id": case.id, "direction": direction.value}
    ).first()
    if shipment is None:
        return None
    at = max(occurred_at, shipment.picked_up_at or occurred_at)
    shipment.status = St.delivered.value
    shipment.delivered_at = at
    session.add(shipment)
    session.add(
        CustodyEvent(
            shipment_id=shipment.id,
            action=CustodyAction.delivered.value,
            occurred_at=at,
            recorded_at=now,
            from_party=shipment.courier,
            to_party=shipment.destination,
            actor="system",
            data={"source": event_type, "recorded_by": actor.id},
        )
    )
    resolved = end_transit(session, shipment=shipment, at=at, now=now)
    audit.append(
        session,
        actor=actor,
        action="shipment.delivered",
        entity="shipment",
        entity_id=shipment.id,
        at=now,
        before={"shipment_status": St.in_transit.value},
        after={
            "shipment_status": shipment.status,
            "delivered_at": at,
            "resolved_alerts": resolved,
        },
        reason=f"{event_type} recorded without the courier's delivery scan",
    )
    return shipment
