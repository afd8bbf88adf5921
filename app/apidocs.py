"""``/docs`` (Swagger UI) and ``/redoc`` with their scripts served by this server.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a hospital network without
internet access they stay blank. The ``fastapi-offline`` wheel ships the same assets; they
are mounted under ``/static/apidocs/`` (versioned by the package's version, so a browser may
keep them) and the pages name no other origin: no Google fonts, no online validator badge.
"""

from __future__ import annotations

import os
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


def _asset(name: str) -> str:
    return f"{PREFIX}/{name}?v={VERSION}"


def install(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the API documentation pages; call with an app created with ``docs_url=None``."""
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title
    # Before the dashboard's /static mount, which would otherwise answer this prefix.
    app.mount(PREFIX, Immutable(directory=ASSETS), name="apidocs")

    @app.get(docs_url, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} — API",
            swagger_js_url=_asset("swagger-ui-bundle.js"),
            swagger_css_url=_asset("swagger-ui.css"),
            swagger_favicon_url=_asset("favicon.png"),
            oauth2_redirect_url=None,
            # The badge would send the whole API description to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(redoc_url, include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} — API reference",
            redoc_js_url=_asset("redoc.standalone.js"),
            redoc_favicon_url=_asset("favicon.png"),
            with_google_fonts=False,
        )
