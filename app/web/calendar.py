"""Booking apheresis on a calendar of the route factory's free manufacturing positions.

A day shows the fewest free positions over every factory day its material could occupy
(arrival after the route's inbound legs, then the product's process time): a day shown
free has room whatever the hour, a full day cannot be picked (its radio is disabled and
the action refuses it too). The booking itself is the API's use case, ``events.schedule``;
its 409 ``factory-full`` comes back with ``next_available_at``, offered as a button.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, get_day_names
from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.deps import NowDep, SessionDep, committing
from app.errors import AppError, Forbidden
from app.services.access.scope import scoped_case
from app.services.capacity import availability
from app.services.capacity import slots as capacity
from app.services.journey import events
from app.services.journey import pages as case_pages
from app.web import auth
from app.web.render import View, ViewDep, WebRoute
from app.web.roles import require
from app.web.workspace import Csrf, Field, coi_parts, message_of, parse_day_time
from models.case import Case, CaseStatus
from models.principal import Role
from models.reference import Product, Route, Site

router = APIRouter(route_class=WebRoute, include_in_schema=False)
Id = Annotated[str, Path(max_length=64)]
WEEKS = 4
BOOKABLE = (CaseStatus.registered.value, CaseStatus.apheresis_scheduled.value)


@dataclass(frozen=True)
class Cell:
    day: date
    free: int
    capacity: int
    state: str  # past | full | free | outside (beyond the factory's horizon)

    @property
    def disabled(self) -> bool:
        return self.state != "free"


def _planners(view: View) -> None:
    require(view.can.cases, "case pages")
    if Role(view.user.role) not in (Role.admin, Role.coordinator):
        raise Forbidden("only the hospital's coordinators book apheresis")


def grid(session: Any, view: View, case: Case, *, start: date | None) -> dict[str, Any]:
    """Four weeks from the Monday of ``start``'s week, one cell per day."""
    route = session.get(Route, case.route)
    product = session.get(Product, case.product)
    site = session.get(Site, case.site)
    if route is None or product is None or site is None:  # guaranteed by foreign keys
        raise RuntimeError("inconsistent data: route, product or site missing")
    factory = session.get(Site, route.manufacturing_site)
    if factory is None:
        raise RuntimeError("inconsistent data: factory missing")
    zone, fzone = ZoneInfo(site.timezone), ZoneInfo(factory.timezone)
    today = view.now.astimezone(zone).date()
    first = (start or today) - timedelta(days=(start or today).weekday())
    days = [first + timedelta(days=i) for i in range(7 * WEEKS)]
    inbound = timedelta(hours=capacity.inbound_hours(session, route=route))
    process = timedelta(hours=product.process_h)

    def window(day: date) -> tuple[date, date]:
        lo = datetime.combine(day, time(), zone) + inbound
        hi = datetime.combine(day + timedelta(days=1), time(), zone) + inbound + process
        return lo.astimezone(fzone).date(), (hi - timedelta(seconds=1)).astimezone(fzone).date()

    lo, hi = window(days[0])[0], window(days[-1])[1]
    found = availability.factory_days(
        session, actor=view.user, site=factory.code, start=lo, end=hi, now=view.now
    )
    free = {d.date: d for d in found.days}
    cells = []
    for day in days:
        a, b = window(day)
        span = [free[a + timedelta(days=i)] for i in range((b - a).days + 1)]
        least = min(d.free for d in span)
        cap = span[0].capacity
        state = "past" if day < today else "full" if least <= 0 else "free"
        cells.append(Cell(day, least, cap, state))
    lang = view.lang
    names = get_day_names("abbreviated", locale=lang.code)
    return {
        "factory": factory,
        "site": site,
        "today": today,
        "weeks": [cells[i : i + 7] for i in range(0, len(cells), 7)],
        "weekdays": [names[i] for i in range(7)],
        "cells": {c.day.isoformat(): c for c in cells},
        "prev": (first - timedelta(days=7 * WEEKS)).isoformat() if first > today else None,
        "next": (first + timedelta(days=7 * WEEKS)).isoformat(),
        "period": f"{format_date(days[0], 'medium', locale=lang.code)} – "
        f"{format_date(days[-1], 'medium', locale=lang.code)}",
        "long_date": lambda d: format_date(d, "full", locale=lang.code),
        "inbound_h": inbound.total_seconds() / 3600,
        "process_d": product.process_h / 24,
    }


def _page(
    view: View,
    session: Any,
    case: Case,
    *,
    start: date | None,
    status: int = 200,
    error: str | None = None,
    offer: datetime | None = None,
    picked: str = "",
    clock: str = "09:00",
) -> HTMLResponse:
    data = grid(session, view, case, start=start)
    local = view.in_zone(data["site"].timezone)
    code, check = coi_parts(case.coi)
    slot = capacity.current_slot(session, case_id=case.id)
    return local.render(
        "forms/schedule.html",
        status=status,
        case=case,
        coi_code=code,
        coi_check=check,
        slot=slot,
        error=error,
        offer=offer,
        picked=picked,
        clock=clock,
        bookable=case.status in BOOKABLE,
        **data,
    )


@router.get("/cases/{case_id}/schedule")
def schedule_page(
    case_id: Id,
    view: ViewDep,
    session: SessionDep,
    start: Annotated[date | None, Query(alias="from")] = None,
) -> HTMLResponse:
    """The calendar: pick a day with free positions, then a time."""
    _planners(view)
    case = case_pages.visible_case(session, actor=view.user, case_id=case_id)
    return _page(view, session, case, start=start)


@router.post("/cases/{case_id}/schedule", response_model=None)
def schedule(
    case_id: Id,
    view: ViewDep,
    session: SessionDep,
    now: NowDep,
    csrf: Csrf = "",
    day: Field = "",
    clock: Field = "",
    apheresis_at: Field = "",
) -> Response:
    """Book the picked day and time (or the offered next available time) through the API's
    use case; a full day, a past day or a full factory is shown on the calendar."""
    auth.check_csrf(view.request, csrf)
    _planners(view)
    _ = view.lang.gettext
    case = scoped_case(session, principal=view.user, case_id=case_id, lock=True)
    site = session.get(Site, case.site)
    zone = ZoneInfo(site.timezone) if site else view.lang.zone
    picked: date | None = None
    when: datetime | None
    if apheresis_at:
        try:
            when = datetime.fromisoformat(apheresis_at.replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is not None and when.tzinfo is None:
            when = None
    else:
        when = parse_day_time(day, clock or "09:00", zone)
        picked = when.astimezone(zone).date() if when else None

    def again(error: str, status: int, offer: datetime | None = None) -> HTMLResponse:
        return _page(
            view,
            session,
            case,
            start=picked,
            status=status,
            error=error,
            offer=offer,
            picked=day,
            clock=clock or "09:00",
        )

    if when is None:
        return again(_("Pick a day on the calendar and a time."), 422)
    if picked is not None:
        cell = grid(session, view, case, start=picked)["cells"].get(picked.isoformat())
        if cell is None or cell.state == "past":
            return again(_("Pick a day from today on."), 422)
        if cell.state == "full":
            return again(_("That day is full at the factory: pick a day with free positions."), 409)
    try:
        with committing(session):
            booked = events.schedule(
                session, case=case, actor=view.user, apheresis_at=when, now=now
            )
    except AppError as exc:
        offer = None
        if exc.code == "factory-full" and "next_available_at" in exc.extra:
            offer = datetime.fromisoformat(
                str(exc.extra["next_available_at"]).replace("Z", "+00:00")
            )
        return again(message_of(exc, view.lang), exc.status, offer)
    local = view.in_zone(site.timezone) if site else view
    auth.flash(
        view.request,
        "ok",
        _(
            "Apheresis booked for %(when)s; manufacturing slot from %(start)s.",
            when=local.lang.dt(booked.apheresis_at),
            start=local.lang.dt(booked.slot.start_at),
        ),
    )
    return RedirectResponse(f"/cases/{case.id}/steps", status_code=303)
