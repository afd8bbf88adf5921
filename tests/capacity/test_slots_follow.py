"""Slots and predictions follow what really happened: receipt, cancellation, live position."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.db import Database
from app.jobs import delays
from tests.capacity.test_capacity import KASHIWA_POSITIONS, fill
from tests.conftest import NOW, Api
from tests.helpers import Journey, iso

TOKYO = ZoneInfo("Asia/Tokyo")
A = NOW - timedelta(days=3)  # apheresis of the case under test
LATER = A + timedelta(days=7, hours=12)  # apheresis of the cases that fill the factory


def case_of(api: Api, case_id: str) -> dict[str, Any]:
    r = api.get("ncc", f"/api/v1/cases/{case_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def booked(api: Api, day: datetime) -> int:
    date = day.astimezone(TOKYO).date().isoformat()
    r = api.get(
        "kashiwa", f"/api/v1/slots/availability?site=CELLARES-KASHIWA&from={date}&to={date}"
    )
    assert r.status_code == 200, r.text
    return int(r.json()["days"][0]["booked"])


def slot_conflicts(case: dict[str, Any]) -> list[str]:
    return [a["status"] for a in case["alerts"] if a["kind"] == "slot_conflict"]


def test_the_slot_moves_to_the_actual_receipt_and_a_full_factory_raises_slot_conflict(
    api: Api,
) -> None:
    j = Journey(api, start=A)
    j.schedule()
    planned = case_of(api, j.case["id"])["slot"]
    length = datetime.fromisoformat(planned["end_at"]) - datetime.fromisoformat(planned["start_at"])
    # The week after the planned slot is fully booked.
    fill(api, KASHIWA_POSITIONS, when=LATER)
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(shipment, "picked_up")
    j.custody(shipment, "delivered")
    # The material waited at the dock: received two days after apheresis, not 40 min.
    received = j.step("received_at_manufacturing", hours=45.5)
    receipt = datetime.fromisoformat(received["occurred_at"])
    case = case_of(api, j.case["id"])
    assert datetime.fromisoformat(case["slot"]["start_at"]) == receipt
    assert datetime.fromisoformat(case["slot"]["end_at"]) == receipt + length
    # The material is there: the move stands, and the overlap with the full week is flagged.
    assert slot_conflicts(case) == ["open"]
    assert booked(api, LATER + timedelta(days=1)) == KASHIWA_POSITIONS + 1

    # QA corrects the receipt time (it was received on arrival): the slot follows, and fits.
    actual = A + timedelta(hours=3.5)
    r = api.post(
        "qa",
        f"/api/v1/cases/{j.case['id']}/milestones/{received['id']}/corrections",
        {
            "action": "amend",
            "occurred_at": iso(actual),
            "reason": "receipt scanned late; received on delivery",
            "signature": {"password_or_key": api.keys["qa"], "meaning": "correction"},
        },
    )
    assert r.status_code == 201, r.text
    case = case_of(api, j.case["id"])
    assert datetime.fromisoformat(case["slot"]["start_at"]) == actual
    assert datetime.fromisoformat(case["slot"]["end_at"]) == actual + length
    assert slot_conflicts(case) == ["resolved"]
    assert case["durations"]["collection_to_receipt_h"] == 2.5

    # Cancelling frees the position.
    middle = A + timedelta(days=5)
    assert booked(api, middle) == 1
    j.step("cancelled")
    assert case_of(api, j.case["id"])["slot"] is None
    assert booked(api, middle) == 0


def test_a_manufacturing_failure_frees_the_slot_and_voiding_it_gives_it_back(api: Api) -> None:
    j = Journey(api)
    j.schedule()
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(shipment, "picked_up")
    j.custody(shipment, "delivered")
    j.step("received_at_manufacturing", hours=0.5)
    j.step("manufacturing_started", coi=False)
    slot = case_of(api, j.case["id"])["slot"]
    assert slot is not None
    failed = j.step("manufacturing_failed", coi=False)
    assert case_of(api, j.case["id"])["slot"] is None
    r = api.post(
        "kashiwa",
        f"/api/v1/cases/{j.case['id']}/milestones/{failed['id']}/corrections",
        {
            "action": "void",
            "reason": "QC result belonged to another batch",
            "signature": {"password_or_key": api.keys["kashiwa"], "meaning": "correction"},
        },
    )
    assert r.status_code == 201, r.text
    case = case_of(api, j.case["id"])
    assert (case["status"], case["slot"]) == ("in_manufacturing", slot)


def test_a_shipment_far_off_its_route_puts_the_receipt_at_risk_as_its_eta_says(
    api: Api, database: Database
) -> None:
    j = Journey(api, start=NOW - timedelta(hours=4))
    j.schedule()
    j.step("collected")  # NOW - 3 h; KASHIWA-LOCAL: receipt due within 6 h
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(shipment, "picked_up")
    assert delays.delay_sweep(database, now=NOW) == 0  # 1.4 km by road: on time

    # The logger reports from Sendai, some 300 km north.
    reading = {
        "device_id": shipment["device_ids"][0],
        "ts": iso(NOW - timedelta(hours=1)),
        "temp_c": 5.0,
        "lat": 38.2682,
        "lon": 140.8694,
    }
    r = api.post("courier", "/api/v1/readings", {"readings": [reading]})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    eta = datetime.fromisoformat(
        api.get("ncc", f"/api/v1/shipments/{shipment['id']}").json()["eta"]
    )
    collected = datetime.fromisoformat(case_of(api, j.case["id"])["milestones"][0]["occurred_at"])
    assert eta > collected + timedelta(hours=6)

    # A stored check is never older than half an hour for a shipment in transit.
    delays.delay_sweep(database, now=NOW + timedelta(minutes=31))
    at_risk = api.get("ncc", "/api/v1/alerts?kind=delay_at_risk&status=open").json()["items"]
    (alert,) = [a for a in at_risk if "received at manufacturing" in a["message"]]
    assert alert["case_id"] == j.case["id"]
    # The prediction is the shipment's ETA, to the minute the message shows.
    assert eta.strftime("%Y-%m-%d %H:%M UTC") in alert["message"]
