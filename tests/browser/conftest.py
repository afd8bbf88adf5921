"""Headless Chromium (Debian's package, driven by Playwright) against a real uvicorn server.

The database is a migrated, seeded SQLite file filled through the API (tests/browser/data.py);
the server is ``uvicorn app.main:create_app`` on 127.0.0.1 (tests/servers.py). Without
/usr/bin/chromium the suite is skipped, except under CI=true where it must run (.ci/run
installs Debian's chromium). Screenshots go to test-artifacts/browser/ (ignored by git).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.clock import FrozenClock
from app.config import Settings
from app.db import Database
from app.main import create_app
from app.migrations import upgrade
from seeds.loader import load_reference
from tests.browser.data import build
from tests.conftest import IN_CI, PERSONAS, Api
from tests.servers import ROOT, Server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "test-artifacts" / "browser"


@pytest.fixture(scope="session")
def chromium() -> str:
    if not CHROMIUM.exists():
        reason = "Debian's chromium is missing at /usr/bin/chromium (apt-get install chromium)"
        if IN_CI:
            pytest.fail(f"{reason}; under CI the browser suite must run")
        pytest.skip(reason)
    return str(CHROMIUM)


@dataclass
class Served:
    url: str
    keys: dict[str, str]
    ids: dict[str, Any]


@pytest.fixture(scope="session")
def served(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A prepared database behind a real server on the system clock."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'v2v.sqlite3'}"
    upgrade(url)
    server = Server(url, log=ARTIFACTS / "server.log")
    # The server starts (imports, binds) while the data is written: it caches nothing.
    starting = threading.Thread(target=server.start)
    starting.start()
    try:
        db = Database(url, pool_size=2)
        with db.transaction() as session:
            load_reference(session)
        settings = Settings(database_url=url, env="test", scheduler_enabled=False)
        now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        app = create_app(settings, clock=FrozenClock(now), database=db)
        with TestClient(app) as client:
            api = Api(client, db, settings)
            for persona, spec in PERSONAS.items():
                api.key(persona, **spec)
            ids = build(api, now)
        db.dispose()
        starting.join()
        if server.proc is None or server.proc.poll() is not None:
            pytest.fail(f"the dashboard server did not start; see {ARTIFACTS / 'server.log'}")
        yield Served(server.url, dict(api.keys), ids)
    finally:
        starting.join()
        server.stop()


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class Pages:
    """One logged-in page per persona, shared by the tests (plotly.js is parsed once per
    page), plus fresh contexts where a test needs its own."""

    def __init__(self, browser: Any, served: Served) -> None:
        self.browser = browser
        self.served = served
        self.states: dict[str, Any] = {}
        self.shared: dict[str, Any] = {}
        self.contexts: list[Any] = []
        self.errors: list[str] = []

    def new(self, width: int = 1280, **options: Any) -> Any:
        """A page in a fresh context (its own cookies, cache and timers)."""
        context = self.browser.new_context(
            viewport={"width": width, "height": 900}, base_url=self.served.url, **options
        )
        self.contexts.append(context)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        return page

    def login(self, page: Any, persona: str) -> None:
        """Log in through the form, as a person would."""
        page.goto("/login")
        page.get_by_label("API key").fill(self.served.keys[persona])
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{self.served.url}/")
        self.states.setdefault(persona, page.context.storage_state())

    def fresh(self, persona: str) -> Any:
        """A fresh context already logged in as this persona."""
        if persona not in self.states:
            self.login(self.new(), persona)
        return self.new(storage_state=self.states[persona])

    def as_(self, persona: str) -> Any:
        """The persona's shared page (logged in once per session)."""
        if persona not in self.shared:
            page = self.new()
            self.login(page, persona)
            self.shared[persona] = page
        return self.shared[persona]

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture(scope="session")
def all_pages(browser: Any, served: Served) -> Iterator[Pages]:
    helper = Pages(browser, served)
    yield helper
    helper.close()


@pytest.fixture
def pages(all_pages: Pages) -> Iterator[Pages]:
    """The session's pages; the test fails if a page logged a script or loading error."""
    all_pages.errors.clear()
    yield all_pages
    assert all_pages.errors == [], "the pages logged script errors"


@pytest.fixture
def shot() -> Callable[[Any, str], None]:
    def save(page: Any, name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    return save
