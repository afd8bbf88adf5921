"""Free manufacturing positions per local day at a factory, for planners."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session

from app.errors import Invalid, NotFound
from app.services.access.scope import factory_in_scope
from app.services.capacity import slots
from models.capacity import Availability
from models.principal import Principal
from models.reference import Site

MAX_DAYS = 366
DEFAULT_DAYS = 14
MAX_YEARS_AWAY = 10


def factory_days(
    session: Session,
    *,
    actor: Principal,
    site: str,
    start: date | None,
    end: date | None,
    now: datetime,
) -> Availability:
    """Capacity, peak booked and free positions per local day (two weeks from today by default).

    Only counts: the bookings behind them may be other hospitals' cases. A factory outside
    the caller's routes is a 404 exactly like an unknown one.
    """
    row = session.get(Site, site)
    if row is None:
        raise NotFound("no such factory")
    if row.kind != "manufacturing":
        raise Invalid(
            f"{site} is not a manufacturing site",
            errors=[{"loc": "query/site", "msg": "not a factory"}],
        )
    if not factory_in_scope(session, principal=actor, code=row.code):
        raise NotFound("no such factory")
    today = datetime.astimezone(now, ZoneInfo(row.timezone)).date()
    for loc, day in (("query/from", start), ("query/to", end)):
        # Checked before any date arithmetic: 9999-12-20 plus two weeks is no date at all.
        if day is not None and abs((day - today).days) > MAX_YEARS_AWAY * 366:
            raise Invalid(
                f"dates must be within {MAX_YEARS_AWAY} years of today",
                errors=[{"loc": loc, "msg": "out of range"}],
            )
    start = start or today
    end = end or start + timedelta(days=DEFAULT_DAYS - 1)
    if end < start:
        raise Invalid("to is before from", errors=[{"loc": "query/to", "msg": "before from"}])
    if (end - start).days >= MAX_DAYS:
        raise Invalid(
            f"at most {MAX_DAYS} days per request",
            errors=[{"loc": "query/to", "msg": "range too long"}],
        )
    return Availability.model_validate(
        {
            "site": row.code,
            "timezone": row.timezone,
            "days": slots.availability(session, site=row, start=start, end=end),
        }
    )
