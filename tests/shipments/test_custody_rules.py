"""One shipment per logger, loggers registered by their courier, and receipt ends the transit."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from app.db import Database
from app.jobs import sweeps
from integrations import epcis
from tests.coldchain.test_readings import post, readings
from tests.conftest import Api
from tests.helpers import Journey, iso, register_devices
from tests.interop.test_epcis import capture, document

MIN = timedelta(minutes=1)
LOGGER = "LOG-NCC-0001"


def body(j: Journey, devices: list[str], direction: str = "to_manufacturing") -> dict[str, Any]:
    """A shipment of this case along its route, carrying these loggers."""
    inbound = direction == "to_manufacturing"
    return {
        "case_id": j.case["id"],
        "direction": direction,
        "origin": j.site if inbound else j.factory,
        "destination": j.factory if inbound else j.site,
        "profile": "FRESH_2_8" if inbound else "CRYO_LN2",
        "courier": j.courier_org,
        "container": {"serial": f"BOX-{j.case['id'][:6]}", "kind": "box"},
        "device_ids": devices,
        "coi": j.coi,
    }


def collected(api: Api, route: str = "KASHIWA-LOCAL", patient: str = "MRN-C1") -> Journey:
    j = Journey(api, route=route, patient=patient)
    j.schedule()
    j.step("collected")
    return j


def picked_up(api: Api, devices: list[str], patient: str = "MRN-C1") -> tuple[Journey, Any]:
    """An NCC East case whose fresh material is on the road with these loggers."""
    j = collected(api, patient=patient)
    register_devices(api, "courier", devices)
    ship = j.ok(api.post("ncc", "/api/v1/shipments", body(j, devices)))
    j.custody(ship, "picked_up")
    return j, ship


def pickup(api: Api, j: Journey, ship: dict[str, Any]) -> Any:
    return api.post(
        j.courier,
        f"/api/v1/shipments/{ship['id']}/custody",
        {
            "action": "picked_up",
            "occurred_at": iso(j.at(hours=1)),
            "from_party": "site",
            "to_party": "courier",
            "coi": j.coi,
        },
    )


def assignments(database: Database, shipment_id: str) -> list[tuple[str, Any]]:
    with database.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT device_id, assigned_until FROM device_assignment "
                "WHERE shipment_id = :s ORDER BY id"
            ),
            {"s": shipment_id},
        ).all()
    return [(str(r[0]), r[1]) for r in rows]


def reading_count(database: Database, shipment_id: str) -> int:
    with database.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM reading WHERE shipment_id = :s"), {"s": shipment_id}
            ).scalar_one()
        )


# ---- one open shipment per logger ------------------------------------------------------------


def test_another_sites_shipment_cannot_take_a_logger_riding_with_ncc_east(
    api: Api, database: Database
) -> None:
    """H2: UTokyo lists NCC East's logger while it rides in NCC East's open shipment."""
    ncc, ncc_ship = picked_up(api, [LOGGER])
    tokyo = collected(api, route="TOKYO-KASHIWA", patient="MRN-T1")
    r = api.post("utokyo", "/api/v1/shipments", body(tokyo, [LOGGER]))
    assert r.status_code == 409, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "device-in-use" and problem["device_id"] == LOGGER
    assert LOGGER in problem["detail"]
    # Nothing about NCC East's case or shipment leaks to UTokyo.
    assert "shipment_id" not in problem
    for secret in (ncc.case["id"], ncc.coi, ncc_ship["id"]):
        assert secret not in r.text
    assert api.get("utokyo", "/api/v1/shipments").json()["items"] == []
    # The logger's readings still go to NCC East's shipment.
    result = post(api, "courier", readings(LOGGER, ncc.t, [5.0, 5.1, 5.2]))
    assert result["accepted"] == 3
    assert reading_count(database, ncc_ship["id"]) == 3
    got = api.get("ncc", f"/api/v1/shipments/{ncc_ship['id']}").json()
    assert got["last_reading"]["temp_c"] == 5.2


def test_a_logger_listed_in_a_created_shipment_is_in_use_too(api: Api) -> None:
    ncc = collected(api)
    register_devices(api, "courier", [LOGGER])
    first = ncc.ok(api.post("ncc", "/api/v1/shipments", body(ncc, [LOGGER])))
    tokyo = collected(api, route="TOKYO-KASHIWA", patient="MRN-T1")
    r = api.post("utokyo", "/api/v1/shipments", body(tokyo, [LOGGER]))
    assert r.status_code == 409 and r.json()["code"] == "device-in-use"
    # The caller who may see the other shipment is told which one it is.
    other = collected(api, patient="MRN-C2")
    r = api.post("ncc", "/api/v1/shipments", body(other, [LOGGER]))
    assert r.status_code == 409 and r.json()["shipment_id"] == first["id"]
    # Cancelled, the first shipment frees its logger.
    cancel = api.post("ncc", f"/api/v1/shipments/{first['id']}/cancel", {"reason": "re-packed"})
    assert cancel.status_code == 200, cancel.text
    tokyo.ok(api.post("utokyo", "/api/v1/shipments", body(tokyo, [LOGGER])))


def test_pickup_refuses_a_logger_riding_in_another_open_shipment(
    api: Api, database: Database
) -> None:
    """A shipment recorded before the rule listed a logger now on the road elsewhere."""
    ncc, ncc_ship = picked_up(api, [LOGGER])
    tokyo = collected(api, route="TOKYO-KASHIWA", patient="MRN-T1")
    register_devices(api, "courier", ["LOG-TOKYO-1"])
    ship = tokyo.ok(api.post("utokyo", "/api/v1/shipments", body(tokyo, ["LOG-TOKYO-1"])))
    with database.engine.begin() as conn:
        conn.execute(
            text("UPDATE shipment SET device_ids = :d WHERE id = :s"),
            {"d": f'["LOG-TOKYO-1", "{LOGGER}"]', "s": ship["id"]},
        )
    r = pickup(api, tokyo, ship)
    assert r.status_code == 409 and r.json()["code"] == "device-in-use"
    assert r.json()["device_id"] == LOGGER and ncc.case["id"] not in r.text
    assert api.get("utokyo", f"/api/v1/shipments/{ship['id']}").json()["status"] == "created"
    assert assignments(database, ship["id"]) == []
    assert post(api, "courier", readings(LOGGER, ncc.t, [5.0]))["accepted"] == 1
    assert reading_count(database, ncc_ship["id"]) == 1


def test_a_delivered_logger_rides_again(api: Api, database: Database) -> None:
    ncc, ncc_ship = picked_up(api, [LOGGER])
    ncc.custody(ncc_ship, "delivered")
    tokyo = collected(api, route="TOKYO-KASHIWA", patient="MRN-T1")
    ship = tokyo.ok(api.post("utokyo", "/api/v1/shipments", body(tokyo, [LOGGER])))
    assert pickup(api, tokyo, ship).status_code == 201
    assert [d for d, until in assignments(database, ship["id"]) if until is None] == [LOGGER]


def test_epcis_pairing_uses_the_same_rule(api: Api) -> None:
    picked_up(api, [LOGGER])
    other = collected(api, patient="MRN-C2")
    register_devices(api, "courier", ["LOG-NCC-0002"])
    container = "urn:epc:id:grai:4012345.55555.4242"
    ship_body = {**body(other, ["LOG-NCC-0002"]), "container": {"serial": container, "kind": "b"}}
    ship = other.ok(api.post("ncc", "/api/v1/shipments", ship_body))
    pairing = {
        "type": "AssociationEvent",
        "eventTime": iso(other.t),
        "eventTimeZoneOffset": "+00:00",
        "parentID": container,
        "childEPCs": [epcis.id_uri(LOGGER)],
        "action": "ADD",
        "bizStep": "assembling",
    }
    result = capture(api, "courier", document(pairing))
    assert result["rejected"][0]["code"] == "device-in-use"
    got = api.get("ncc", f"/api/v1/shipments/{ship['id']}").json()
    assert got["device_ids"] == ["LOG-NCC-0002"]


# ---- who registers loggers -------------------------------------------------------------------


def test_only_the_loggers_courier_or_an_admin_registers_it(api: Api) -> None:
    url = "/api/v1/devices"
    r = api.post("ncc", url, {"device_id": "LOG-SQUAT", "courier": "KASHIWA-COLD"})
    assert r.status_code == 403
    assert api.post("kashiwa", url, {"device_id": "LOG-SQUAT"}).status_code == 403
    r = api.post("courier", url, {"device_id": "LOG-K-1"})
    assert r.status_code == 201 and r.json()["courier"] == "KASHIWA-COLD"
    assert api.post("courier", url, {"device_id": "LOG-K-1"}).status_code == 200
    # Not for another courier organisation, and not a logger another courier owns.
    r = api.post("courier", url, {"device_id": "LOG-G-1", "courier": "GLOBAL-CRYO"})
    assert r.status_code == 403
    r = api.post("global", url, {"device_id": "LOG-K-1"})
    assert r.status_code == 409 and r.json()["code"] == "device-owned"
    r = api.post("admin", url, {"device_id": "LOG-G-2", "courier": "GLOBAL-CRYO"})
    assert r.status_code == 201 and r.json()["courier"] == "GLOBAL-CRYO"
    audit = api.get("admin", "/api/v1/audit?entity=device").json()["items"]
    assert [(e["entity_id"], e["actor"]) for e in audit] == [
        ("LOG-K-1", "courier"),
        ("LOG-G-2", "admin"),
    ]
    for bad in (
        {},
        {"device_id": ""},
        {"device_id": "x" * 201},
        {"device_id": "L", "extra": 1},
        {"device_id": "L"},  # an admin names the courier
        {"device_id": "L", "courier": "NO-SUCH-COURIER"},
    ):
        r = api.post("admin", url, bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


def test_a_hospital_lists_only_loggers_its_courier_registered(api: Api) -> None:
    j = collected(api)
    r = api.post("ncc", "/api/v1/shipments", body(j, ["LOG-NEVER-SEEN"]))
    assert r.status_code == 422 and r.json()["code"] == "device-unknown"
    assert "KASHIWA-COLD must register it first" in r.json()["detail"]
    assert r.json()["errors"][0]["loc"] == "body/device_ids/0"
    # Squatting: a logger of another courier cannot ride with this one.
    register_devices(api, "global", ["LOG-GLOBAL-1"])
    r = api.post("ncc", "/api/v1/shipments", body(j, ["LOG-GLOBAL-1"]))
    assert r.status_code == 422 and "another courier" in r.json()["detail"]
    # Nothing was registered or created along the way.
    assert api.post("global", "/api/v1/devices", {"device_id": "LOG-NEVER-SEEN"}).status_code == 201
    assert api.get("ncc", "/api/v1/shipments").json()["items"] == []


# ---- receipt ends the transit ----------------------------------------------------------------


def open_alerts(api: Api, shipment_id: str) -> list[str]:
    items = api.get("admin", "/api/v1/alerts?status=open").json()["items"]
    return sorted(a["kind"] for a in items if a["shipment_id"] == shipment_id)


def test_receipt_delivers_a_shipment_the_courier_did_not(api: Api, database: Database) -> None:
    j, ship = picked_up(api, [LOGGER])
    picked = j.t
    post(api, "courier", readings(LOGGER, picked, [5.0, 5.0]))
    # Quiet for hours and past the fresh-material limit: both transit alerts are open.
    late = picked + timedelta(hours=31)
    assert sweeps.loss_of_signal(database, now=late) == 1
    assert sweeps.hold_time(database, now=late) == 1
    assert open_alerts(api, ship["id"]) == ["hold_time_at_risk", "loss_of_signal"]

    j.step("received_at_manufacturing", hours=2)  # the courier never scanned `delivered`
    received = j.t
    got = api.get("courier", f"/api/v1/shipments/{ship['id']}").json()
    assert got["status"] == "delivered"
    assert got["delivered_at"] == received.isoformat().replace("+00:00", "Z")
    last = got["custody"][-1]
    assert (last["action"], last["actor"]) == ("delivered", "system")
    assert [until is not None for _, until in assignments(database, ship["id"])] == [True]
    assert open_alerts(api, ship["id"]) == []
    audit = api.get("admin", f"/api/v1/audit?entity=shipment&entity_id={ship['id']}").json()
    entry = audit["items"][-1]
    assert entry["action"] == "shipment.delivered" and entry["actor"] == "kashiwa"
    assert "received_at_manufacturing" in entry["reason"]
    # The sweeps, run later, leave the delivered shipment alone.
    assert sweeps.loss_of_signal(database, now=late + timedelta(hours=5)) == 0
    assert sweeps.hold_time(database, now=late + timedelta(hours=5)) == 0
    assert open_alerts(api, ship["id"]) == []
    # Later readings of the logger no longer land in this shipment.
    after = post(api, "courier", readings(LOGGER, received + 5 * MIN, [4.0]))
    assert after["accepted"] == 0
    # The courier's own late `delivered` scan is refused: the shipment is over.
    r = api.post(
        "courier",
        f"/api/v1/shipments/{ship['id']}/custody",
        {
            "action": "delivered",
            "occurred_at": iso(j.at(hours=1)),
            "from_party": "a",
            "to_party": "b",
            "coi": j.coi,
        },
    )
    assert r.status_code == 409


def test_receipt_at_site_delivers_the_outbound_shipment(api: Api, database: Database) -> None:
    j, inbound = picked_up(api, [LOGGER])
    j.custody(inbound, "delivered")
    j.step("received_at_manufacturing")
    j.step("manufacturing_started", coi=False)
    j.step("qc_released", coi=False)
    register_devices(api, "courier", ["LOG-CRYO-1"])
    out = j.ok(api.post("kashiwa", "/api/v1/shipments", body(j, ["LOG-CRYO-1"], "to_site")))
    j.custody(out, "picked_up")
    assert sweeps.loss_of_signal(database, now=j.t + timedelta(hours=2)) == 1
    j.step("received_at_site", hours=3)
    got = api.get("ncc", f"/api/v1/shipments/{out['id']}").json()
    assert got["status"] == "delivered" and got["custody"][-1]["actor"] == "system"
    assert open_alerts(api, out["id"]) == []
    assert assignments(database, out["id"])[0][1] is not None
    # The inbound shipment, delivered by its courier, is untouched.
    got_in = api.get("ncc", f"/api/v1/shipments/{inbound['id']}").json()
    assert [c["actor"] for c in got_in["custody"]] == ["courier", "courier"]


def test_the_couriers_delivery_closes_the_transit_alerts(api: Api, database: Database) -> None:
    j, ship = picked_up(api, [LOGGER])
    assert sweeps.loss_of_signal(database, now=j.t + timedelta(hours=1)) == 1
    assert sweeps.hold_time(database, now=j.t + timedelta(hours=31)) == 1
    j.custody(ship, "delivered")
    assert open_alerts(api, ship["id"]) == []
    resolved = api.get("admin", "/api/v1/alerts?status=resolved").json()["items"]
    assert {a["kind"] for a in resolved} == {"loss_of_signal", "hold_time_at_risk"}
    assert [until is not None for _, until in assignments(database, ship["id"])] == [True]
    assert sweeps.loss_of_signal(database, now=j.t + timedelta(hours=40)) == 0


def test_of_eight_shipments_created_at_once_with_one_logger_exactly_one_takes_it(
    api: Api, database: Database
) -> None:
    """The race the devices' row locks settle: each creation reads who holds the logger only
    after it holds the lock, so a shipment created a moment before is always seen."""
    journeys = [collected(api, patient=f"MRN-RACE-{i}") for i in range(8)]
    register_devices(api, "courier", [LOGGER])
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(
            pool.map(lambda j: api.post("ncc", "/api/v1/shipments", body(j, [LOGGER])), journeys)
        )
    codes = sorted((r.status_code, r.json().get("code")) for r in answers if r.status_code != 201)
    assert [r.status_code for r in answers].count(201) == 1, [r.text for r in answers]
    assert codes == [(409, "device-in-use")] * 7
    with database.engine.connect() as conn:
        listed = conn.execute(text("SELECT count(*) FROM shipment")).scalar_one()
    assert listed == 1
