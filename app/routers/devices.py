"""Data loggers, registered by the courier organisation that owns them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response, status

from app.deps import NowDep, SessionDep, committing, require_roles
from app.services.shipments import devices
from models.principal import Principal, Role
from models.shipment import DeviceCreate, DevicePublic

router = APIRouter(prefix="/devices", tags=["shipments"])

Registrar = Annotated[Principal, require_roles(Role.admin, Role.courier)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DevicePublic)
def register_device(
    body: DeviceCreate, session: SessionDep, principal: Registrar, now: NowDep, response: Response
) -> DevicePublic:
    """Register a logger for the caller's courier organisation (201; 200 if already yours)."""
    with committing(session):
        device, created = devices.register(
            session, actor=principal, device_id=body.device_id, courier=body.courier, now=now
        )
        out = DevicePublic.model_validate(device)
    if not created:
        response.status_code = status.HTTP_200_OK
    return out
