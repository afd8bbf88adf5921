"""The overview's task panel and the open-alert badge in headless Chromium, in English and
Japanese, on a desktop and on a 768 px tablet; screenshots in test-artifacts/browser/."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Pages, Served

Shot = Callable[[Any, str], None]

WIDER_THAN_VIEWPORT = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(0, 5)
  .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"""


def api_tasks(served: Served, persona: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {served.keys[persona]}"}
    with httpx.Client(base_url=served.url, headers=headers) as client:
        r = client.get("/api/v1/tasks")
        assert r.status_code == 200, r.text
        return list(r.json()["items"])


@pytest.mark.parametrize(
    ("lang", "heading", "badge_word"),
    [("en", "My tasks", "open alert"), ("ja", "担当の作業", "未確認のアラート")],
)
def test_the_coordinator_sees_the_task_panel_and_the_alert_badge(
    pages: Pages, served: Served, shot: Shot, lang: str, heading: str, badge_word: str
) -> None:
    items = api_tasks(served, "ncc")
    assert items, "the demo data gives NCC East work to do"
    page = pages.fresh("ncc")
    page.goto(f"/lang/{lang}?next=/")
    panel = page.locator("#live-tasks")
    panel.wait_for()
    assert page.locator("#h-tasks").inner_text() == heading
    assert panel.locator("li.task").count() >= 1
    # Overdue is said in words on each overdue line, not only by the red edge.
    for line in panel.locator("li.task-overdue").all():
        assert line.locator(".task-late").inner_text() in ("Overdue", "期限超過")
    # The badge: a number for the eye, a sentence for a screen reader.
    badge = page.locator("#alert-badge")
    assert badge.is_visible()
    label = page.locator(".main-nav .sr-only").inner_text()
    assert badge_word in label and badge.inner_text() in label
    text = page.locator("main").inner_text()
    if lang == "ja":
        for item in items:
            assert item["title"] not in text  # worded in Japanese from kind and params
    shot(page, f"tasks-overview-{lang}")

    page.set_viewport_size({"width": 768, "height": 1024})
    page.reload()
    page.locator("#live-tasks").wait_for()
    wide = page.evaluate(WIDER_THAN_VIEWPORT)
    assert page.evaluate("document.documentElement.scrollWidth") <= 768, wide
    shot(page, f"tasks-overview-768-{lang}")

    # Each line opens the page where the work is done.
    first = page.locator("#live-tasks li.task a").first
    target = first.get_attribute("href")
    assert target and target.startswith(("/cases/", "/shipments/"))
    first.click()
    page.wait_for_url(f"{served.url}{target}")


def test_a_courier_s_tasks_open_shipment_pages(pages: Pages, served: Served, shot: Shot) -> None:
    page = pages.fresh("courier")
    page.goto("/lang/en?next=/")
    links = page.locator("#live-tasks li.task a")
    links.first.wait_for()
    hrefs = [links.nth(i).get_attribute("href") or "" for i in range(links.count())]
    assert hrefs and all(h.startswith("/shipments/") for h in hrefs)
    shot(page, "tasks-overview-courier-en")
