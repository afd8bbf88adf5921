"""Case page forms (POST): correct a recorded milestone, place or release a product hold.

Each is the API's use case with the logged-in principal (same rules, same audit entry, same
signature check: the signer re-enters their own key). The answer is a redirect back to the
edited element's anchor, with the outcome shown next to it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from app.deps import NowDep, SessionDep, SettingsDep, committing
from app.errors import AppError
from app.services.journey import corrections, holds
from app.services.journey import pages as case_pages
from app.web import auth
from app.web.labels import CORRECTION_MEANING, HOLD_MEANING
from app.web.render import ViewDep, WebRoute
from app.web.roles import require
from models.case import CorrectionRequest, HoldRequest
from models.coldchain import Signature

router = APIRouter(route_class=WebRoute, include_in_schema=False)
Csrf = Annotated[str, Form(alias=auth.CSRF_FIELD, max_length=100)]
Short = Annotated[str, Form(max_length=200)]
Text = Annotated[str, Form(max_length=2000)]
CaseId = Annotated[str, Path(max_length=64)]
RESULT = "record_result"  # the session key the case page reads once


def result(request: Request, kind: str, text: str, at: str) -> None:
    request.session[RESULT] = {"kind": kind, "text": text, "at": at}


def take_result(request: Request) -> dict[str, str] | None:
    """The outcome of the last form on the case page, shown next to the element it changed."""
    value = request.session.pop(RESULT, None)
    return value if isinstance(value, dict) else None


def _back(case_id: str, anchor: str) -> RedirectResponse:
    return RedirectResponse(f"/cases/{case_id}#{anchor}", status_code=303)


def _local(value: str, zone: str) -> datetime | None:
    """A ``datetime-local`` field in the zone the page showed its times in."""
    if not value:
        return None
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    return datetime.fromisoformat(value).replace(tzinfo=tz)


@router.post("/cases/{case_id}/milestones/{milestone_id}/correction")
def correct_milestone(
    case_id: CaseId,
    milestone_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    view: ViewDep,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    csrf: Csrf = "",
    action: Short = "",
    occurred_at: Short = "",
    occurred_was: Short = "",
    zone: Short = "UTC",
    note: Text = "",
    reason: Text = "",
    meaning: Short = "",
    signature_key: Annotated[str, Form(max_length=500)] = "",
) -> RedirectResponse:
    """Amend (time, note) or void a milestone, signed, through the API's use case."""
    request = view.request
    auth.check_csrf(request, csrf)
    require(view.can.cases, "case pages")
    case = case_pages.visible_case(session, actor=view.user, case_id=case_id)
    _ = view.lang.gettext
    anchor = f"milestone-{milestone_id}"
    try:
        amend = action == "amend"
        # The field comes filled with the recorded time: unchanged, it amends only the note.
        new_at = occurred_at if occurred_at != occurred_was else ""
        body = CorrectionRequest(
            action=action,
            occurred_at=_local(new_at, zone) if amend else None,
            note=(note.strip() or None) if amend else None,
            reason=reason.strip(),
            # The meaning is recorded in English whatever the page's language.
            signature=Signature(
                password_or_key=signature_key.strip(), meaning=CORRECTION_MEANING.get(meaning, "")
            ),
        )
    except (ValidationError, ValueError):
        result(
            request,
            "error",
            _("Not corrected: give a new time or note (to amend), a reason and your key."),
            anchor,
        )
        return _back(case.id, anchor)
    try:
        with committing(session):
            corrections.correct(
                session,
                case=case,
                actor=view.user,
                milestone_id=milestone_id,
                request=body,
                secret_key=settings.secret_key.get_secret_value(),
                now=now,
                future_tolerance_s=settings.future_tolerance_s,
            )
    except AppError as exc:
        result(request, "error", _("Not corrected: %(reason)s", reason=exc.detail), anchor)
    else:
        done = _("Milestone amended.") if amend else _("Milestone voided.")
        result(request, "ok", done, anchor)
    return _back(case.id, anchor)


@router.post("/cases/{case_id}/hold")
def hold_case(
    case_id: CaseId,
    view: ViewDep,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    csrf: Csrf = "",
    action: Short = "",
    reason: Text = "",
    meaning: Short = "",
    signature_key: Annotated[str, Form(max_length=500)] = "",
) -> RedirectResponse:
    """QA places or releases the product hold, signed, through the API's use case."""
    request = view.request
    auth.check_csrf(request, csrf)
    require(view.can.cases, "case pages")
    case = case_pages.visible_case(session, actor=view.user, case_id=case_id)
    _ = view.lang.gettext
    try:
        body = HoldRequest(
            action=action,
            reason=reason.strip(),
            signature=Signature(
                password_or_key=signature_key.strip(), meaning=HOLD_MEANING.get(meaning, "")
            ),
        )
    except ValidationError:
        result(request, "error", _("Not signed: give a reason and your key."), "hold")
        return _back(case.id, "hold")
    try:
        with committing(session):
            holds.act(
                session,
                actor=view.user,
                case=case,
                request=body,
                secret_key=settings.secret_key.get_secret_value(),
                now=now,
            )
    except AppError as exc:
        result(request, "error", _("Not signed: %(reason)s", reason=exc.detail), "hold")
    else:
        done = _("Product placed on hold.") if action == "place" else _("Hold released.")
        result(request, "ok", done, "hold")
    return _back(case.id, "hold")
