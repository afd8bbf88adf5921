"""The worklist: the cases the viewer may see, filtered and searched as ``GET /cases`` does.

A COI is searched with GET (it is printed on every bag); a patient reference only with a
CSRF-protected POST, and it is never written back: not in the address, not in the input,
not in the page.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from app.deps import SessionDep, SettingsDep
from app.errors import AppError
from app.services.journey import pages as case_pages
from app.services.reference import catalogue
from app.web import auth
from app.web.render import View, ViewDep, WebRoute
from app.web.roles import require
from models.case import CaseListQuery, CaseStatus

router = APIRouter(route_class=WebRoute, include_in_schema=False)
PAGE = 50
Filter = Annotated[str, Query(max_length=64)]


def _day(value: str, view: View, *, end: bool) -> datetime | None:
    """A date field (YYYY-MM-DD) as an instant in the page's zone; ``end``: the next midnight."""
    if not value:
        return None
    day = date.fromisoformat(value)
    if end:
        day += timedelta(days=1)
    return datetime.combine(day, time(0), tzinfo=view.lang.zone)


def _query(view: View, values: dict[str, str]) -> CaseListQuery:
    """The API's query model from the form, so its limits and messages are the API's."""
    return CaseListQuery.model_validate(
        {
            "status": values.get("status") or None,
            "route": values.get("route") or None,
            "q": values.get("q", "").strip() or None,
            "patient_ref": values.get("patient_ref", "").strip() or None,
            "from": _day(values.get("from", ""), view, end=False),
            "to": _day(values.get("to", ""), view, end=True),
        }
    )


def _address(filters: dict[str, str], **extra: str) -> str:
    """The worklist's query string for these filters (empty ones left out)."""
    return urlencode([(k, v) for k, v in {**filters, **extra}.items() if v])


def _page(
    view: View,
    session: SessionDep,
    settings: SettingsDep,
    values: dict[str, str],
    cursor: str | None,
    limit: int = PAGE,
) -> HTMLResponse:
    require(view.can.cases, "the worklist")
    _ = view.lang.gettext
    error: str | None = None
    page = case_pages.WorkPage([], None)
    try:
        where = _query(view, values)
        page = case_pages.worklist(
            session,
            actor=view.user,
            where=where,
            patient_key=settings.patient_hash_key.get_secret_value(),
            cursor=cursor or None,
            limit=limit,
        )
    except (ValueError, ValidationError):
        error = _("Check the filters: a date is YYYY-MM-DD, a stage or route from the list.")
    except AppError as exc:
        if exc.status >= 500 or exc.status in (401, 403):
            raise
        error = _("Nothing found for this search: %(reason)s", reason=exc.detail)
    shown = {k: v for k, v in values.items() if k != "patient_ref"}
    sites = {s.code: s.name for s in catalogue.list_sites(session)}
    return view.render(
        "worklist.html",
        rows=page.rows,
        next_cursor=page.next_cursor,
        cursor=cursor or "",
        filters=shown,
        by_patient="patient_ref" in values,
        error=error,
        statuses=[s.value for s in CaseStatus],
        routes=[r.code for r in catalogue.list_routes(session)],
        site_names=sites,
        query=_address,
    )


@router.get("/cases")
def worklist_page(
    view: ViewDep,
    session: SessionDep,
    settings: SettingsDep,
    q: Filter = "",
    status: Filter = "",
    route: Filter = "",
    from_: Annotated[str, Query(alias="from", max_length=10)] = "",
    to: Annotated[str, Query(max_length=10)] = "",
    cursor: Annotated[str, Query(max_length=500)] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = PAGE,
) -> HTMLResponse:
    """The case board: filter by stage, route and registration date; find a COI."""
    values = {"q": q, "status": status, "route": route, "from": from_, "to": to}
    if limit != PAGE:
        values["limit"] = str(limit)
    return _page(view, session, settings, values, cursor, limit)


@router.post("/cases")
def worklist_by_patient(
    view: ViewDep,
    session: SessionDep,
    settings: SettingsDep,
    csrf: Annotated[str, Form(alias=auth.CSRF_FIELD, max_length=100)] = "",
    patient_ref: Annotated[str, Form(max_length=128)] = "",
) -> HTMLResponse:
    """Find the case of a patient reference (posted, never echoed)."""
    auth.check_csrf(view.request, csrf)
    values: dict[str, Any] = {"patient_ref": patient_ref}
    if not patient_ref.strip():
        values = {}
    return _page(view, session, settings, values, None)
