"""A shipment as its readers see it: custody, ETA, last reading and excursion summary."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.services.coldchain import engine as coldchain
from app.services.delays import routes
from app.services.shipments.lifecycle import custody_chain
from models.case import Case
from models.reference import Profile
from models.shipment import Shipment, ShipmentPublic, ShipmentStatus


def detail(session: Session, *, shipment: Shipment, now: datetime) -> ShipmentPublic:
    """One shipment with its chain of custody, ETA, last reading and excursion summary."""
    case = session.get(Case, shipment.case_id)
    profile = session.get(Profile, shipment.profile)
    if case is None or profile is None:  # guaranteed by foreign keys and state
        raise RuntimeError("inconsistent data: case, profile missing")
    model = routes.load_model(session, case.route)
    return _public(
        shipment,
        coi=case.coi,
        custody=custody_chain(session, shipment_id=shipment.id),
        eta=routes.shipment_eta(session, shipment=shipment, model=model, now=now),
        last_reading=coldchain.last_reading(session, shipment_id=shipment.id),
        excursion_summary=coldchain.summary(session, shipment=shipment, profile=profile),
    )


def created(session: Session, *, shipment: Shipment) -> ShipmentPublic:
    """``detail`` of a shipment created in this transaction, its case already loaded (locked
    by the creation): nothing else is read. No scan, reading or excursion can reach a
    shipment before the transaction that creates it commits, and one not picked up has no
    ETA."""
    if shipment.status != ShipmentStatus.created or shipment.picked_up_at is not None:
        raise ValueError(f"shipment {shipment.id} is not newly created")
    case = session.get(Case, shipment.case_id)
    if case is None:  # guaranteed by the foreign key
        raise RuntimeError(f"inconsistent data: case {shipment.case_id} missing")
    return _public(
        shipment,
        coi=case.coi,
        custody=[],
        eta=None,
        last_reading=None,
        excursion_summary=coldchain.nothing_recorded(),
    )


def _public(shipment: Shipment, **parts: Any) -> ShipmentPublic:
    return ShipmentPublic.model_validate(
        {
            **shipment.model_dump(),
            "container": {
                "serial": shipment.container_serial,
                "kind": shipment.container_kind,
                "hold_time_h": shipment.hold_time_h,
            },
            **parts,
        }
    )
