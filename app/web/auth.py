"""Dashboard sessions: an API key logs in; the signed cookie holds the principal's id only.

The cookie is Starlette's signed session (HttpOnly, SameSite=Strict, Secure with
``V2V_SESSION_HTTPS_ONLY``), never the key. The principal is loaded again on every request,
so a revoked key loses the dashboard at its next click. Every form post carries the
session's CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request

from app.config import Settings
from app.deps import NowDep, get_db
from app.errors import Forbidden
from app.web.roles import DASHBOARD
from models.principal import Principal, Role

SESSION_COOKIE = "v2v_session"
PRINCIPAL_KEY = "pid"
CSRF_KEY = "csrf"
CSRF_FIELD = "csrf_token"


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to the login form."""


def session_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for Starlette's ``SessionMiddleware``."""
    # A key of its own, derived from the secret key, so cookies and API-key hashes never
    # share one.
    derived = hmac.new(
        settings.secret_key.get_secret_value().encode(), b"v2v dashboard session", hashlib.sha256
    ).hexdigest()
    return {
        "secret_key": derived,
        "session_cookie": SESSION_COOKIE,
        "max_age": settings.session_max_age_s,
        "same_site": "strict",
        "https_only": settings.session_https_only,
    }


def active(principal: Principal | None, now: datetime) -> bool:
    """A principal may use the dashboard: it exists, is not revoked and is a person."""
    if principal is None or Role(principal.role) not in DASHBOARD:
        return False
    return principal.revoked_at is None or principal.revoked_at > now


def csrf_token(request: Request) -> str:
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF_KEY] = token
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    expected = request.session.get(CSRF_KEY)
    if (
        not isinstance(expected, str)
        or not submitted
        or not hmac.compare_digest(expected.encode(), submitted.encode())
    ):
        raise Forbidden("the form has expired or did not come from this site; reload and retry")


def start(request: Request, principal: Principal) -> None:
    """A fresh session for this principal, with a fresh CSRF token."""
    request.session.clear()
    request.session[PRINCIPAL_KEY] = principal.id
    request.session[CSRF_KEY] = secrets.token_urlsafe(32)


def end(request: Request) -> None:
    request.session.clear()


def current(request: Request, now: NowDep) -> Principal:
    """The logged-in principal, loaded afresh; a stale session is cleared."""
    principal_id = request.session.get(PRINCIPAL_KEY)
    if not isinstance(principal_id, str):
        raise LoginRequired()
    with get_db(request).session() as session:
        principal = session.get(Principal, principal_id)
    if principal is None or not active(principal, now):
        request.session.clear()
        raise LoginRequired()
    request.state.principal = principal
    return principal


WebUser = Annotated[Principal, Depends(current)]


def flash(request: Request, kind: str, text: str) -> None:
    """A one-time message shown on the next page."""
    request.session["flash"] = {"kind": kind, "text": text}


def take_flash(request: Request) -> dict[str, str] | None:
    value = request.session.pop("flash", None)
    return value if isinstance(value, dict) else None
