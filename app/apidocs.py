"""``/docs`` (Swagger UI) and ``/redoc`` with their scripts served by this server.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a hospital network without
internet access they stay blank. The ``fastapi-offline`` wheel ships the same assets; they
are mounted under ``/static/apidocs/`` (versioned by the package's version, so a browser may
keep them) and the pages name no other origin: no Google fonts, no online validator badge.
ReDoc's bundle still shows its maker's logo from their CDN; the pages' Content-Security-Policy
admits only this origin, so the browser never sends that request (the logo just stays away).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from importlib.metadata import version
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
PREFIX = "/static/apidocs"
VERSION = version("fastapi-offline")
CACHE = "public, max-age=31536000, immutable"


class Immutable(StaticFiles):
    """Files whose URL carries their version: a browser keeps them for a year."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = CACHE
        return response


INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def _asset(name: str) -> str:
    return f"{PREFIX}/{name}?v={VERSION}"


def _same_origin_only(page: HTMLResponse) -> HTMLResponse:
    """Allow the page's own inline start-up script (by its hash) and this origin, nothing else."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(code.encode()).digest()).decode() + "'"
        for code in INLINE_SCRIPT.findall(bytes(page.body).decode())
    )
    page.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        "worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    return page


def install(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the API documentation pages; call with an app created with ``docs_url=None``."""
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title
    # Before the dashboard's /static mount, which would otherwise answer this prefix.
    app.mount(PREFIX, Immutable(directory=ASSETS), name="apidocs")

    @app.get(docs_url, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} — API",
            swagger_js_url=_asset("swagger-ui-bundle.js"),
            swagger_css_url=_asset("swagger-ui.css"),
            swagger_favicon_url=_asset("favicon.png"),
            oauth2_redirect_url=None,
            # The badge would send the whole API description to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )
        return _same_origin_only(page)

    @app.get(redoc_url, include_in_schema=False)
    def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} — API reference",
            redoc_js_url=_asset("redoc.standalone.js"),
            redoc_favicon_url=_asset("favicon.png"),
            with_google_fonts=False,
        )
        return _same_origin_only(page)
