"""The notification settings page in headless Chromium, filled from the keyboard as a
coordinator would, in English and Japanese, at desk and tablet width. Screenshots go to
test-artifacts/browser/settings-*.png."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.browser.conftest import Pages, Served

Shot = Callable[[Any, str], None]
PAGE = "/settings/notifications"
TOKEN = "KyotoLINEtoken0123456789abcdef"
WIDER_THAN_VIEWPORT = """[...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(0, 5)
  .map(e => e.tagName + '#' + e.id + '.' + e.className)"""


def tab_to(page: Any, selector: str) -> None:
    """Press Tab until the element has the focus, as a person moving through the form."""
    for _ in range(60):
        if page.evaluate(f"document.activeElement === document.querySelector('{selector}')"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def submit(page: Any) -> None:
    """Enter in the focused field or on the button sends the form; wait for the answer."""
    with page.expect_navigation():
        page.keyboard.press("Enter")


def expected_refusal(pages: Pages) -> None:
    """The refused save answered 422 on purpose; any other logged error still fails."""
    refused = [e for e in pages.errors if "status of 422" in e]
    assert len(refused) == 1, pages.errors
    pages.errors.remove(refused[0])


def settings_of(served: Served, persona: str) -> dict[str, Any]:
    r = httpx.get(
        f"{served.url}/api/v1/me/notifications",
        headers={"Authorization": f"Bearer {served.keys[persona]}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_coordinator_sets_notifications_from_the_keyboard(
    pages: Pages, served: Served, shot: Shot
) -> None:
    page = pages.new(locale="en-GB")  # a 24-hour clock in the time fields
    pages.login(page, "kyoto")
    page.get_by_role("link", name="Notification settings").click()
    page.wait_for_url(f"{served.url}{PAGE}")

    # A mistyped address first: the error sits beside the field and nothing is saved.
    page.locator("#new_contact").focus()
    page.keyboard.type("coordinator at kyoto")
    submit(page)
    assert "Not an e-mail address" in page.locator("#new_contact-error").inner_text()
    assert page.locator("#new_contact").get_attribute("aria-invalid") == "true"
    shot(page, "settings-error-en")
    expected_refusal(pages)
    assert settings_of(served, "kyoto")["contacts"] == []

    # Now right: an address and a LINE URL, two kinds, major and up, quiet at night, digest.
    tab_to(page, "#new_contact")
    page.keyboard.type("coordinator@kyoto.example.jp")
    submit(page)
    assert "Notification settings saved." in page.locator(".flash").inner_text()
    page.locator("#new_contact").focus()
    page.keyboard.type(f"line://{TOKEN}/")
    for kind in ("temperature_excursion", "coi_mismatch"):
        tab_to(page, f'input[value="{kind}"]')
        page.keyboard.press("Space")
    tab_to(page, "#min_severity")
    page.keyboard.press("ArrowDown")  # warning -> major
    tab_to(page, "#quiet_from")
    page.keyboard.type("22:00")
    tab_to(page, "#quiet_to")
    page.keyboard.type("7:00")  # read as 07:00
    tab_to(page, "#digest")
    page.keyboard.press("Space")
    tab_to(page, "#save")
    submit(page)
    assert "Notification settings saved." in page.locator(".flash").inner_text()
    saved = settings_of(served, "kyoto")
    assert [c["kind"] for c in saved["contacts"]] == ["email", "line"]
    assert saved["subscriptions"] == [
        {"kinds": ["coi_mismatch", "temperature_excursion"], "min_severity": "major"}
    ]
    assert saved["quiet_hours"] == {"from": "22:00", "to": "07:00"} and saved["digest"] is True
    assert TOKEN not in page.content()
    shot(page, "settings-en")

    page.goto(f"/lang/ja?next={PAGE}")
    assert page.locator("h1").inner_text() == "通知設定"
    assert TOKEN not in page.content()
    shot(page, "settings-ja")
    tab_to(page, "#quiet_to")
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")  # the end of the quiet hours forgotten
    tab_to(page, "#save")
    submit(page)
    assert "開始と終了の両方" in page.locator("#quiet-error").inner_text()
    shot(page, "settings-error-ja")
    expected_refusal(pages)
    assert settings_of(served, "kyoto")["quiet_hours"] == {"from": "22:00", "to": "07:00"}

    # A tablet: nothing scrolls sideways, in either language.
    page.set_viewport_size({"width": 768, "height": 1024})
    for lang in ("ja", "en"):
        page.goto(f"/lang/{lang}?next={PAGE}")
        wide = page.evaluate(WIDER_THAN_VIEWPORT)
        assert page.evaluate("document.documentElement.scrollWidth") <= 768, (lang, wide)
        shot(page, f"settings-768-{lang}")
