"""A shipment as its readers see it: custody, ETA, last reading and excursion summary."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from app.services.coldchain import engine as coldchain
from app.services.delays import routes
from app.services.shipments.lifecycle import custody_chain
from models.case import Case
from models.reference import Profile
from models.shipment import Shipment, ShipmentPublic


def detail(session: Session, *, shipment: Shipment, now: datetime) -> ShipmentPublic:
    """One shipment with its chain of custody, ETA, last reading and excursion summary."""
    case = session.get(Case, shipment.case_id)
    profile = session.get(Profile, shipment.profile)
    if case is None or profile is None:  # guaranteed by foreign keys and state
        raise RuntimeError("inconsistent data: case, profile missing")
    model = routes.load_model(session, case.route)
    return ShipmentPublic.model_validate(
        {
            **shipment.model_dump(),
            "coi": case.coi,
            "container": {
                "serial": shipment.container_serial,
                "kind": shipment.container_kind,
                "hold_time_h": shipment.hold_time_h,
            },
            "custody": custody_chain(session, shipment_id=shipment.id),
            "eta": routes.shipment_eta(session, shipment=shipment, model=model, now=now),
            "last_reading": coldchain.last_reading(session, shipment_id=shipment.id),
            "excursion_summary": coldchain.summary(session, shipment=shipment, profile=profile),
        }
    )
