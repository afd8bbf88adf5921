"""The dashboard is an adapter: it calls the application layer, never the API's routers."""

from __future__ import annotations

import re
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "app" / "web"
QUERY = re.compile(r"select\(|session\.exec|\.execute\(")


def test_pages_import_no_router() -> None:
    offenders = [p.name for p in WEB.glob("*.py") if "from app.routers" in p.read_text()]
    assert offenders == []


def test_pages_run_no_query_of_their_own() -> None:
    offenders = [p.name for p in WEB.glob("*.py") if QUERY.search(p.read_text())]
    assert offenders == []
