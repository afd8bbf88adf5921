"""Shipments and their chain of custody."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, status
from sqlmodel import Session, select

from app.deps import (
    CurrentPrincipal,
    IdempotencyDep,
    NowDep,
    ScopedShipment,
    SessionDep,
    SettingsDep,
    committing,
    replay_response,
    require_roles,
)
from app.errors import NotFound
from app.services.access.scope import SHIPMENT_READERS, case_scope
from app.services.coldchain import engine as coldchain
from app.services.delays import routes
from app.services.shipments import lifecycle as shipments
from models.case import Case
from models.principal import Principal, Role
from models.reference import Profile
from models.shipment import (
    CustodyCreate,
    CustodyPublic,
    Shipment,
    ShipmentCreate,
    ShipmentPublic,
)

router = APIRouter(prefix="/shipments", tags=["shipments"])

Creator = Annotated[Principal, require_roles(Role.admin, Role.coordinator, Role.manufacturer)]
Reader = Annotated[Principal, require_roles(*SHIPMENT_READERS)]
Custodian = Annotated[
    Principal, require_roles(Role.admin, Role.courier, Role.coordinator, Role.manufacturer)
]


def _public(session: Session, shipment: Shipment, now: datetime) -> dict[str, Any]:
    case = session.get(Case, shipment.case_id)
    profile = session.get(Profile, shipment.profile)
    if case is None or profile is None:  # guaranteed by foreign keys and state
        raise RuntimeError("inconsistent data: case, profile missing")
    model = routes.load_models(session)[case.route]
    return {
        **shipment.model_dump(),
        "coi": case.coi,
        "container": {
            "serial": shipment.container_serial,
            "kind": shipment.container_kind,
            "hold_time_h": shipment.hold_time_h,
        },
        "custody": shipments.custody_chain(session, shipment_id=shipment.id),
        "eta": routes.shipment_eta(session, shipment=shipment, model=model, now=now),
        "last_reading": coldchain.last_reading(session, shipment_id=shipment.id),
        "excursion_summary": coldchain.summary(session, shipment=shipment, profile=profile),
    }


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ShipmentPublic)
def create_shipment(
    body: ShipmentCreate,
    session: SessionDep,
    principal: Creator,
    now: NowDep,
    idem: IdempotencyDep,
) -> Any:
    """Create a shipment for a case (its origin's coordinator or factory)."""
    with committing(session):
        if (stored := idem.begin(session)) is not None:
            return replay_response(stored)
        case = session.exec(
            select(Case)
            .where(Case.id == body.case_id, case_scope(principal))
            .with_for_update(key_share=True)
        ).first()
        if case is None:
            raise NotFound("no such case")
        shipment = shipments.create(
            session,
            case=case,
            actor=principal,
            direction=body.direction,
            origin=body.origin,
            destination=body.destination,
            profile=body.profile,
            courier=body.courier,
            container_serial=body.container.serial,
            container_kind=body.container.kind,
            hold_time_h=body.container.hold_time_h,
            device_ids=body.device_ids,
            coi=body.coi,
            now=now,
        )
        out = ShipmentPublic.model_validate(_public(session, shipment, now))
        idem.finish(session, status_code=201, body=out.model_dump(mode="json"))
    return out


@router.get("/{shipment_id}", response_model=ShipmentPublic)
def get_shipment(
    _principal: Reader, shipment: ScopedShipment, session: SessionDep, now: NowDep
) -> Any:
    """One shipment with its chain of custody, ETA, last reading and excursion summary."""
    return _public(session, shipment, now)


@router.post(
    "/{shipment_id}/custody", status_code=status.HTTP_201_CREATED, response_model=CustodyPublic
)
def record_custody(
    principal: Custodian,
    body: CustodyCreate,
    shipment: ScopedShipment,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    idem: IdempotencyDep,
) -> Any:
    """Record a custody scan: picked_up starts transit, delivered ends it."""
    with committing(session):
        if (stored := idem.begin(session)) is not None:
            return replay_response(stored)
        case = session.exec(
            select(Case).where(Case.id == shipment.case_id).with_for_update(key_share=True)
        ).one()
        event = shipments.record_custody(
            session,
            shipment=shipment,
            case=case,
            actor=principal,
            action=body.action,
            occurred_at=body.occurred_at,
            from_party=body.from_party,
            to_party=body.to_party,
            coi=body.coi,
            lat=body.lat,
            lon=body.lon,
            now=now,
            future_tolerance_s=settings.future_tolerance_s,
        )
        out = CustodyPublic.model_validate(event)
        idem.finish(session, status_code=201, body=out.model_dump(mode="json"))
    return out


__all__ = ["router", "CurrentPrincipal"]
