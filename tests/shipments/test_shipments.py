"""Shipments and custody: linked to the journey, identity-checked, devices assigned by interval."""

from __future__ import annotations

from sqlalchemy import text

from app.db import Database
from tests.conftest import Api
from tests.helpers import Journey, iso

WRONG = "CHJ100126999999"


def test_pickup_and_delivery_drive_the_shipment_and_the_case(api: Api, database: Database) -> None:
    j = Journey(api)
    j.schedule()
    j.step("collected")
    ship = j.ship("to_manufacturing", "FRESH_2_8")
    assert ship["status"] == "created" and ship["coi"] == j.coi
    j.custody(ship, "picked_up")
    got = api.get("courier", f"/api/v1/shipments/{ship['id']}").json()
    assert got["status"] == "in_transit"
    assert api.get("ncc", f"/api/v1/cases/{j.case['id']}").json()["status"] == (
        "in_transit_to_manufacturing"
    )
    j.custody(ship, "handoff")
    j.custody(ship, "delivered")
    got = api.get("courier", f"/api/v1/shipments/{ship['id']}").json()
    assert got["status"] == "delivered"
    assert [c["action"] for c in got["custody"]] == ["picked_up", "handoff", "delivered"]
    assert got["excursion_summary"] == {
        "count": 0,
        "open": 0,
        "out_of_range_min": 0.0,
        "peak_c": None,
        "mkt_c": None,
    }
    with database.engine.connect() as conn:
        row = conn.execute(
            text("SELECT device_id, assigned_from, assigned_until FROM device_assignment")
        ).one()
    assert row[0] == ship["device_ids"][0] and row[1] is not None and row[2] is not None
    # The case still waits for the factory to record receipt with its own scan.
    assert api.get("ncc", f"/api/v1/cases/{j.case['id']}").json()["status"] == (
        "in_transit_to_manufacturing"
    )


def test_custody_with_a_wrong_label_is_refused_alerted_and_audited(api: Api) -> None:
    j = Journey(api)
    j.schedule()
    j.step("collected")
    ship = j.ship("to_manufacturing", "FRESH_2_8")
    r = api.post(
        "courier",
        f"/api/v1/shipments/{ship['id']}/custody",
        {
            "action": "picked_up",
            "occurred_at": iso(j.at(hours=1)),
            "from_party": "a",
            "to_party": "b",
            "coi": WRONG,
        },
    )
    assert r.status_code == 409 and r.json()["code"] == "coi-mismatch"
    assert api.get("courier", f"/api/v1/shipments/{ship['id']}").json()["status"] == "created"
    alerts = api.get("courier", "/api/v1/alerts?kind=coi_mismatch").json()["items"]
    assert len(alerts) == 1 and alerts[0]["severity"] == "critical"
    assert alerts[0]["shipment_id"] == ship["id"]
    audit = api.get("qa", f"/api/v1/audit?entity=case&entity_id={j.case['id']}").json()["items"]
    assert audit[-1]["action"] == "coi.mismatch" and audit[-1]["after"]["presented"] == WRONG


def test_custody_steps_out_of_order_are_refused(api: Api) -> None:
    j = Journey(api)
    j.schedule()
    j.step("collected")
    ship = j.ship("to_manufacturing", "FRESH_2_8")
    url = f"/api/v1/shipments/{ship['id']}/custody"
    body = {"from_party": "a", "to_party": "b", "coi": j.coi}
    r = api.post("courier", url, {**body, "action": "delivered", "occurred_at": iso(j.at(hours=1))})
    assert r.status_code == 409 and r.json()["code"] == "illegal-transition"
    # Backdated before the collection it carries: the physical order must hold.
    early = iso(j.t - __import__("datetime").timedelta(hours=5))
    r = api.post("courier", url, {**body, "action": "picked_up", "occurred_at": early})
    assert r.status_code == 422 and r.json()["code"] == "out-of-order"
    j.custody(ship, "picked_up")
    r = api.post("courier", url, {**body, "action": "picked_up", "occurred_at": iso(j.at(hours=1))})
    assert r.status_code == 409


def test_shipment_needs_the_case_label_and_one_open_shipment_per_direction(api: Api) -> None:
    j = Journey(api)
    j.schedule()
    bad = api.post(
        "ncc",
        "/api/v1/shipments",
        {
            "case_id": j.case["id"],
            "direction": "to_manufacturing",
            "origin": "NCC-EAST",
            "destination": "CELLARES-KASHIWA",
            "profile": "FRESH_2_8",
            "courier": "KASHIWA-COLD",
            "container": {"serial": "S1", "kind": "box"},
            "coi": WRONG,
        },
    )
    assert bad.status_code == 409 and bad.json()["code"] == "coi-mismatch"
    j.ship("to_manufacturing", "FRESH_2_8")
    again = api.post(
        "ncc",
        "/api/v1/shipments",
        {
            "case_id": j.case["id"],
            "direction": "to_manufacturing",
            "origin": "NCC-EAST",
            "destination": "CELLARES-KASHIWA",
            "profile": "FRESH_2_8",
            "courier": "KASHIWA-COLD",
            "container": {"serial": "S2", "kind": "box"},
            "coi": j.coi,
        },
    )
    assert again.status_code == 409 and again.json()["code"] == "shipment-exists"
    # A factory cannot ship the apheresis material on the hospital's behalf.
    maker = api.post(
        "kashiwa",
        "/api/v1/shipments",
        {
            "case_id": j.case["id"],
            "direction": "to_manufacturing",
            "origin": "NCC-EAST",
            "destination": "CELLARES-KASHIWA",
            "profile": "FRESH_2_8",
            "courier": "KASHIWA-COLD",
            "container": {"serial": "S3", "kind": "box"},
            "coi": j.coi,
        },
    )
    assert maker.status_code == 403


def test_alerts_are_acknowledged_once_and_audited(api: Api) -> None:
    j = Journey(api)
    j.schedule()
    r = api.post(
        "ncc",
        f"/api/v1/cases/{j.case['id']}/events",
        {"type": "collected", "occurred_at": iso(j.at(hours=1)), "site": "NCC-EAST", "coi": WRONG},
    )
    assert r.status_code == 409
    alert = api.get("ncc", "/api/v1/alerts?status=open").json()["items"][0]
    assert alert["case_id"] == j.case["id"]
    ack = api.post("ncc", f"/api/v1/alerts/{alert['id']}/ack", {"note": "wrong bag scanned"})
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
    assert ack.json()["acknowledged_by"] == "ncc"
    assert api.post("ncc", f"/api/v1/alerts/{alert['id']}/ack", {}).status_code == 409
    assert api.post("kyoto", f"/api/v1/alerts/{alert['id']}/ack", {}).status_code == 404
    assert api.get("ncc", "/api/v1/alerts?status=open").json()["items"] == []
    actions = [e["action"] for e in api.get("admin", "/api/v1/audit?entity=alert").json()["items"]]
    assert actions == ["alert.raised", "alert.acknowledged"]  # raising is audited too


def test_coordinator_registers_only_for_its_own_site(api: Api) -> None:
    r = api.post(
        "ncc",
        "/api/v1/cases",
        {
            "site": "UTOKYO-HOSP",
            "route": "TOKYO-KASHIWA",
            "product": "CART-CD19",
            "patient_ref": "M",
        },
    )
    assert r.status_code == 403
