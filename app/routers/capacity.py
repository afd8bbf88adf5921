"""Factory capacity: free manufacturing positions per day."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import CurrentPrincipal, NowDep, SessionDep
from app.services.capacity import availability as capacity
from models.capacity import Availability

router = APIRouter(prefix="/slots", tags=["capacity"])


@router.get("/availability", response_model=Availability)
def availability(
    _principal: CurrentPrincipal,
    session: SessionDep,
    now: NowDep,
    site: Annotated[str, Query(max_length=32)],
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
) -> Availability:
    """Manufacturing positions per local day at a factory: capacity, peak booked, free."""
    return capacity.factory_days(session, site=site, start=from_, end=to, now=now)
