"""Factory capacity: free manufacturing positions per day."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query

from app.deps import CurrentPrincipal, NowDep, SessionDep
from app.errors import Invalid, NotFound
from app.services.capacity import slots as capacity
from models.base import ResponseModel
from models.reference import Site

router = APIRouter(prefix="/slots", tags=["capacity"])
MAX_DAYS = 366


class Day(ResponseModel):
    date: date
    capacity: int
    booked: int
    free: int


class Availability(ResponseModel):
    site: str
    timezone: str
    days: list[Day]


@router.get("/availability", response_model=Availability)
def availability(
    _principal: CurrentPrincipal,
    session: SessionDep,
    now: NowDep,
    site: Annotated[str, Query(max_length=32)],
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
) -> Any:
    """Manufacturing positions per local day at a factory: capacity, peak booked, free."""
    row = session.get(Site, site)
    if row is None:
        raise NotFound(f"no site {site!r}")
    if row.kind != "manufacturing":
        raise Invalid(
            f"{site} is not a manufacturing site",
            errors=[{"loc": "query/site", "msg": "not a factory"}],
        )
    today = datetime.astimezone(now, ZoneInfo(row.timezone)).date()
    start = from_ or today
    end = to or start + timedelta(days=13)
    if end < start:
        raise Invalid("to is before from", errors=[{"loc": "query/to", "msg": "before from"}])
    if (end - start).days >= MAX_DAYS:
        raise Invalid(
            f"at most {MAX_DAYS} days per request",
            errors=[{"loc": "query/to", "msg": "range too long"}],
        )
    return {
        "site": row.code,
        "timezone": row.timezone,
        "days": capacity.availability(session, site=row, start=start, end=end),
    }
