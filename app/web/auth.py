"""Dashboard sessions: an API key logs in; the signed cookie names a server-side session.

The cookie is Starlette's signed session (HttpOnly, SameSite=Strict, Secure with
``V2V_SESSION_HTTPS_ONLY``, required in production) holding a random session token and the
CSRF token, never the key. The session itself lives on the server
(``app.services.access.sessions``, which says why a table rather than a generation number):
logging out, revoking or rotating the key ends it there, so a copy of the cookie replayed
afterwards opens nothing. The session and its principal are read on every request, so a
revoked key loses the dashboard at its next click. Every form post carries the CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from app.config import Settings
from app.deps import NowDep, get_db
from app.errors import Forbidden
from app.services.access import principals, sessions
from app.web.roles import DASHBOARD
from models.principal import Principal, Role

SESSION_COOKIE = "v2v_session"
SESSION_KEY = "sid"
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


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def throttle(request: Request, api_key: str) -> None:
    """429 when this address tries too often: per key id, and over all key ids together.

    Keyed on the address alone, a ward behind one NAT was locked out after five logins a
    minute; keyed on the key id too, each nurse has her own allowance, while guessing one
    key from one address stays slow and one address spraying many key ids is capped.
    """
    address = client_address(request)
    key_id = principals.key_id(api_key) or "-"
    request.app.state.login_address_limiter.hit(address)
    request.app.state.login_limiter.hit(f"{address} {key_id}")


def login(
    request: Request, session: Session, *, api_key: str, settings: Settings, now: datetime
) -> Principal | None:
    """Check the key and open a server-side session (audited either way); the caller commits."""
    opened = sessions.login(
        session,
        api_key=api_key,
        address=client_address(request),
        secret_key=settings.secret_key.get_secret_value(),
        now=now,
        admits=lambda principal: active(principal, now),
    )
    if opened is None:
        return None
    principal, token = opened
    request.session.clear()
    request.session[SESSION_KEY] = token
    request.session[CSRF_KEY] = secrets.token_urlsafe(32)
    return principal


def end(request: Request, session: Session, now: datetime) -> None:
    """Log out: end the session on the server (audited), then forget the cookie."""
    token = request.session.get(SESSION_KEY)
    if isinstance(token, str):
        sessions.logout(session, token=token, now=now)
    request.session.clear()


def current(request: Request, now: NowDep) -> Principal:
    """The logged-in principal, loaded afresh; an ended or stale session is cleared."""
    token = request.session.get(SESSION_KEY)
    if not isinstance(token, str):
        raise LoginRequired()
    db = get_db(request)
    settings: Settings = request.app.state.settings
    with db.session() as session:
        found = sessions.resolve(
            session, token=token, now=now, max_age_s=settings.session_max_age_s
        )
    if found is None or not active(found.principal, now):
        request.session.clear()
        raise LoginRequired()
    if found.stale:
        try:  # best effort, never waiting for SQLite's writer: the next page tries again
            with db.session(write=True, nowait=True) as session:
                sessions.touch(session, token=token, now=now)
                session.commit()
        except OperationalError:
            pass
    request.state.principal = found.principal
    return found.principal


WebUser = Annotated[Principal, Depends(current)]


def flash(request: Request, kind: str, text: str) -> None:
    """A one-time message shown on the next page."""
    request.session["flash"] = {"kind": kind, "text": text}


def take_flash(request: Request) -> dict[str, str] | None:
    value = request.session.pop("flash", None)
    return value if isinstance(value, dict) else None
