"""The dashboard in headless Chromium: what a coordinator, QA and a viewer actually see."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx

from tests.browser.conftest import ARTIFACTS, Pages, Served

COI_RE = re.compile(r"CH[A-NP-Z1-9][A-NP-Z0-9]{2}[0-9]{4}[A-Z0-9]{6}")
Shot = Callable[[Any, str], None]


def test_coordinator_logs_in_and_sees_the_overview(pages: Pages, shot: Shot) -> None:
    page = pages.new()
    page.goto("/")
    page.wait_for_url(re.compile(r"/login"))
    shot(page, "01-login")
    pages.login(page, "ncc")
    assert page.get_by_role("heading", name="Open alerts").is_visible()
    rows = page.locator("#in-transit tbody tr")
    assert rows.count() >= 3
    assert page.locator("#in-transit .signal-alarm").count() >= 1
    assert page.locator("#in-transit .signal-ok").count() >= 1
    assert "°C" in page.locator("#in-transit").inner_text()
    assert page.locator('#stages tr[data-stage="infused"] td').inner_text().strip() != "0"
    assert page.locator("#month-v2v tbody tr").count() >= 2
    shot(page, "02-overview")


def test_case_with_an_excursion_shows_it_shaded_on_the_chart(
    pages: Pages, served: Served, shot: Shot
) -> None:
    page = pages.as_("ncc")
    page.goto(f"/cases/{served.ids['excursion_case']}")
    assert served.ids["excursion_coi"] in page.locator("h1").inner_text()
    chart = page.locator(f"#chart-{served.ids['excursion_shipment']} svg.trace")
    # Drawn by the server: there at once, with no chart library to fetch.
    assert chart.is_visible()
    assert chart.locator("rect.band").count() == 1
    assert chart.locator("g.excursion").count() >= 1
    assert chart.locator("polyline.temperature").get_attribute("points")
    fetched = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert not any("plotly" in name for name in fetched)
    assert page.locator('#timeline li[data-milestone="collected"]').get_attribute("data-state") in (
        "done",
        "done_late",
    )
    shot(page, "03-case")
    page.get_by_role("link", name=re.compile(r"Shipment [0-9a-f]{8}")).first.click()
    page.wait_for_url(re.compile(r"/shipments/"))
    assert page.locator("#chart-" + served.ids["excursion_shipment"] + " svg.trace").is_visible()
    assert page.locator("#excursions tbody tr").count() >= 1
    assert page.locator("#out-of-range").inner_text().strip() != "0 min"
    shot(page, "04-shipment")


def test_acknowledging_an_alert_with_the_keyboard_moves_it(pages: Pages, shot: Shot) -> None:
    page = pages.as_("ncc")
    page.goto("/")
    row = page.locator("#open-alerts tbody tr").first
    alert_id = row.get_attribute("data-alert-id")
    button = row.get_by_role("button", name=re.compile("Acknowledge"))
    button.focus()
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert page.locator('[role="status"]').inner_text() == "Alert acknowledged."
    assert page.locator(f'#open-alerts tr[data-alert-id="{alert_id}"]').count() == 0
    assert page.locator(f'#acknowledged-alerts li[data-alert-id="{alert_id}"]').count() == 1
    shot(page, "05-overview-acknowledged")


def test_live_regions_refresh_without_a_reload(pages: Pages, served: Served, shot: Shot) -> None:
    page = pages.fresh("ncc")
    page.clock.install()  # fake timers: the 15 s poll runs when the test says so
    page.goto("/")
    page.evaluate("window.__marker = 'same page'")
    open_ids = page.locator("#open-alerts tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.alertId)"
    )
    target = open_ids[-1]
    r = httpx.post(
        f"{served.url}/api/v1/alerts/{target}/ack",
        json={"note": "seen on another screen"},
        headers={"Authorization": f"Bearer {served.keys['ncc']}"},
    )
    assert r.status_code == 200, r.text
    page.clock.run_for(16_000)
    page.wait_for_selector(f'#acknowledged-alerts li[data-alert-id="{target}"]')
    assert page.evaluate("window.__marker") == "same page"
    assert page.locator(f'#open-alerts tr[data-alert-id="{target}"]').count() == 0


def test_switching_to_japanese_shows_translated_labels_and_jst(
    pages: Pages, served: Served, shot: Shot
) -> None:
    page = pages.as_("ncc")
    page.goto("/")
    page.get_by_role("link", name="日本語").click()
    page.wait_for_load_state()
    try:
        _japanese(page, served, shot)
    finally:
        page.context.clear_cookies(name="v2v_lang")


def _japanese(page: Any, served: Served, shot: Shot) -> None:
    assert page.locator("html").get_attribute("lang") == "ja"
    assert page.get_by_role("heading", name="概要").is_visible()
    assert page.get_by_role("heading", name="未確認のアラート").is_visible()
    assert page.get_by_role("heading", name="輸送中の便").is_visible()
    assert "Asia/Tokyo (UTC+09:00)" in page.locator("#zone").inner_text()
    times = page.locator("main time").all_inner_texts()
    assert times and all(t.endswith("+09:00") for t in times)
    shot(page, "06-overview-ja")
    page.goto(f"/cases/{served.ids['excursion_case']}")
    assert page.get_by_role("heading", name="目標に対する工程の進捗").is_visible()
    chart = page.locator(f"#chart-{served.ids['excursion_shipment']}")
    assert "温度（°C）" in chart.inner_text()
    shot(page, "07-case-ja")
    page.get_by_role("link", name="English").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"


def test_qa_signs_a_disposition_on_the_alerts_page(
    pages: Pages, served: Served, shot: Shot
) -> None:
    page = pages.as_("qa")
    page.goto("/alerts")
    shot(page, "08-alerts")
    form = page.locator("form.disposition").first
    excursion = form.locator("xpath=..").get_attribute("data-excursion-id")
    form.get_by_label("Quarantine (hold for investigation)").check()
    form.get_by_label("Reason").fill("Box warmed on the loading dock; hold for investigation.")
    form.get_by_label("Your API key (signature)").fill(served.keys["qa"])
    form.get_by_role("button", name="Sign disposition").click()
    page.wait_for_load_state()
    assert page.locator('[role="status"]').inner_text() == "Disposition signed."
    signed = page.locator(f'#signed-excursions li[data-excursion-id="{excursion}"]')
    assert "Signed by qa" in signed.inner_text()


def test_routes_page_compares_local_and_overseas(pages: Pages, shot: Shot) -> None:
    page = pages.as_("ncc")
    page.goto("/routes")
    page.locator("#chart-distribution .main-svg").first.wait_for()
    page.locator("#chart-legs .main-svg").first.wait_for()
    assert page.locator("#chart-distribution").evaluate("el => el.data.length") == 3
    assert "days sooner at home" in page.locator("#headline").inner_text()
    shot(page, "09-routes")


def test_viewer_sees_aggregates_and_no_coi_anywhere(
    pages: Pages, served: Served, shot: Shot
) -> None:
    page = pages.as_("viewer")
    page.goto("/routes")
    page.locator("#chart-legs .main-svg").first.wait_for()
    assert not COI_RE.search(page.content())
    page.goto("/")
    assert not COI_RE.search(page.content())
    assert page.locator("#shipment-counts").is_visible()
    assert page.locator("#in-transit").count() == 0
    shot(page, "10-viewer-overview")
    response = page.goto(f"/cases/{served.ids['excursion_case']}")
    assert response is not None and response.status == 403
    assert not COI_RE.search(page.content())
    pages.errors.remove(  # the refusal above, as the browser logs it
        "Failed to load resource: the server responded with a status of 403 (Forbidden)"
    )


WIDER_THAN_VIEWPORT = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(0, 5)
  .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"""


def test_pages_fit_a_tablet(pages: Pages, served: Served, shot: Shot) -> None:
    """At 768 px nothing scrolls sideways, in either language (wide tables scroll inside
    their own box)."""
    page = pages.as_("ncc")
    page.set_viewport_size({"width": 768, "height": 1024})
    here = page.url
    try:
        for lang in ("en", "ja"):
            page.goto(f"/lang/{lang}?next=/")
            for url, name, ready in (
                ("/", "11-overview-768", "#stages"),
                (f"/cases/{served.ids['excursion_case']}", "12-case-768", "svg.trace"),
                ("/routes", "13-routes-768", "#chart-legs .main-svg"),
            ):
                page.goto(url)
                page.locator(ready).first.wait_for()
                wide = page.evaluate(WIDER_THAN_VIEWPORT)
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= 768, (url, lang, wide)
                shot(page, f"{name}-{lang}")
                if ready == "svg.trace":  # the chart alone, at the size a tablet shows it
                    chart = page.locator(ready).first
                    assert (chart.bounding_box() or {}).get("width", 0) > 600
                    chart.screenshot(path=str(ARTIFACTS / f"{name}-chart-{lang}.png"))
    finally:
        page.goto(f"/lang/en?next={here}")
        page.set_viewport_size({"width": 1280, "height": 900})
