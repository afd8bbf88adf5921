"""The coordinator dashboard: server-rendered pages at ``/``, outside the OpenAPI schema.

``create_app`` includes ``router``, mounts ``static_files()`` at ``/static`` and adds
Starlette's ``SessionMiddleware`` with ``session_options(settings)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter
from starlette.staticfiles import StaticFiles

from app.config import Settings
from app.services.reference import names
from app.web import (
    actions,
    calendar,
    forms,
    notfound,
    pages,
    record_actions,
    settings,
    step_actions,
    worklist,
)
from app.web.auth import session_options as _session_options
from app.web.i18n import catalogues

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)
router.include_router(actions.router)
router.include_router(pages.router)
router.include_router(forms.router)
router.include_router(calendar.router)
router.include_router(step_actions.router)
router.include_router(worklist.router)
router.include_router(record_actions.router)
router.include_router(settings.router)
install_error_pages = notfound.install


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC)


def session_options(settings: Settings) -> dict[str, Any]:
    """Session cookie options; also checks the dashboard settings and loads the catalogues."""
    ZoneInfo(settings.dashboard_timezone)  # an unknown zone fails at start-up, not per page
    catalogues()
    names.japanese()  # the seed files' Japanese and English names, read once
    names.english()
    return _session_options(settings)


__all__ = ["install_error_pages", "router", "session_options", "static_files"]
