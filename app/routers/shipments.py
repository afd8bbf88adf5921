"""Shipments and their chain of custody."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse

from app.deps import (
    IdempotencyDep,
    NowDep,
    ScopedShipment,
    SessionDep,
    SettingsDep,
    committing,
    created_once,
    require_roles,
)
from app.pagination import CursorQuery, LimitQuery, page_of, time_cursor
from app.services.access.scope import SHIPMENT_READERS
from app.services.shipments import board, views
from app.services.shipments import lifecycle as shipments
from models.base import Page
from models.principal import Principal, Role
from models.shipment import (
    CustodyCreate,
    CustodyPublic,
    Direction,
    ShipmentCancel,
    ShipmentCreate,
    ShipmentPublic,
    ShipmentStatus,
    ShipmentSummary,
)

router = APIRouter(prefix="/shipments", tags=["shipments"])

Creator = Annotated[Principal, require_roles(Role.admin, Role.coordinator, Role.manufacturer)]
Reader = Annotated[Principal, require_roles(*SHIPMENT_READERS)]
Custodian = Annotated[
    Principal, require_roles(Role.admin, Role.courier, Role.coordinator, Role.manufacturer)
]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ShipmentPublic)
def create_shipment(
    body: ShipmentCreate,
    session: SessionDep,
    principal: Creator,
    now: NowDep,
    idem: IdempotencyDep,
) -> ShipmentPublic | JSONResponse:
    """Create a shipment for a case (its origin's coordinator or factory)."""

    def create() -> ShipmentPublic:
        shipment = shipments.create_requested(session, actor=principal, request=body, now=now)
        return views.created(session, shipment=shipment)

    return created_once(session, idem, create)


@router.get("", response_model=Page[ShipmentSummary])
def list_shipments(
    session: SessionDep,
    principal: Reader,
    state: Annotated[ShipmentStatus | None, Query(alias="status")] = None,
    direction: Direction | None = None,
    case_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[ShipmentSummary]:
    """The caller's shipments, newest first (a courier's organisation's, a site's own)."""
    rows = board.list_shipments(
        session,
        actor=principal,
        status=state,
        direction=direction,
        case_id=case_id,
        after=time_cursor(cursor),
        limit=limit,
    )
    items, next_cursor = page_of(rows, limit, lambda s: (s.created_at.isoformat(), s.id))
    return Page(items=items, next_cursor=next_cursor)


@router.get("/{shipment_id}", response_model=ShipmentPublic)
def get_shipment(
    shipment: ScopedShipment, _principal: Reader, session: SessionDep, now: NowDep
) -> ShipmentPublic:
    """One shipment with its chain of custody, ETA, last reading and excursion summary."""
    return views.detail(session, shipment=shipment, now=now)


@router.post(
    "/{shipment_id}/custody", status_code=status.HTTP_201_CREATED, response_model=CustodyPublic
)
def record_custody(
    shipment: ScopedShipment,
    principal: Custodian,
    body: CustodyCreate,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    idem: IdempotencyDep,
) -> CustodyPublic | JSONResponse:
    """Record a custody scan: picked_up starts transit, delivered ends it."""

    def record() -> CustodyPublic:
        event = shipments.record_custody(
            session,
            shipment=shipment,
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
        return CustodyPublic.model_validate(event)

    return created_once(session, idem, record)


@router.post("/{shipment_id}/cancel", response_model=ShipmentPublic)
def cancel_shipment(
    shipment: ScopedShipment,
    principal: Creator,
    body: ShipmentCancel,
    session: SessionDep,
    now: NowDep,
) -> ShipmentPublic:
    """Cancel a shipment before pickup, with a reason (its sender or an admin)."""
    with committing(session):
        board.cancel(session, shipment=shipment, actor=principal, reason=body.reason, now=now)
        out = views.detail(session, shipment=shipment, now=now)
    return out
