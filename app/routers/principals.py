"""Principals: the caller itself, and API keys managed by admins."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, status
from sqlmodel import col, select

from app.deps import (
    CurrentPrincipal,
    NowDep,
    SessionDep,
    SettingsDep,
    committing,
    require_roles,
)
from app.services.access import principals
from app.services.audit import chain as audit
from models.base import Page
from models.principal import Principal, PrincipalCreate, PrincipalCreated, PrincipalPublic, Role

router = APIRouter(tags=["principals"])
Admin = Annotated[Principal, require_roles(Role.admin)]


@router.get("/me", response_model=PrincipalPublic)
def me(principal: CurrentPrincipal) -> Any:
    """The caller: name, role and scope."""
    return principal


@router.get("/principals", response_model=Page[PrincipalPublic])
def list_principals(session: SessionDep, _admin: Admin) -> Any:
    """All principals (keys are never shown again)."""
    return {"items": session.exec(select(Principal).order_by(col(Principal.created_at))).all()}


@router.post("/principals", status_code=status.HTTP_201_CREATED, response_model=PrincipalCreated)
def create_principal(
    body: PrincipalCreate, session: SessionDep, admin: Admin, settings: SettingsDep, now: NowDep
) -> Any:
    """Create a principal; the response carries its API key, shown this once only."""
    with committing(session):
        principal, api_key = principals.create_principal(
            session,
            name=body.name,
            role=body.role,
            site=body.site,
            courier=body.courier,
            device_id=body.device_id,
            secret_key=settings.secret_key.get_secret_value(),
        )
        audit.append(
            session,
            actor=admin,
            action="principal.created",
            entity="principal",
            entity_id=principal.id,
            at=now,
            after={
                "name": principal.name,
                "role": principal.role,
                "site": principal.site,
                "courier": principal.courier,
            },
        )
        out = PrincipalCreated.model_validate({**principal.model_dump(), "api_key": api_key})
    return out
