"""The workspace forms through TestClient, on both databases: who may open each form, and
that a post does exactly what the API's use case does (same refusals, alerts and audit)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.db import Database
from app.services.identity.coi import display
from models.principal import Role
from models.reference import Site
from tests.conftest import NOW, Api
from tests.helpers import Journey, register
from tests.journey.test_holds import at_site, hold
from tests.web.test_dashboard import Browser

TOKYO = ZoneInfo("Asia/Tokyo")
STOP = "STOP — this label does not belong to this case"


def local(t: Any) -> str:
    return t.astimezone(TOKYO).replace(tzinfo=None).isoformat(timespec="seconds")


def audit_actions(api: Api, entity_id: str) -> list[str]:
    r = api.get("admin", "/api/v1/audit", params={"entity_id": entity_id, "limit": 200})
    assert r.status_code == 200, r.text
    return [e["action"] for e in r.json()["items"]]


def case_of(api: Api, case_id: str) -> dict[str, Any]:
    r = api.get("admin", f"/api/v1/cases/{case_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def scheduled(api: Api, patient: str) -> Journey:
    j = Journey(api, patient=patient, start=NOW - timedelta(days=2))
    j.schedule()
    return j


def test_each_form_opens_for_its_roles_and_is_403_for_the_others(api: Api) -> None:
    j = scheduled(api, "MRN-F1")
    cid = j.case["id"]
    forms = {
        "/register": {"ncc", "admin"},
        f"/cases/{cid}/steps": {"ncc", "admin", "kashiwa", "qa"},
        f"/cases/{cid}/schedule": {"ncc", "admin"},
        f"/cases/{cid}/steps/collected": {"ncc", "admin"},
        f"/cases/{cid}/steps/thawed": {"ncc", "admin"},
        f"/cases/{cid}/steps/received_at_manufacturing": {"kashiwa", "admin"},
        f"/cases/{cid}/steps/qc_released": {"kashiwa", "admin"},
        f"/cases/{cid}/shipments/new?direction=to_manufacturing": {"ncc", "admin"},
        f"/cases/{cid}/shipments/new?direction=to_site": {"kashiwa", "admin"},
        "/courier": {"courier", "ncc", "kashiwa", "admin"},
        "/factory": {"kashiwa", "admin"},
    }
    people = {p: Browser(api, p) for p in ("ncc", "admin", "kashiwa", "qa", "courier", "viewer")}
    for url, allowed in forms.items():
        for persona, browser in people.items():
            r = browser.get(url)
            want = 200 if persona in allowed else 403
            assert r.status_code == want, (url, persona, r.status_code)
            if want == 200:
                assert r.headers["content-type"].startswith("text/html")
    # Another hospital's coordinator does not learn the case exists.
    assert Browser(api, "utokyo").get(f"/cases/{cid}/steps/collected").status_code == 404


def test_registering_through_the_form_creates_the_case_and_prints_its_label(api: Api) -> None:
    ncc = Browser(api, "ncc")
    page = ncc.get("/register")
    assert "NCC-EAST" in page.text and 'name="patient_ref"' in page.text
    r = ncc.post(
        "/register",
        # The coordinator's site is theirs whatever the form says.
        {
            "site": "UTOKYO-HOSP",
            "route": "KASHIWA-LOCAL",
            "product": "CART-CD19",
            "patient_ref": "MRN-FORM-1",
            "planned_infusion_at": "2026-12-24T10:00",
        },
        page="/register",
    )
    assert r.status_code == 303, r.text
    case_id = r.headers["location"].split("/")[2]
    case = case_of(api, case_id)
    assert case["site"] == "NCC-EAST" and case["status"] == "registered"
    assert case["planned_infusion_at"].startswith("2026-12-24T01:00")
    hub = ncc.get(r.headers["location"])
    assert display(case["coi"]).split()[0] in hub.text
    assert f'href="/cases/{case_id}/label.pdf"' in hub.text
    assert f'href="/cases/{case_id}/schedule"' in hub.text
    assert "Case registered" in hub.text
    pdf = ncc.get(f"/cases/{case_id}/label.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    png = ncc.get(f"/cases/{case_id}/label.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.headers["x-v2v-print-number"] == "2"
    actions = audit_actions(api, case_id)
    assert actions.count("case.registered") == 1 and actions.count("case.label.printed") == 2
    # A second open case for the patient: the API's 409, on the form, without the MRN.
    again = ncc.post(
        "/register",
        {"route": "KASHIWA-LOCAL", "product": "CART-CD19", "patient_ref": "MRN-FORM-1"},
        page="/register",
    )
    assert again.status_code == 409
    assert "already has an open case" in again.text and "MRN-FORM-1" not in again.text
    assert Browser(api, "courier").get(f"/cases/{case_id}/label.pdf").status_code == 403


def test_a_full_day_cannot_be_picked_and_the_next_free_time_is_offered(
    api: Api, database: Database
) -> None:
    with database.transaction() as session:
        factory = session.get(Site, "CELLARES-KASHIWA")
        assert factory is not None
        factory.shuttles, factory.positions_per_shuttle = 1, 1
        session.add(factory)
    first = register(api, patient="MRN-CAL-1")
    booked_at = (NOW + timedelta(days=3)).astimezone(TOKYO).replace(hour=9)
    r = api.post(
        "ncc", f"/api/v1/cases/{first['id']}/schedule", {"apheresis_at": booked_at.isoformat()}
    )
    assert r.status_code == 200, r.text
    second = register(api, patient="MRN-CAL-2")
    ncc = Browser(api, "ncc")
    url = f"/cases/{second['id']}/schedule"
    page = ncc.get(url).text
    day = booked_at.date().isoformat()
    cell = re.search(rf'<td class="day day-(\w+)" data-date="{day}".*?</td>', page, re.S)
    assert cell and cell.group(1) == "full"
    assert re.search(rf'id="day-{day}" value="{day}" disabled', page)
    free_day = (booked_at + timedelta(days=20)).date().isoformat()
    assert re.search(rf'id="day-{free_day}" value="{free_day}" required', page)
    refused = ncc.post(url, {"day": day, "clock": "09:00"}, page=url)
    assert refused.status_code == 409 and "That day is full" in refused.text
    assert case_of(api, second["id"])["status"] == "registered"
    # Past the calendar (a forged time): the service's 409 with the next time that fits.
    full = ncc.post(url, {"apheresis_at": booked_at.isoformat()}, page=url)
    assert full.status_code == 409 and 'id="offer"' in full.text
    offered = re.search(r'name="apheresis_at" value="([^"]+)"', full.text)
    assert offered
    ok = ncc.post(url, {"apheresis_at": offered.group(1)}, page=url)
    assert ok.status_code == 303, ok.text
    assert case_of(api, second["id"])["status"] == "apheresis_scheduled"
    moved = ncc.post(url, {"day": free_day, "clock": "10:30"}, page=url)
    assert moved.status_code == 303
    assert case_of(api, second["id"])["apheresis_at"].startswith(f"{free_day}T01:30")
    assert audit_actions(api, second["id"]).count("case.scheduled") == 2


def test_a_wrong_label_stops_the_step_and_is_recorded_as_the_api_does(api: Api) -> None:
    j = scheduled(api, "MRN-F2")
    other = register(api, patient="MRN-F3")
    ncc = Browser(api, "ncc")
    url = f"/cases/{j.case['id']}/steps/collected"
    before = case_of(api, j.case["id"])
    wrong = display(other["coi"])
    r = ncc.post(url, {"coi": wrong, "occurred_at": local(NOW)}, page=url)
    assert r.status_code == 409
    assert STOP in r.text and 'id="stop"' in r.text
    assert wrong in r.text and display(j.coi) in r.text
    after = case_of(api, j.case["id"])
    assert after["status"] == before["status"] and after["milestones"] == []
    alerts = api.get("admin", "/api/v1/alerts", params={"case_id": j.case["id"]}).json()["items"]
    assert [a["kind"] for a in alerts] == ["coi_mismatch"]
    assert alerts[0]["severity"] == "critical"
    assert "coi.mismatch" in audit_actions(api, j.case["id"])
    # A mistyped check character is caught before any comparison: a line on the form.
    typo = ncc.post(
        url,
        {
            "coi": j.coi + "0" if display(j.coi)[-1] != "0" else j.coi + "1",
            "occurred_at": local(NOW),
        },
        page=url,
    )
    assert typo.status_code == 422 and "check character" in typo.text and STOP not in typo.text
    # Any scanned form of the right label records the step.
    ok = ncc.post(url, {"coi": "&/" + j.coi, "occurred_at": local(NOW)}, page=url)
    assert ok.status_code == 303, ok.text
    assert case_of(api, j.case["id"])["status"] == "collected"
    assert "case.collected" in audit_actions(api, j.case["id"])


def test_scan_forms_accept_every_form_of_the_label(api: Api) -> None:
    ncc = Browser(api, "ncc")
    forms = [
        lambda coi: display(coi),
        lambda coi: display(coi).replace(" ", ""),
        lambda coi: " ".join([coi[:2], coi[2:7], coi[7:9], coi[9:]]),
        lambda coi: f"=+06000&/{coi}&)ABC",
    ]
    for i, form in enumerate(forms):
        j = scheduled(api, f"MRN-SCAN-{i}")
        url = f"/cases/{j.case['id']}/steps/collected"
        r = ncc.post(url, {"coi": form(j.coi), "occurred_at": local(NOW)}, page=url)
        assert r.status_code == 303, (i, r.text[:3000])


def test_thaw_and_infusion_need_a_second_person_whose_key_is_never_shown(api: Api) -> None:
    j = at_site(api, "MRN-F4")
    second = api.key("ncc-nurse", Role.coordinator, site="NCC-EAST")
    ncc = Browser(api, "ncc")
    url = f"/cases/{j.case['id']}/steps/thawed"
    form = ncc.get(url).text
    assert 'name="verifier_key"' in form and 'type="password"' in form
    alone = ncc.post(url, {"coi": display(j.coi), "occurred_at": local(NOW)}, page=url)
    assert alone.status_code == 422 and "A second person must verify" in alone.text
    own = ncc.post(
        url,
        {"coi": display(j.coi), "occurred_at": local(NOW), "verifier_key": api.keys["ncc"]},
        page=url,
    )
    assert own.status_code == 422 and "verification failed" in own.text
    assert api.keys["ncc"] not in own.text
    assert case_of(api, j.case["id"])["status"] == "at_site"
    thawed = ncc.post(
        url,
        {
            "coi": display(j.coi),
            "occurred_at": local(NOW - timedelta(minutes=20)),
            "verifier_key": second,
        },
        page=url,
    )
    assert thawed.status_code == 303, thawed.text
    url = f"/cases/{j.case['id']}/steps/infused"
    page = ncc.get(url).text
    assert second not in page
    infused = ncc.post(
        url,
        {"coi": j.coi, "occurred_at": local(NOW), "verifier_key": second, "note": "uneventful"},
        page=url,
    )
    assert infused.status_code == 303, infused.text
    case = case_of(api, j.case["id"])
    assert case["status"] == "infused"
    actions = audit_actions(api, j.case["id"])
    assert "case.thawed" in actions and "case.infused" in actions
    follow = ncc.get(infused.headers["location"])
    assert second not in follow.text and "recorded" in follow.text


def test_a_product_on_hold_is_a_stop_screen(api: Api) -> None:
    j = at_site(api, "MRN-F5")
    assert hold(api, "qa", j.case["id"], "place").status_code == 200
    second = api.key("ncc-nurse", Role.coordinator, site="NCC-EAST")
    ncc = Browser(api, "ncc")
    url = f"/cases/{j.case['id']}/steps/thawed"
    assert "on hold" in ncc.get(url).text
    r = ncc.post(
        url, {"coi": display(j.coi), "occurred_at": local(NOW), "verifier_key": second}, page=url
    )
    assert r.status_code == 409 and 'data-code="product-on-hold"' in r.text
    assert "STOP — this product is on hold" in r.text and second not in r.text
    assert case_of(api, j.case["id"])["status"] == "at_site"


def test_shipment_form_courier_scans_and_factory_board(api: Api) -> None:
    j = scheduled(api, "MRN-F6")
    j.step("collected", hours=2)
    api.post("courier", "/api/v1/devices", {"device_id": "LOG-FORM-1"})
    ncc = Browser(api, "ncc")
    url = f"/cases/{j.case['id']}/shipments/new?direction=to_manufacturing"
    page = ncc.get(url).text
    assert 'value="NCC-EAST" readonly' in page and 'value="CELLARES-KASHIWA" readonly' in page
    assert 'value="FRESH_2_8" readonly' in page
    body = {
        "direction": "to_manufacturing",
        "origin": "NCC-EAST",
        "destination": "CELLARES-KASHIWA",
        "profile": "FRESH_2_8",
        "courier": "KASHIWA-COLD",
        "container_serial": "BOX-9",
        "container_kind": "insulated box 2-8 °C",
        "hold_time_h": "",
        "device_ids": "LOG-FORM-1",
        "coi": display(j.coi),
    }
    r = ncc.post(f"/cases/{j.case['id']}/shipments", body, page=url)
    assert r.status_code == 303, r.text
    ships = api.get("ncc", "/api/v1/shipments", params={"case_id": j.case["id"]}).json()["items"]
    assert len(ships) == 1 and ships[0]["status"] == "created"
    sid = ships[0]["id"]
    assert "shipment.created" in audit_actions(api, sid)
    courier = Browser(api, "courier")
    assert f'href="/courier/{sid}"' in courier.get("/courier").text
    scan = f"/courier/{sid}"
    form = courier.get(scan).text
    assert 'value="picked_up"' in form and 'value="delivered"' not in form
    wrong = courier.post(
        scan,
        {
            "action": "picked_up",
            "coi": "CHJ100126999999",
            "from_party": "NCC",
            "to_party": "KASHIWA-COLD",
        },
        page=scan,
    )
    assert wrong.status_code == 409 and STOP in wrong.text and "stop-phone" in wrong.text
    assert api.get("courier", f"/api/v1/shipments/{sid}").json()["status"] == "created"
    alerts = api.get("admin", "/api/v1/alerts", params={"case_id": j.case["id"]}).json()["items"]
    assert [a["shipment_id"] for a in alerts if a["kind"] == "coi_mismatch"] == [sid]
    picked = courier.post(
        scan,
        {
            "action": "picked_up",
            "coi": display(j.coi),
            "from_party": "NCC",
            "to_party": "KASHIWA-COLD",
            "lat": "35.9",
            "lon": "139.9",
        },
        page=scan,
    )
    assert picked.status_code == 303, picked.text
    assert api.get("courier", f"/api/v1/shipments/{sid}").json()["status"] == "in_transit"
    assert "shipment.picked_up" in audit_actions(api, sid)
    kashiwa = Browser(api, "kashiwa")
    board = kashiwa.get("/factory").text
    assert f'href="/cases/{j.case["id"]}/steps/received_at_manufacturing"' in board
    assert display(j.coi).split()[0] in board
    assert Browser(api, "bridgewater").get("/factory").text.count(j.case["id"]) == 0


def test_the_forms_speak_japanese(api: Api) -> None:
    j = scheduled(api, "MRN-F7")
    ncc = Browser(api, "ncc", **{"Accept-Language": "ja"})
    step = ncc.get(f"/cases/{j.case['id']}/steps/collected").text
    assert "採取を記録" in step and "識別ラベル（COI）をスキャン" in step
    cal = ncc.get(f"/cases/{j.case['id']}/schedule").text
    assert "アフェレーシスの予約" in cal
