"""Dashboard forms (POST): login, logout, acknowledge, QA disposition; the language switch.

Every state-changing form carries the session's CSRF token; the actions themselves are the
use cases the API calls, with the logged-in principal, so their rules and audit entries are
the API's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from app.deps import NowDep, SessionDep, SettingsDep, committing
from app.errors import AppError
from app.services import alerts
from app.services.coldchain import disposition as excursions
from app.web import auth
from app.web.i18n import LANG_COOKIE, LANGUAGES
from app.web.labels import MEANING
from app.web.render import ViewDep, WebRoute, anonymous_view, safe_next
from app.web.roles import require
from models.alert import AlertAck
from models.coldchain import DispositionRequest, Signature

router = APIRouter(route_class=WebRoute, include_in_schema=False)
# Missing fields get defaults, so a bad post is a 403 page or a message, not a JSON 422.
Csrf = Annotated[str, Form(alias=auth.CSRF_FIELD, max_length=100)]
Text = Annotated[str, Form(max_length=2000)]
YEAR_S = 365 * 24 * 3600


def _back(target: str) -> RedirectResponse:
    return RedirectResponse(safe_next(target), status_code=303)


@router.get("/login")
def login_form(
    request: Request, next_: Annotated[str, Query(alias="next", max_length=500)] = "/"
) -> HTMLResponse:
    """The login form: paste an API key."""
    view = anonymous_view(request)
    return view.render(
        "login.html", next=safe_next(next_), csrf=auth.csrf_token(request), error=None
    )


@router.post("/login", response_model=None)
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    api_key: Annotated[str, Form(max_length=500)] = "",
    csrf: Csrf = "",
    next_: Annotated[str, Form(alias="next", max_length=500)] = "/",
) -> Response:
    """Check the key; on success the cookie names a server-side session, never the key."""
    auth.check_csrf(request, csrf)
    view = anonymous_view(request)
    api_key = api_key.strip()
    principal = None
    try:
        auth.throttle(request, api_key)
    except AppError as exc:
        error, status = view.lang.gettext("Too many attempts; wait a minute and retry."), exc.status
    else:
        with committing(session):
            principal = auth.login(request, session, api_key=api_key, settings=settings, now=now)
        error, status = view.lang.gettext("This key is not valid for the dashboard."), 401
    if principal is None:
        return view.render(
            "login.html",
            status=status,
            next=safe_next(next_),
            csrf=auth.csrf_token(request),
            error=error,
        )
    return _back(next_)


@router.post("/logout")
def logout(request: Request, session: SessionDep, now: NowDep, csrf: Csrf = "") -> RedirectResponse:
    """End the session, on the server too: a copy of the cookie opens nothing afterwards."""
    auth.check_csrf(request, csrf)
    with committing(session):
        auth.end(request, session, now)
    return RedirectResponse("/login", status_code=303)


@router.get("/lang/{code}")
def switch_language(
    code: Annotated[str, Path(max_length=5)],
    next_: Annotated[str, Query(alias="next", max_length=500)] = "/",
) -> RedirectResponse:
    """Remember the chosen language in a cookie (it beats Accept-Language)."""
    response = RedirectResponse(safe_next(next_), status_code=303)
    if code in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE, code, max_age=YEAR_S, httponly=True, samesite="strict", path="/"
        )
    return response


@router.post("/alerts/{alert_id}/ack")
def acknowledge(
    alert_id: Annotated[int, Path(ge=1, le=2**62)],
    view: ViewDep,
    session: SessionDep,
    now: NowDep,
    csrf: Csrf = "",
    next_: Annotated[str, Form(alias="next", max_length=500)] = "/",
    note: Annotated[str | None, Form(max_length=2000)] = None,
) -> RedirectResponse:
    """Acknowledge an alert through the API's use case (same scope, same audit entry)."""
    request = view.request
    auth.check_csrf(request, csrf)
    require(view.can.alerts, "alerts")
    _ = view.lang.gettext
    try:
        with committing(session):
            alerts.acknowledge(
                session,
                actor=view.user,
                alert_id=alert_id,
                # The API's body model, so a note is trimmed the same way.
                note=AlertAck(note=note or None).note,
                now=now,
            )
    except AppError as exc:
        auth.flash(request, "error", _("Not acknowledged: %(reason)s", reason=exc.detail))
    else:
        auth.flash(request, "ok", _("Alert acknowledged."))
    return _back(next_)


@router.post("/excursions/{excursion_id}/disposition")
def disposition(
    excursion_id: Annotated[int, Path(ge=1, le=2**62)],
    view: ViewDep,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    csrf: Csrf = "",
    decision: Annotated[str, Form(max_length=20)] = "",
    reason: Text = "",
    meaning: Annotated[str, Form(max_length=200)] = "",
    signature_key: Annotated[str, Form(max_length=500)] = "",
    next_: Annotated[str, Form(alias="next", max_length=500)] = "/alerts",
) -> RedirectResponse:
    """QA's signed decision: the signer re-enters their own key (21 CFR 11.200)."""
    request = view.request
    auth.check_csrf(request, csrf)
    # The API admits only QA through its role dependency; this form checks the same set.
    require(view.can.dispose, "QA dispositions")
    _ = view.lang.gettext
    try:
        body = DispositionRequest(
            decision=decision,
            reason=reason.strip(),
            # The meaning is recorded in English whatever the page's language.
            signature=Signature(
                password_or_key=signature_key.strip(), meaning=MEANING.get(meaning, "")
            ),
        )
    except ValidationError:
        auth.flash(request, "error", _("Not signed: choose a decision and give a reason."))
        return _back(next_)
    try:
        with committing(session):
            excursions.sign_disposition(
                session,
                actor=view.user,
                excursion_id=excursion_id,
                request=body,
                secret_key=settings.secret_key.get_secret_value(),
                now=now,
            )
    except AppError as exc:
        auth.flash(request, "error", _("Not signed: %(reason)s", reason=exc.detail))
    else:
        auth.flash(request, "ok", _("Disposition signed."))
    return _back(next_)
