"""Factory capacity: slots per day, a full factory, the race for the last position."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import text

from app.db import Database
from tests.conftest import NOW, Api
from tests.helpers import Journey, event, register

KASHIWA_POSITIONS = 32  # seeds: 2 Cell Shuttles × 16
APHERESIS = NOW + timedelta(days=10)


def schedule(api: Api, case_id: str, when: datetime) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = api.post("ncc", f"/api/v1/cases/{case_id}/schedule", {"apheresis_at": when.isoformat()})
    return r.status_code, r.json()


def fill(api: Api, n: int, when: datetime = APHERESIS, prefix: str = "FILL") -> list[str]:
    ids = []
    for i in range(n):
        case = register(api, patient=f"{prefix}-{i}")
        status, body = schedule(api, case["id"], when)
        assert status == 200, body
        ids.append(case["id"])
    return ids


def test_schedule_reserves_a_slot_at_the_predicted_arrival(api: Api) -> None:
    case = register(api)
    status, body = schedule(api, case["id"], APHERESIS)
    assert status == 200
    # The material arrives after the route's inbound legs; CART-CD19 takes 168 h.
    route = api.get("ncc", "/api/v1/routes/KASHIWA-LOCAL").json()
    inbound = sum(leg["expected_h"] for leg in route["legs"] if leg["direction"] == "inbound")
    assert 0.3 < inbound < 1.5  # 1.4 km by road plus handling
    start = APHERESIS + timedelta(hours=inbound)
    assert body["slot"]["site"] == "CELLARES-KASHIWA"
    assert datetime.fromisoformat(body["slot"]["start_at"]) == start
    assert datetime.fromisoformat(body["slot"]["end_at"]) == start + timedelta(hours=168)
    days = api.get(
        "ncc", "/api/v1/slots/availability?site=CELLARES-KASHIWA&from=2026-12-05&to=2026-12-15"
    ).json()["days"]
    booked = {d["date"]: d["booked"] for d in days}
    assert booked["2026-12-05"] == 0 and booked["2026-12-06"] == 1 and booked["2026-12-13"] == 1
    assert booked["2026-12-14"] == 0
    assert all(d["capacity"] == KASHIWA_POSITIONS for d in days)


def test_a_full_factory_answers_409_with_the_next_available_time(api: Api) -> None:
    ids = fill(api, KASHIWA_POSITIONS)
    case = register(api, patient="LATE")
    status, body = schedule(api, case["id"], APHERESIS + timedelta(days=2))
    assert status == 409 and body["code"] == "factory-full"
    nxt = datetime.fromisoformat(body["next_available_at"])
    # The first slots end 168 h after the fill's material arrives.
    assert nxt == APHERESIS + timedelta(hours=168)
    assert schedule(api, case["id"], nxt - timedelta(minutes=1))[0] == 409
    assert schedule(api, case["id"], nxt)[0] == 200
    # Cancelling a case frees its position.
    other = register(api, patient="LATE-2")
    assert schedule(api, other["id"], APHERESIS)[0] == 409
    r = event(api, "ncc", {"id": ids[0]}, "cancelled", NOW, "NCC-EAST")
    assert r.status_code == 201, r.text
    assert schedule(api, other["id"], APHERESIS)[0] == 200


def test_exactly_one_of_100_concurrent_bookings_gets_the_last_position(api: Api) -> None:
    fill(api, KASHIWA_POSITIONS - 1)
    racers = [register(api, patient=f"RACE-{i}")["id"] for i in range(100)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda cid: schedule(api, cid, APHERESIS)[0], racers))
    assert statuses.count(200) == 1 and statuses.count(409) == 99
    days = api.get(
        "kashiwa", "/api/v1/slots/availability?site=CELLARES-KASHIWA&from=2026-12-07&to=2026-12-07"
    ).json()["days"]
    assert days == [{"date": "2026-12-07", "capacity": 32, "booked": 32, "free": 0}]


def test_availability_bad_input(api: Api) -> None:
    base = "/api/v1/slots/availability"
    assert api.get("ncc", f"{base}?site=NCC-EAST").status_code == 422
    assert api.get("ncc", f"{base}?site=NOWHERE").status_code == 404
    assert (
        api.get("ncc", f"{base}?site=CELLARES-KASHIWA&from=2026-12-02&to=2026-12-01").status_code
        == 422
    )
    assert (
        api.get("ncc", f"{base}?site=CELLARES-KASHIWA&from=2026-01-01&to=2027-06-01").status_code
        == 422
    )
    assert api.get("ncc", f"{base}?site=CELLARES-KASHIWA&from=yesterday").status_code == 422


def test_rescheduling_moves_the_slot(api: Api) -> None:
    j = Journey(api)
    j.schedule()
    first = api.get("ncc", f"/api/v1/cases/{j.case['id']}").json()["slot"]
    status, body = schedule(api, j.case["id"], j.t + timedelta(days=3))
    assert status == 200 and body["slot"]["start_at"] != first["start_at"]
    assert api.get("ncc", f"/api/v1/cases/{j.case['id']}").json()["slot"] == body["slot"]


def test_a_factory_with_no_positions_refuses_every_booking(api: Api, database: Database) -> None:
    case = register(api)
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE site SET shuttles = 0 WHERE code = 'CELLARES-KASHIWA'"))
    status, body = schedule(api, case["id"], APHERESIS)
    assert status == 422, body
    assert body["detail"] == "factory CELLARES-KASHIWA has no manufacturing positions configured"
    assert api.get("ncc", f"/api/v1/cases/{case['id']}").json()["status"] == "registered"
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM slot")).scalar_one() == 0
