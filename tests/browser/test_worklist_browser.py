"""The worklist in headless Chromium: NCC East's coordinator scans a bag's COI into the search
box (the scanner types, then presses Enter), opens the case and sees the hold banner, in
English and in Japanese; nothing is fetched from another origin."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Pages, Served

Shot = Callable[[Any, str], None]
HOLD_REASON = "Seal of the outer bag found broken at the factory dock"


@pytest.fixture(scope="module")
def held(served: Served) -> Iterator[dict[str, str]]:
    """The healthy box's case, put on hold by QA through the API (signed)."""
    headers = {"Authorization": f"Bearer {served.keys['qa']}"}
    with httpx.Client(base_url=served.url, headers=headers) as client:
        shipment = client.get(f"/api/v1/shipments/{served.ids['healthy_shipment']}").json()
        case = client.get(f"/api/v1/cases/{shipment['case_id']}").json()
        body = {
            "action": "place",
            "reason": HOLD_REASON,
            "signature": {"password_or_key": served.keys["qa"], "meaning": "Approval"},
        }
        r = client.post(f"/api/v1/cases/{case['id']}/hold", json=body)
        assert r.status_code == 200, r.text
        yield {"id": case["id"], "coi": case["coi"], "display": case["coi_display"]}
        release = {**body, "action": "release", "reason": "browser test done"}
        client.post(f"/api/v1/cases/{case['id']}/hold", json=release)


@pytest.mark.parametrize(
    ("lang", "title", "banner"),
    [
        ("en", "Worklist", "Do not infuse — product on hold"),
        ("ja", "症例一覧", "投与禁止 — 製品は保留中です"),
    ],
)
def test_coordinator_scans_a_coi_and_opens_the_held_case(
    pages: Pages,
    served: Served,
    shot: Shot,
    held: dict[str, str],
    lang: str,
    title: str,
    banner: str,
) -> None:
    page = pages.fresh("ncc")
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(f"/lang/{lang}?next=/")
    # From the overview's stage counts to the worklist, filtered.
    page.locator('#stages tr[data-stage="in_transit_to_manufacturing"] a').click()
    page.wait_for_url(re.compile(r"/cases\?status=in_transit_to_manufacturing"))
    assert page.locator("html").get_attribute("lang") == lang
    assert page.get_by_role("heading", name=title, exact=True).is_visible()
    stages = page.locator("#worklist tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.status)"
    )
    assert stages and set(stages) == {"in_transit_to_manufacturing"}
    # The search box has the focus: the scanner types the barcode's content, then Enter.
    page.goto("/cases")
    assert page.evaluate("document.activeElement.id") == "f-q"
    page.keyboard.type(f"&/{held['coi']}")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/cases\?q="))
    rows = page.locator("#worklist tbody tr")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-case-id") == held["id"]
    assert held["display"] in rows.first.inner_text()
    assert rows.first.locator(".hold-badge").is_visible()
    shot(page, f"20-worklist-{lang}")
    rows.first.get_by_role("link").click()
    page.wait_for_url(re.compile(f"/cases/{held['id']}$"))
    alarm = page.locator("#hold-banner")
    assert alarm.is_visible()
    assert banner in alarm.inner_text() and HOLD_REASON in alarm.inner_text()
    # The banner sits above the case's heading, in the first screenful.
    box = alarm.bounding_box()
    heading = page.locator("h1").bounding_box()
    assert box is not None and heading is not None and box["y"] < heading["y"] < 900
    assert page.locator("#records li[data-milestone-id]").count() >= 1
    assert page.locator("svg.trace").first.is_visible()
    shot(page, f"21-case-{lang}")
    outside = [u for u in requested if not u.startswith((served.url, "data:"))]
    assert outside == []


def test_qa_sees_the_release_form_and_the_correction_forms(
    pages: Pages, served: Served, shot: Shot, held: dict[str, str]
) -> None:
    page = pages.as_("qa")
    page.goto(f"/cases/{held['id']}")
    assert page.locator("#hold-banner").is_visible()
    form = page.locator("form.hold-form")
    assert form.get_by_role("button", name="Sign the release").is_visible()
    page.locator("#records details.correct summary").first.click()
    assert page.locator("#records form.correction").first.is_visible()
    shot(page, "22-case-qa")
