"""On-call rotas per site (admin): who hears about a critical alert nobody acknowledges."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.deps import NowDep, SessionDep, committing, require_roles
from app.services.notifications import escalation
from models.notification import OnCallIn, OnCallPublic
from models.principal import Principal, Role

router = APIRouter(tags=["notifications"])
Admin = Annotated[Principal, require_roles(Role.admin)]
CodePath = Annotated[str, Path(min_length=1, max_length=32)]


@router.get("/sites/{code}/on-call", response_model=OnCallPublic)
def get_on_call(code: CodePath, session: SessionDep, _admin: Admin) -> OnCallPublic:
    """A site's escalation rota (empty when none is set)."""
    rota = escalation.get_on_call(session, site=code)
    return OnCallPublic.model_validate(rota) if rota else OnCallPublic(site=code, steps=[])


@router.put("/sites/{code}/on-call", response_model=OnCallPublic)
def set_on_call(
    code: CodePath, body: OnCallIn, session: SessionDep, admin: Admin, now: NowDep
) -> OnCallPublic:
    """Replace a site's rota: step 0 is paged when a critical alert opens; each next step
    when the previous one has not acknowledged within its `after_min`; then QA and admins."""
    with committing(session):
        rota = escalation.set_on_call(session, actor=admin, site=code, steps=body.steps, now=now)
        out = OnCallPublic.model_validate(rota)
    return out
