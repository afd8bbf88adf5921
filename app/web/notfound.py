"""HTML error pages for workspace addresses no route answers (404, 405).

The API (``/api/…``), the probes, ``/metrics`` and static files keep their problem JSON: the
application's own handler still answers them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import AppError, NotFound
from app.web import auth
from app.web.i18n import N_
from app.web.render import error_page

NOT_WORKSPACE = ("/api/", "/api", "/healthz", "/readyz", "/metrics", "/static/")
Handler = Callable[[Request, Any], Any]


class _NotAllowed(AppError):
    status, code, title = 405, "method-not-allowed", "Method not allowed"


# Shown translated: error.html passes the detail through the catalogue.
NO_PAGE = N_("No page at this address.")
NO_METHOD = N_("This address does not take this kind of request.")


def workspace_path(path: str) -> bool:
    return not any(path == p or path.startswith(p) for p in NOT_WORKSPACE)


def install(app: FastAPI) -> None:
    """Answer unknown workspace URLs with ``error.html``; every other path as before."""
    previous: Handler = app.exception_handlers[StarletteHTTPException]

    async def handler(request: Request, exc: Exception) -> Response:
        if (
            not isinstance(exc, StarletteHTTPException)
            or exc.status_code not in (404, 405)
            or not workspace_path(request.url.path)
        ):
            answer = previous(request, exc)
            done = await answer if inspect.isawaitable(answer) else answer
            if not isinstance(done, Response):
                raise TypeError("the previous handler answered no response")
            return done
        try:  # the header shows the logged-in person's menu when there is a session
            auth.current(request, request.app.state.clock())
        except auth.LoginRequired:
            pass
        error = NotFound(NO_PAGE) if exc.status_code == 404 else _NotAllowed(NO_METHOD)
        return error_page(request, error)

    app.add_exception_handler(StarletteHTTPException, handler)
