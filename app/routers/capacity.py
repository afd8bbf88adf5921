"""Factory capacity: free manufacturing positions per day."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import NowDep, SessionDep, require_roles
from app.services.access.scope import CAPACITY_PLANNERS
from app.services.capacity import availability as capacity
from models.capacity import Availability
from models.principal import Principal

router = APIRouter(prefix="/slots", tags=["capacity"])
Planner = Annotated[Principal, require_roles(*CAPACITY_PLANNERS)]


@router.get("/availability", response_model=Availability)
def availability(
    principal: Planner,
    session: SessionDep,
    now: NowDep,
    site: Annotated[str, Query(max_length=32)],
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
) -> Availability:
    """Positions per local day at a factory of the caller's routes: capacity, booked, free."""
    return capacity.factory_days(session, actor=principal, site=site, start=from_, end=to, now=now)
