"""Principals: the caller itself, and API keys managed by admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from app.deps import CurrentPrincipal, NowDep, SessionDep, SettingsDep, committing, require_roles
from app.services.access import lifecycle, principals
from models.base import Page
from models.principal import (
    KeyChange,
    Principal,
    PrincipalCreate,
    PrincipalCreated,
    PrincipalPublic,
    Role,
)

router = APIRouter(tags=["principals"])
Admin = Annotated[Principal, require_roles(Role.admin)]
PrincipalId = Annotated[str, Path(max_length=32)]


@router.get("/me", response_model=PrincipalPublic)
def me(principal: CurrentPrincipal) -> PrincipalPublic:
    """The caller: name, role and scope."""
    return PrincipalPublic.model_validate(principal, from_attributes=True)


@router.get("/principals", response_model=Page[PrincipalPublic])
def list_principals(session: SessionDep, _admin: Admin) -> Page[PrincipalPublic]:
    """All principals (keys are never shown again)."""
    rows = principals.list_all(session)
    return Page(items=[PrincipalPublic.model_validate(p, from_attributes=True) for p in rows])


@router.post("/principals", status_code=status.HTTP_201_CREATED, response_model=PrincipalCreated)
def create_principal(
    body: PrincipalCreate, session: SessionDep, admin: Admin, settings: SettingsDep, now: NowDep
) -> PrincipalCreated:
    """Create a principal; the response carries its API key, shown this once only."""
    with committing(session):
        principal, api_key = principals.issue(
            session,
            actor=admin,
            name=body.name,
            role=body.role,
            site=body.site,
            courier=body.courier,
            device_id=body.device_id,
            secret_key=settings.secret_key.get_secret_value(),
            now=now,
        )
        out = PrincipalCreated.model_validate({**principal.model_dump(), "api_key": api_key})
    return out


@router.post("/principals/{principal_id}/revoke", response_model=PrincipalPublic)
def revoke_principal(
    principal_id: PrincipalId,
    session: SessionDep,
    admin: Admin,
    now: NowDep,
    body: KeyChange | None = None,
) -> PrincipalPublic:
    """Revoke a key: its next call is 401 and its dashboard sessions end (409 if revoked)."""
    with committing(session):
        principal = lifecycle.revoke(
            session,
            actor=admin,
            principal_id=principal_id,
            now=now,
            reason=body.reason if body else None,
        )
        out = PrincipalPublic.model_validate(principal, from_attributes=True)
    return out


@router.post(
    "/principals/{principal_id}/rotate-key",
    status_code=status.HTTP_201_CREATED,
    response_model=PrincipalCreated,
)
def rotate_key(
    principal_id: PrincipalId,
    session: SessionDep,
    admin: Admin,
    settings: SettingsDep,
    now: NowDep,
    body: KeyChange | None = None,
) -> PrincipalCreated:
    """Replace a key: the new one is shown this once; the old one stops working now."""
    # No Idempotency-Key replay here: it would have to store the new key to answer again.
    with committing(session):
        principal, api_key = lifecycle.rotate_key(
            session,
            actor=admin,
            principal_id=principal_id,
            secret_key=settings.secret_key.get_secret_value(),
            now=now,
            reason=body.reason if body else None,
        )
        out = PrincipalCreated.model_validate({**principal.model_dump(), "api_key": api_key})
    return out
