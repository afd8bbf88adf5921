"""Every workspace page in headless Chromium, in English and Japanese, with every request to
another origin blocked and counted: screenshots for a person to look at (test-artifacts/),
the API docs offline, the focus after Acknowledge, the chart toolbar out of the tab order
and the excursions table refreshing live."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ARTIFACTS, Pages, Served

Shot = Callable[[Any, str], None]
DAY = timedelta(days=1)
# The browser's own locale too: date and time fields are drawn in it, whatever the page says.
LOCALES = {"en": "en-US", "ja": "ja-JP"}


@dataclass
class Offline:
    """Requests to any origin but the server's are aborted and remembered."""

    origin: str
    blocked: list[str] = field(default_factory=list)

    def attach(self, context: Any) -> None:
        def route(r: Any) -> None:
            url = r.request.url
            if url.startswith((self.origin + "/", "data:", "blob:")):
                r.continue_()
            else:
                self.blocked.append(url)
                r.abort()

        context.route("**/*", route)


def client(served: Served, persona: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {served.keys[persona]}"}
    return httpx.Client(base_url=served.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def scheduled(served: Served) -> Iterator[dict[str, str]]:
    """A case NCC East registers and books now, through the API (every form has a case)."""
    with client(served, "ncc") as api:
        body = {
            "site": "NCC-EAST",
            "route": "KASHIWA-LOCAL",
            "product": "CART-CD19",
            "patient_ref": "MRN-PAGES-1",
        }
        r = api.post("/api/v1/cases", json=body)
        assert r.status_code == 201, r.text
        case = r.json()
        registered = api.post("/api/v1/cases", json={**body, "patient_ref": "MRN-PAGES-2"})
        assert registered.status_code == 201, registered.text
        day = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0) + 3 * DAY
        for _ in range(30):  # the first day with a free manufacturing position
            r = api.post(
                f"/api/v1/cases/{case['id']}/schedule", json={"apheresis_at": day.isoformat()}
            )
            if r.status_code == 200:
                break
            day += DAY
        assert r.status_code == 200, r.text
        yield {"scheduled": case["id"], "registered": registered.json()["id"]}


def page_list(served: Served, ids: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """(persona, name, address, a selector that shows the page is ready)."""
    hot, ship = served.ids["excursion_case"], served.ids["excursion_shipment"]
    return [
        ("ncc", "overview", "/", "#stages"),
        ("ncc", "worklist", "/cases", "#worklist"),
        ("ncc", "register", "/register", "form"),
        ("ncc", "case", f"/cases/{hot}", f"#chart-{ship} svg.trace"),
        ("ncc", "case-steps", f"/cases/{ids['scheduled']}/steps", "#next-actions"),
        ("ncc", "calendar", f"/cases/{ids['registered']}/schedule", "#calendar"),
        ("ncc", "step-collected", f"/cases/{ids['scheduled']}/steps/collected", "form"),
        (
            "ncc",
            "shipment-new",
            f"/cases/{ids['scheduled']}/shipments/new?direction=to_manufacturing",
            "form",
        ),
        ("ncc", "shipment", f"/shipments/{ship}", f"#chart-{ship} svg.trace"),
        ("ncc", "alerts", "/alerts", "#alert-list"),
        ("ncc", "routes", "/routes", "#chart-legs .main-svg"),
        ("ncc", "not-found", "/no/such/page", "#error-detail"),
        ("qa", "alerts-qa", "/alerts?status=all", "#alert-list"),
        ("kashiwa", "factory", "/factory", "h1"),
        ("kashiwa", "step-receipt", f"/cases/{hot}/steps/received_at_manufacturing", "form"),
        ("courier", "courier", "/courier", "#my-shipments"),
        ("courier", "custody", f"/courier/{ship}", "form"),
        ("viewer", "overview-viewer", "/", "#shipment-counts"),
        ("viewer", "forbidden", f"/cases/{hot}", "#error-detail"),
    ]


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_every_page_in_both_languages_stays_on_this_origin(
    pages: Pages, served: Served, shot: Shot, scheduled: dict[str, str], lang: str
) -> None:
    offline = Offline(served.url)
    contexts: dict[str, Any] = {}
    login = pages.new(locale=LOCALES[lang])
    offline.attach(login.context)
    login.goto(f"/lang/{lang}?next=/login")
    assert login.locator("html").get_attribute("lang") == lang
    shot(login, f"pages-{lang}-login")
    statuses: dict[str, int] = {}
    for persona, name, url, ready in page_list(served, scheduled):
        if persona not in contexts:
            if persona not in pages.states:
                pages.login(pages.new(), persona)
            contexts[persona] = pages.new(storage_state=pages.states[persona], locale=LOCALES[lang])
            offline.attach(contexts[persona].context)
            contexts[persona].goto(f"/lang/{lang}?next=/")
        page = contexts[persona]
        response = page.goto(url)
        assert response is not None
        statuses[name] = response.status
        page.locator(ready).first.wait_for()
        assert page.locator("html").get_attribute("lang") == lang, name
        shot(page, f"pages-{lang}-{name}")
        if ready.endswith("svg.trace"):  # the temperature chart on its own, to look at
            page.locator(ready).screenshot(path=str(ARTIFACTS / f"pages-{lang}-{name}-chart.png"))
    expected = {"not-found": 404, "forbidden": 403}
    assert {n: s for n, s in statuses.items() if s != 200} == expected
    assert offline.blocked == [], "a page asked another origin"
    for message in ("404 (Not Found)", "403 (Forbidden)"):  # the two error pages, as logged
        pages.errors[:] = [e for e in pages.errors if message not in e]


@pytest.mark.parametrize(("path", "ready"), [("/docs", ".opblock"), ("/redoc", "h2")])
def test_api_docs_render_with_the_network_cut_off(
    pages: Pages, served: Served, shot: Shot, path: str, ready: str
) -> None:
    offline = Offline(served.url)
    page = pages.new()
    offline.attach(page.context)
    page.goto(path)
    page.locator(ready).first.wait_for()
    if path == "/docs":
        operations = page.locator(".opblock").count()
        assert page.locator(".opblock-summary-path", has_text="/api/v1/cases").count() >= 1
    else:
        operations = page.locator("[data-section-id^='tag/'] h2").count()
        assert page.get_by_text("/api/v1/readings").count() >= 1
    assert operations >= 30, operations
    assert offline.blocked == []
    # ReDoc's bundle shows its maker's logo from a CDN; the page's policy stops the browser
    # before any request is made, and says so on the console.
    refused = [e for e in pages.errors if "Content Security Policy" in e]
    assert all("cdn.redoc.ly" in e for e in refused), refused
    pages.errors[:] = [e for e in pages.errors if e not in refused]
    # The first screenful only: the whole reference is tens of thousands of pixels tall.
    page.screenshot(path=str(ARTIFACTS / f"pages-en-api{path.replace('/', '-')}.png"))


def test_focus_moves_to_the_next_alert_after_acknowledge(pages: Pages, shot: Shot) -> None:
    page = pages.fresh("ncc")
    page.goto("/alerts")
    rows = page.locator("#alert-list tbody tr")
    assert rows.count() >= 2
    first, second = (rows.nth(i).get_attribute("data-alert-id") for i in (0, 1))
    rows.first.get_by_role("button", name=re.compile("Acknowledge")).focus()
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    page.locator(".flash").wait_for()
    focused = page.evaluate(
        "() => { const e = document.activeElement;"
        " const r = e.closest('[data-alert-id]'); return [e.tagName, r && r.dataset.alertId]; }"
    )
    assert page.locator(f'#alert-list tr[data-alert-id="{first}"]').count() == 0
    assert focused == ["BUTTON", second]
    # Enter again acknowledges that next alert: a run of alerts without the mouse.
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    page.locator(".flash").wait_for()
    assert page.locator(f'#alert-list tr[data-alert-id="{second}"]').count() == 0
    shot(page, "pages-en-alerts-after-ack")


def test_charts_put_nothing_in_the_tab_order(pages: Pages, served: Served) -> None:
    page = pages.fresh("ncc")
    page.goto("/routes")
    page.locator("#chart-legs .main-svg").first.wait_for()
    page.locator("#chart-distribution .main-svg").first.wait_for()
    focusable = page.evaluate(
        """() => [...document.querySelectorAll('[data-chart] *')]
             .filter(e => e.tabIndex >= 0 && (e.hasAttribute('tabindex')
               || e.matches('a[href], button, input, select, textarea'))).length"""
    )
    assert focusable == 0
    assert page.locator("[data-chart] .modebar-btn").count() == 0
    # Tabbing from the last control before the charts lands past them, never inside.
    for _ in range(40):
        page.keyboard.press("Tab")
        inside = page.evaluate("() => !!document.activeElement.closest('[data-chart]')")
        assert not inside


def test_excursions_table_refreshes_without_a_reload(
    pages: Pages, served: Served, shot: Shot
) -> None:
    ship = served.ids["excursion_shipment"]
    page = pages.fresh("ncc")
    page.clock.install()  # fake timers: the 15 s poll runs when the test says so
    page.goto(f"/shipments/{ship}")
    page.evaluate("window.__marker = 'same page'")
    before = set(
        page.locator("#excursions tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.excursionId)"
        )
    )
    # The box passes the 15 °C critical limit for a minute and cools again: a new excursion.
    with client(served, "ncc") as api:
        device = api.get(f"/api/v1/shipments/{ship}").json()["device_ids"][0]
    now = datetime.now(UTC).replace(microsecond=0)
    spell = [(100, 16.5), (80, 17.0), (60, 16.8), (40, 5.2), (20, 5.0)]
    readings = [
        {"device_id": device, "ts": (now - timedelta(seconds=s)).isoformat(), "temp_c": t}
        for s, t in spell
    ]
    with client(served, "courier") as courier:
        r = courier.post("/api/v1/readings", json={"readings": readings})
    assert r.status_code == 200 and not r.json()["rejected"], r.text
    page.clock.run_for(16_000)
    page.wait_for_function(
        "n => document.querySelectorAll('#excursions tbody tr').length > n", arg=len(before)
    )
    after = page.locator("#excursions tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.excursionId, r.innerText])"
    )
    new = [text for id_, text in after if id_ not in before]
    assert len(new) == 1 and "17.0 °C" in new[0] and "Critical" in new[0], after
    assert page.evaluate("window.__marker") == "same page"
    shot(page, "pages-en-shipment-excursion-live")
