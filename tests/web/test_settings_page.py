"""The notification settings page through TestClient, on both databases: what a person sees
(masked contacts, their language), what a save does (the API's use case and audit), and what
a refusal does (the error beside its field, nothing saved, no token echoed)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from models.principal import Role
from tests.conftest import Api
from tests.notifications.flows import principal_id
from tests.web.test_dashboard import Browser

PAGE = "/settings/notifications"
TOKEN = "LINEsecretTOKEN0123456789"
LINE = f"line://{TOKEN}/"
ALL_KINDS = [
    "temperature_excursion",
    "loss_of_signal",
    "delay_at_risk",
    "delay_breached",
    "coi_mismatch",
    "hold_time_at_risk",
    "thaw_window",
    "slot_conflict",
]


def settings_of(api: Api, persona: str) -> dict[str, Any]:
    r = api.get(persona, "/api/v1/me/notifications")
    assert r.status_code == 200, r.text
    return dict(r.json())


def put(api: Api, persona: str, body: dict[str, Any]) -> dict[str, Any]:
    r = api.client.put("/api/v1/me/notifications", json=body, headers=api.headers(persona))
    assert r.status_code == 200, r.text
    return dict(r.json())


def audit_count(api: Api, persona: str) -> int:
    pid = principal_id(api, persona)
    r = api.get("admin", "/api/v1/audit", params={"entity": "principal", "entity_id": pid})
    return sum(e["action"] == "principal.notifications_set" for e in r.json()["items"])


def error_of(html: str, field: str) -> str:
    match = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', html)
    assert match, f"no error shown beside {field}"
    return match.group(1)


def save(browser: Browser, **fields: Any) -> Any:
    data: dict[str, Any] = {"min_severity": "warning", "language": "en", "timezone": "Asia/Tokyo"}
    data.update(fields)
    return browser.post(PAGE, data, page=PAGE)


@pytest.fixture
def ncc_set(api: Api) -> dict[str, Any]:
    return put(
        api,
        "ncc",
        {
            "contacts": [{"target": "coordinator@ncc.example.jp"}, {"target": LINE}],
            "subscriptions": [{"kinds": ["coi_mismatch"], "min_severity": "major"}],
            "language": "en",
        },
    )


def test_the_page_shows_masked_contacts_and_a_save_goes_through_the_api(
    api: Api, ncc_set: dict[str, Any]
) -> None:
    ncc = Browser(api, "ncc")
    page = ncc.get(PAGE)
    assert page.status_code == 200
    assert "c…@ncc.example.jp" in page.text and "line://…" in page.text
    assert TOKEN not in page.text and "coordinator@" not in page.text
    assert "Temperature excursion" in page.text and "Dry-shipper hold time at risk" in page.text
    assert re.search(r'value="coi_mismatch" checked', page.text)
    assert re.search(r'<option value="major" selected>Major</option>', page.text)
    # The header links here, for the people who may come.
    assert f'href="{PAGE}"' in ncc.get("/").text

    line_print = ncc_set["contacts"][1]["fingerprint"]
    saved = save(
        ncc,
        remove=line_print,
        new_contact="night-desk@ncc.example.jp",
        kinds=["loss_of_signal", "temperature_excursion"],
        min_severity="critical",
        quiet_from="22:00",
        quiet_to="0700",  # read as 07:00
        language="ja",
        timezone="Asia/Tokyo",
        digest="on",
    )
    assert saved.status_code == 303 and saved.headers["location"] == PAGE
    after = settings_of(api, "ncc")
    assert [c["target"] for c in after["contacts"]] == ["c…@ncc.example.jp", "n…@ncc.example.jp"]
    assert after["subscriptions"] == [
        {"kinds": ["loss_of_signal", "temperature_excursion"], "min_severity": "critical"}
    ]
    assert after["quiet_hours"] == {"from": "22:00", "to": "07:00"}
    assert (after["language"], after["digest"]) == ("ja", True)
    assert audit_count(api, "ncc") == 2
    shown = ncc.get(PAGE).text
    assert "Notification settings saved." in shown and "night-desk" not in shown


def test_in_japanese_the_kinds_severities_and_errors_are_japanese(
    api: Api, ncc_set: dict[str, Any]
) -> None:
    ncc = Browser(api, "ncc", **{"accept-language": "ja"})
    page = ncc.get(PAGE).text
    for words in ("通知設定", "連絡先", "温度逸脱", "COI不一致", "重度", "通知を控える時間帯"):
        assert words in page, words
    refused = save(ncc, new_contact="not an address", kinds=["coi_mismatch"])
    assert refused.status_code == 422
    assert "送信できるメールアドレスまたは通知用 URL ではありません。" in error_of(
        refused.text, "new_contact"
    )
    assert "保存されていません" in refused.text


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    api: Api, ncc_set: dict[str, Any]
) -> None:
    ncc = Browser(api, "ncc")
    for token in ("", "forged"):
        r = ncc.client.post(PAGE, data={"csrf_token": token, "new_contact": "x@example.org"})
        assert r.status_code == 403
    assert settings_of(api, "ncc") == ncc_set
    assert audit_count(api, "ncc") == 1


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"new_contact": f"file:///etc/{TOKEN}"}, "new_contact", "Not an e-mail address"),
        ({"new_contact": f"{TOKEN} at the ward"}, "new_contact", "Not an e-mail address"),
        ({"new_contact": "x" * 1001}, "new_contact", "Not an e-mail address"),
        ({"quiet_from": "22:00"}, "quiet", "Give both times"),
        ({"quiet_from": "25:00", "quiet_to": "07:00"}, "quiet", "Give both times"),
        ({"timezone": "Asia/Atlantis"}, "timezone", "Not a time zone we know"),
        ({"language": "fr"}, "language", "Choose English or Japanese"),
        ({"min_severity": "dire"}, "min_severity", "Choose a severity"),
        ({"kinds": ["coi_mismatch", "meteor_strike"]}, "kinds", "Choose alert kinds"),
        ({"remove": "0123456789ab", "new_contact": "a@b.example"}, "", ""),
    ],
)
def test_bad_input_is_shown_beside_its_field_and_nothing_is_saved(
    api: Api, ncc_set: dict[str, Any], fields: dict[str, Any], field: str, says: str
) -> None:
    ncc = Browser(api, "ncc")
    r = save(ncc, **{"kinds": ["coi_mismatch"], **fields})
    if not field:  # an unknown fingerprint to remove is simply not there: the save goes on
        assert r.status_code == 303
        return
    assert r.status_code == 422, r.text
    assert says in error_of(r.text, field)
    assert "Not saved: check the marked fields." in r.text
    assert TOKEN not in r.text  # a typed target is never put back into the page
    assert settings_of(api, "ncc") == ncc_set
    assert audit_count(api, "ncc") == 1


def test_eleven_contacts_are_refused_beside_the_new_one(api: Api) -> None:
    put(api, "ncc", {"contacts": [{"target": f"c{i}@ncc.example.jp"} for i in range(10)]})
    r = save(Browser(api, "ncc"), new_contact="c10@ncc.example.jp")
    assert r.status_code == 422
    assert "At most 10 contact points" in error_of(r.text, "contacts")
    assert len(settings_of(api, "ncc")["contacts"]) == 10


def test_no_kind_ticked_means_no_alerts_and_every_kind_means_every_kind(
    api: Api, ncc_set: dict[str, Any]
) -> None:
    ncc = Browser(api, "ncc")
    assert save(ncc).status_code == 303
    assert settings_of(api, "ncc")["subscriptions"] == []
    assert save(ncc, kinds=ALL_KINDS, min_severity="info").status_code == 303
    assert settings_of(api, "ncc")["subscriptions"] == [{"kinds": [], "min_severity": "info"}]
    page = ncc.get(PAGE).text
    assert all(f'value="{k}" checked' in page for k in ALL_KINDS)


def test_further_rules_set_through_the_api_are_kept(api: Api) -> None:
    rules = [
        {"kinds": ["coi_mismatch"], "min_severity": "major"},
        {"kinds": ["thaw_window"], "min_severity": "info"},
    ]
    put(api, "ncc", {"subscriptions": rules})
    ncc = Browser(api, "ncc")
    assert "Thaw window (Info)" in ncc.get(PAGE).text
    assert save(ncc, kinds=["delay_breached"], min_severity="warning").status_code == 303
    assert settings_of(api, "ncc")["subscriptions"] == [
        {"kinds": ["delay_breached"], "min_severity": "warning"},
        rules[1],
    ]


def test_a_viewer_has_no_page_and_no_link(api: Api) -> None:
    viewer = Browser(api, "viewer")
    assert viewer.get(PAGE).status_code == 403
    r = viewer.client.post(PAGE, data={"csrf_token": viewer.csrf(), "digest": "on"})
    assert r.status_code == 403
    assert f'href="{PAGE}"' not in viewer.get("/").text
    assert settings_of(api, "viewer")["digest"] is False


def test_a_device_key_cannot_open_it(api: Api) -> None:
    key = api.key("logger", Role.device, courier="KASHIWA-COLD", device_id="D-WEB-1")
    device = Browser(api)
    assert device.login(key, next_=PAGE).status_code != 303  # a logger's key opens no session
    r = device.get(PAGE)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_each_person_sees_and_changes_only_their_own(api: Api, ncc_set: dict[str, Any]) -> None:
    theirs = put(api, "utokyo", {"contacts": [{"target": "desk@utokyo.example.jp"}]})
    ncc = Browser(api, "ncc")
    assert "d…@utokyo.example.jp" not in ncc.get(PAGE).text
    utokyo_id = principal_id(api, "utokyo")
    r = save(ncc, principal_id=utokyo_id, digest="on", kinds=["coi_mismatch"])
    assert r.status_code == 303
    assert settings_of(api, "utokyo") == theirs
    assert settings_of(api, "ncc")["digest"] is True
    for persona in ("qa", "kashiwa", "courier", "admin"):
        assert Browser(api, persona).get(PAGE).status_code == 200, persona
