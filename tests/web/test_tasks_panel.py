"""The overview's task panel and the navigation's open-alert badge, through TestClient, in
English and Japanese, on both databases."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import NOW, Api
from tests.helpers import Journey
from tests.web.test_dashboard import Browser

PANEL = re.compile(r'<section class="card wide" aria-labelledby="h-tasks">.*?</section>', re.S)
NAV = re.compile(r'<nav class="main-nav".*?</nav>', re.S)
TASK = re.compile(
    r'<li class="task[^"]*" data-kind="(\w+)"(?: data-overdue="true")?>.*?</li>', re.S
)


def panel(html: str) -> str:
    found = PANEL.search(html)
    assert found, "no task panel"
    return found.group(0)


def nav(html: str) -> str:
    found = NAV.search(html)
    assert found
    return found.group(0)


@pytest.fixture
def world(api: Api) -> dict[str, Any]:
    """At NCC East: an apheresis missed this morning, one booked in two days, and a case in
    transit whose custody scan raised a critical COI-mismatch alert."""
    missed = Journey(api, patient="MRN-P1", start=NOW - timedelta(hours=5))
    missed.schedule()
    later = Journey(api, patient="MRN-P2", start=NOW + timedelta(days=2))
    later.schedule()
    moving = Journey(api, patient="MRN-P3", start=NOW - timedelta(hours=4))
    moving.schedule()
    moving.step("collected")
    shipment = moving.ship("to_manufacturing", "FRESH_2_8")
    moving.custody(shipment, "picked_up")
    moving.wrong_scan(shipment)  # a COI mismatch: a critical alert
    (alert,) = api.get("ncc", "/api/v1/alerts?status=open").json()["items"]
    return {
        "missed": missed,
        "later": later,
        "moving": moving,
        "shipment": shipment,
        "alert_id": alert["id"],
    }


def test_the_panel_lists_todays_and_this_weeks_tasks_in_english(
    api: Api, world: dict[str, Any]
) -> None:
    page = Browser(api, "ncc").get("/")
    assert page.status_code == 200
    html = panel(page.text)
    assert "My tasks" in html and "Today" in html and "This week" in html
    today, week = html.split('id="h-tasks-week"')
    missed, later = world["missed"], world["later"]
    # Overdue is said in words, not only by colour, and the missed step is today's first.
    first = TASK.search(today)
    assert first and first.group(1) == "apheresis" and 'data-overdue="true"' in first.group(0)
    assert "Overdue" in first.group(0)
    assert f'href="/cases/{missed.case["id"]}"' in first.group(0)
    assert missed.coi in first.group(0)
    assert "1 step is overdue." in html
    # In the reader's zone: NCC East is in Tokyo (NOW - 5 h is 04:00 there).
    assert "Nov 26, 2026 04:00 +09:00" in first.group(0)
    assert f'href="/cases/{later.case["id"]}"' in week and later.coi in week
    assert "Nov 28, 2026 09:00 +09:00" in week
    # An alert's severity is its badge; its line names the kind, the COI, and since when.
    assert f"COI mismatch on {world['moving'].coi} " in today
    assert "waiting since" in today


def test_the_panel_speaks_japanese_without_the_english_titles(
    api: Api, world: dict[str, Any]
) -> None:
    browser = Browser(api, "ncc")
    browser.client.cookies.set("v2v_lang", "ja")
    html = panel(browser.get("/").text)
    assert "担当の作業" in html and "今週" in html
    assert "期限超過" in html and "期限を過ぎた作業が 1 件あります。" in html
    assert (
        f"{world['missed'].coi} " in html
        and "のアフェレーシス（国立がん研究センター東病院）" in html
    )
    assert f"{world['moving'].coi} " in html and "：COI不一致" in html and "重大" in html
    assert "2026/11/26 04:00 +09:00" in html
    api_titles = [t["title"] for t in api.get("ncc", "/api/v1/tasks").json()["items"]]
    assert api_titles
    for title in api_titles:
        assert title not in html
    for english in ("Apheresis of", "Overdue", "mismatch on", "This week", "waiting since"):
        assert english not in html


def test_the_badge_counts_open_alerts_needing_the_person(api: Api, world: dict[str, Any]) -> None:
    ncc = Browser(api, "ncc")
    menu = nav(ncc.get("/cases").text)  # on every page, not only the overview
    assert '<span class="nav-badge" id="alert-badge" aria-hidden="true">1</span>' in menu
    assert '<span class="sr-only">1 open alert</span>' in menu
    ncc.client.cookies.set("v2v_lang", "ja")
    assert "未確認のアラート 1 件" in nav(ncc.get("/").text)
    # Out of scope: nothing to count; a viewer has neither alerts nor tasks.
    assert "nav-badge" not in nav(Browser(api, "kyoto").get("/").text)
    viewer = Browser(api, "viewer").get("/").text
    assert "nav-badge" not in viewer and 'id="h-tasks"' not in viewer
    # Acknowledged: someone has it in hand, the badge goes.
    r = api.post("ncc", f"/api/v1/alerts/{world['alert_id']}/ack", {})
    assert r.status_code == 200
    assert "nav-badge" not in nav(Browser(api, "ncc").get("/").text)


def test_each_role_sees_its_own_work_and_links_it_can_open(api: Api, world: dict[str, Any]) -> None:
    moving, shipment = world["moving"], world["shipment"]
    factory = panel(Browser(api, "kashiwa").get("/").text)
    kinds = set(TASK.findall(factory))
    assert {"arrival", "manufacturing_start", "alert"} <= kinds
    assert "apheresis" not in kinds
    assert f"{moving.coi}" in factory
    # A courier never opens case pages: its tasks link to the shipment.
    courier = panel(Browser(api, "courier").get("/").text)
    assert f'href="/shipments/{shipment["id"]}"' in courier
    assert "/cases/" not in courier
    # Another hospital sees none of NCC East's work.
    other = panel(Browser(api, "kyoto").get("/").text)
    for j in (world["missed"], world["later"], moving):
        assert j.coi not in other
    assert "Nothing due today." in other


def test_a_shipment_waiting_for_its_courier_is_worded_in_both_languages(api: Api) -> None:
    j = Journey(api, patient="MRN-P4", start=NOW - timedelta(hours=2))
    j.schedule()
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    ncc = Browser(api, "ncc")
    (line,) = [m.group(0) for m in TASK.finditer(panel(ncc.get("/").text))]
    assert 'data-kind="pickup"' in line and f'href="/cases/{j.case["id"]}"' in line
    assert "Pickup of " in line and "National Cancer Center Hospital East" in line
    ncc.client.cookies.set("v2v_lang", "ja")
    assert "の集荷（国立がん研究センター東病院 →" in panel(ncc.get("/").text)
    courier = panel(Browser(api, "courier").get("/").text)
    assert f'href="/shipments/{shipment["id"]}"' in courier


def test_the_panel_refreshes_as_a_live_region(api: Api, world: dict[str, Any]) -> None:
    part = Browser(api, "ncc").get("/?part=tasks", headers={"x-requested-with": "fetch"})
    assert part.status_code == 200
    assert "<html" not in part.text and world["missed"].coi in part.text


def test_a_product_on_hold_is_marked_on_each_of_its_lines(api: Api, world: dict[str, Any]) -> None:
    moving = world["moving"]
    hold = {
        "action": "place",
        "reason": "seal broken",
        "signature": {"password_or_key": api.keys["qa"], "meaning": "approval"},
    }
    assert api.post("qa", f"/api/v1/cases/{moving.case['id']}/hold", hold).status_code == 200
    factory = Browser(api, "kashiwa")
    lines = [m.group(0) for m in TASK.finditer(panel(factory.get("/").text))]
    held = [line for line in lines if moving.coi in line]
    assert held and all("Do not infuse — product on hold" in line for line in held)
    assert all("product on hold" not in line for line in lines if moving.coi not in line)
    factory.client.cookies.set("v2v_lang", "ja")
    assert "投与禁止 — 製品は保留中です" in panel(factory.get("/").text)
