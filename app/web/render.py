"""Rendering: the Jinja2 environment, the per-request view and HTML error pages."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app import __version__
from app.deps import NowDep, SessionDep, SettingsDep
from app.errors import AppError
from app.services.alerts import messages
from app.services.reference import names
from app.web import auth, labels, overview
from app.web.i18n import LANGUAGES, Lang, choose_language, zone_label
from app.web.roles import Can
from models.principal import Principal
from models.reference import Site

TEMPLATES = Path(__file__).resolve().parent / "templates"
REFRESH_S = 15  # live regions poll at this interval (the issue allows at most 15 s)
# Scripts only from this origin (no inline script); plotly.js injects its own styles.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)

env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.globals["version"] = __version__
env.globals["refresh_s"] = REFRESH_S
env.globals["languages"] = LANGUAGES


def html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        body,
        status_code=status,
        headers={"Cache-Control": "no-store", "Content-Security-Policy": CSP},
    )


def safe_next(target: str | None) -> str:
    """A local path to return to; anything else (another host) becomes the overview."""
    # Browsers drop tabs and newlines and read a backslash as a slash: "/\t/evil" is "//evil".
    if (
        not target
        or not target.startswith("/")
        or any(c in target for c in "\\\t\r\n")
        or target.startswith("//")
        or urlsplit(target).netloc
    ):
        return "/"
    return target


def default_zone(settings: Any, principal: Principal | None, session: Any) -> ZoneInfo:
    """The principal's own site's zone, else the configured dashboard zone."""
    if principal is not None and principal.site:
        site = session.get(Site, principal.site)
        if site is not None:
            return ZoneInfo(site.timezone)
    return ZoneInfo(settings.dashboard_timezone)


def alert_words(alert: Any, lang: Lang) -> str:
    """An alert in the reader's language and zone from its code and params; its stored
    English message when it has no code (raised before the catalogue) or an unknown one."""
    code, params = getattr(alert, "code", None), getattr(alert, "params", None)
    if code and params is not None and messages.known(code):
        try:
            return messages.render(
                code, params, lang="ja" if lang.code == "ja" else "en", tz=lang.zone.key
            )
        except (KeyError, TypeError, ValueError):
            pass  # params of an older shape: the stored message still says it
    return str(alert.message)


@dataclass(frozen=True)
class View:
    """One page request: who asks, in which language and zone, at what instant."""

    request: Request
    principal: Principal | None
    lang: Lang
    now: datetime
    own_zone: bool = True  # the zone is the principal's site's (not a case's)
    alert_badge: int = 0  # open alerts needing the person, shown in the navigation

    @property
    def user(self) -> Principal:
        if self.principal is None:
            raise auth.LoginRequired()
        return self.principal

    @property
    def can(self) -> Can:
        return Can.of(self.user)

    def in_zone(self, timezone: str) -> View:
        """The same view in a case's site zone, unless the principal has a site of its own."""
        if self.principal is not None and self.principal.site:
            return self
        return dataclasses.replace(self, lang=Lang(self.lang.code, ZoneInfo(timezone)))

    def context(self, **values: Any) -> dict[str, Any]:
        lang = self.lang
        path = self.request.url.path
        # The page's own address, without the live-region parameter (forms return here).
        params = self.request.query_params.multi_items()
        query = urlencode([(k, v) for k, v in params if k != "part"])
        here = path + ("?" + query if query else "")

        def label(table: str, code: str) -> str:
            names: dict[str, str] = getattr(labels, table)
            return lang.gettext(names[code]) if code in names else code

        def ref_name(table: str, code: str, english: str | None = None) -> str:
            return names.localised(table, code, english, lang.code)

        def alert_text(alert: Any) -> str:
            return alert_words(alert, lang)

        return {
            "_": lang.gettext,
            "ngettext": lang.ngettext,
            "f": lang,
            "lang": lang.code,
            "user": self.principal,
            "can": Can.of(self.principal) if self.principal is not None else None,
            "now": self.now,
            "zone": zone_label(lang.zone, self.now, lang.code),
            "csrf": auth.csrf_token(self.request) if self.principal is not None else "",
            "flash": auth.take_flash(self.request),
            "label": label,
            "ref_name": ref_name,
            "alert_text": alert_text,
            "alert_badge": self.alert_badge,
            "path": path,
            "here": here,
            "here_quoted": quote(here, safe=""),
            **values,
        }

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        return html(env.get_template(template).render(self.context(**values)), status)


def get_view(
    request: Request,
    principal: auth.WebUser,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
) -> View:
    zone = default_zone(settings, principal, session)
    badge = 0
    # Only whole pages show the navigation: live regions and form posts skip the count.
    if principal is not None and request.method == "GET" and "part" not in request.query_params:
        badge = overview.alert_badge(session, principal)
    return View(request, principal, Lang(choose_language(request), zone), now, alert_badge=badge)


ViewDep = Annotated[View, Depends(get_view)]


def anonymous_view(request: Request) -> View:
    settings = request.app.state.settings
    zone = ZoneInfo(settings.dashboard_timezone)
    return View(request, None, Lang(choose_language(request), zone), request.app.state.clock())


def error_page(request: Request, exc: AppError) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    base = anonymous_view(request)
    view = dataclasses.replace(base, principal=principal)
    return view.render("error.html", status=exc.status, status_code=exc.status, detail=exc.detail)


class WebRoute(APIRoute):
    """Dashboard routes: a missing session redirects to the login form; errors are HTML."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except auth.LoginRequired:
                if request.headers.get("x-requested-with") == "fetch":
                    return Response(status_code=401)  # a live region: the script reloads
                target = request.url.path if request.method == "GET" else "/"
                if request.url.query and request.method == "GET":
                    target += "?" + request.url.query
                return RedirectResponse(f"/login?next={quote(target, safe='')}", 303)
            except AppError as exc:
                return error_page(request, exc)

        return route
