"""Signed excursions are frozen; excursion changes are audited; late data is bounded.

From the user's side: readings through ``POST /readings``, QA's signature through the API, the
replay through the job the scheduler runs (``jobs.sweeps.reevaluate_marked``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlmodel import select

from app.clock import FrozenClock
from app.db import Database
from app.jobs import sweeps
from models.case import Case, ProductHold
from tests.coldchain.test_readings import MIN, in_transit, post, readings
from tests.conftest import Api
from tests.helpers import Journey

# FRESH_2_8: out of range above 8 °C, an alarm after 10 min, critical above 15 °C.
# Readings every 10 min from pickup: out at +10, peak 9.5, back in range at +40 (30 min, major).
EXCURSION = [5.0, 9.0, 9.5, 9.0, 5.0, 5.0]


def excursions(api: Api, shipment_id: str) -> list[dict[str, Any]]:
    r = api.get("qa", f"/api/v1/excursions?shipment_id={shipment_id}&limit=100")
    assert r.status_code == 200, r.text
    return sorted(r.json()["items"], key=lambda e: e["id"])


def row(database: Database, excursion_id: int) -> dict[str, Any]:
    """Every column of the stored excursion."""
    with database.engine.connect() as conn:
        found = conn.execute(text("SELECT * FROM excursion WHERE id = :i"), {"i": excursion_id})
        return dict(found.mappings().one())


def sign(api: Api, excursion_id: int, decision: str = "accept") -> dict[str, Any]:
    body = {
        "decision": decision,
        "reason": "within stability data",
        "signature": {"password_or_key": api.keys["qa"], "meaning": "approval"},
    }
    r = api.post("qa", f"/api/v1/excursions/{excursion_id}/disposition", body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def audit(api: Api, entity_id: int | None = None) -> list[dict[str, Any]]:
    url = "/api/v1/audit?entity=excursion&limit=200"
    if entity_id is not None:
        url += f"&entity_id={entity_id}"
    r = api.get("qa", url)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def open_alerts(api: Api) -> list[dict[str, Any]]:
    url = "/api/v1/alerts?kind=temperature_excursion&status=open"
    return list(api.get("qa", url).json()["items"])


def signed_excursion(
    api: Api, temps: list[float] = EXCURSION, every: int = 10
) -> tuple[Journey, dict[str, Any], Any, dict[str, Any]]:
    """A shipment with one closed excursion, signed by QA."""
    j, ship, t0 = in_transit(api)
    post(api, "courier", readings(ship["device_ids"][0], t0, temps, every=every))
    (exc,) = excursions(api, ship["id"])
    assert exc["status"] == "closed"  # closed before it is signed (409 excursion-open)
    sign(api, exc["id"])
    (signed,) = excursions(api, ship["id"])
    return j, ship, t0, signed


def held(api: Api, database: Database, case_id: str) -> str | None:
    """The case's hold status as the API shows it (checked against the stored column)."""
    hold = api.get("ncc", f"/api/v1/cases/{case_id}").json()["hold"]
    with database.session() as session:
        found = session.get(Case, case_id)
        assert found is not None
        assert (hold or {}).get("status") == found.hold_status
    return None if hold is None else str(hold["status"])


def test_a_late_colder_reading_never_changes_the_signed_record_but_opens_one_referring_to_it(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    j, ship, t0, signed = signed_excursion(api)
    stored = row(database, signed["id"])
    assert open_alerts(api) == []  # signing resolved the excursion's alert
    clock.advance(seconds=25)
    late = post(api, "courier", readings(ship["device_ids"][0], t0 + 25 * MIN, [14.0]))
    assert late["accepted"] == 1
    assert sweeps.reevaluate_marked(database, now=clock()) == 1

    got = excursions(api, ship["id"])
    assert got[0] == signed  # what the API shows of the signed record, unchanged
    assert row(database, signed["id"]) == stored  # and every stored column, byte for byte
    (new,) = got[1:]
    assert new["refers_to_id"] == signed["id"]
    assert (new["kind"], new["peak_c"], new["disposition"]) == ("high", 14.0, None)
    # It cannot start where the signed one does: it starts at the first reading QA never saw.
    assert new["started_at"] == (t0 + 25 * MIN).isoformat().replace("+00:00", "Z")
    (alert,) = open_alerts(api)
    assert f"signed excursion {signed['id']}" in alert["message"]
    assert held(api, database, j.case["id"]) == "on_hold"
    with database.session() as session:
        holds = session.exec(select(ProductHold).where(ProductHold.case_id == j.case["id"])).all()
    assert [(h.action, h.source, h.by) for h in holds] == [
        ("place", f"reassess:{signed['id']}", "system:coldchain")
    ]
    created = audit(api, new["id"])
    assert [e["action"] for e in created] == ["excursion.created"]
    assert created[0]["actor"] == "system:coldchain"
    assert created[0]["after"]["refers_to_id"] == signed["id"]
    assert created[0]["after"]["peak_c"] == 14.0

    # Replaying again (more late data elsewhere) keeps one referring excursion, one hold.
    clock.advance(minutes=5)
    post(api, "courier", readings(ship["device_ids"][0], t0 + 45 * MIN, [5.0]))
    sweeps.reevaluate_marked(database, now=clock())
    assert [e["id"] for e in excursions(api, ship["id"])] == [signed["id"], new["id"]]
    assert row(database, signed["id"]) == stored
    assert len(open_alerts(api)) == 1
    with database.session() as session:
        assert len(session.exec(select(ProductHold)).all()) == 1
    assert [e["action"] for e in audit(api, new["id"])] == ["excursion.created"]

    # QA signs the referring one; a late in-range reading ending it sooner changes neither.
    sign(api, new["id"])
    frozen = [row(database, signed["id"]), row(database, new["id"])]
    post(api, "courier", readings(ship["device_ids"][0], t0 + 35 * MIN, [5.0]))
    sweeps.reevaluate_marked(database, now=clock())
    assert [row(database, signed["id"]), row(database, new["id"])] == frozen
    assert len(excursions(api, ship["id"])) == 2
    assert open_alerts(api) == []
    assert audit(api, new["id"])[-1]["action"] == "excursion.late_readings"


def test_a_backfill_of_in_range_readings_keeps_the_signed_record_and_is_audited(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    # 22 minutes out of range, one reading a minute: a major excursion.
    temps = [5.0, *([9.0] * 22), 5.0]
    j, ship, t0, signed = signed_excursion(api, temps, every=2)
    stored = row(database, signed["id"])
    assert signed["severity"] == "major"
    before = len(audit(api))
    clock.advance(minutes=1)
    # 21 in-range readings between the out-of-range ones: 22 half-minute blips if recomputed.
    backfill = [
        {
            "device_id": ship["device_ids"][0],
            "ts": (t0 + (2 * i + 3) * MIN).isoformat(),
            "temp_c": 5.0,
        }
        for i in range(21)
    ]
    assert post(api, "courier", backfill)["accepted"] == 21
    assert sweeps.reevaluate_marked(database, now=clock()) == 1

    assert excursions(api, ship["id"]) == [signed]
    assert row(database, signed["id"]) == stored
    (finding,) = audit(api)[before:]
    assert finding["action"] == "excursion.late_readings"
    assert finding["entity_id"] == str(signed["id"])
    assert len(finding["after"]["recomputed"]) == 22
    assert finding["after"]["signed"]["severity"] == "major"
    assert held(api, database, j.case["id"]) is None  # nothing worse: no hold, no alert
    assert open_alerts(api) == []
    # Recorded once: another replay of the same readings adds nothing.
    post(api, "courier", readings(ship["device_ids"][0], t0 + 50 * MIN, [5.0]))
    post(api, "courier", readings(ship["device_ids"][0], t0 + 49 * MIN, [5.0]))
    sweeps.reevaluate_marked(database, now=clock())
    assert len(audit(api)) == before + 1


def test_an_earlier_start_is_a_longer_excursion_for_qa_to_reassess(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    j, ship, t0, signed = signed_excursion(api)
    clock.advance(minutes=1)
    post(api, "courier", readings(ship["device_ids"][0], t0 + 5 * MIN, [8.5]))
    sweeps.reevaluate_marked(database, now=clock())
    signed_now, new = excursions(api, ship["id"])
    assert signed_now == signed
    assert new["refers_to_id"] == signed["id"]
    assert new["started_at"] == (t0 + 5 * MIN).isoformat().replace("+00:00", "Z")
    assert new["duration_min"] == 35
    assert held(api, database, j.case["id"]) == "on_hold"


def test_a_replay_that_moves_an_unsigned_excursion_resolves_its_old_alert(
    api: Api, database: Database
) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    post(api, "courier", readings(device, t0 + 20 * MIN, [9.0, 9.5, 9.0, 5.0]))
    (old,) = excursions(api, ship["id"])
    (alert,) = open_alerts(api)
    # A late reading out of range before it: the excursion now starts 10 min earlier.
    post(api, "courier", readings(device, t0 + 10 * MIN, [9.2]))
    sweeps.reevaluate_marked(database, now=t0 + 2 * timedelta(hours=1))
    (moved,) = excursions(api, ship["id"])
    assert moved["started_at"] < old["started_at"] and moved["duration_min"] == 40
    (still_open,) = open_alerts(api)
    assert still_open["id"] != alert["id"]
    resolved = api.get("qa", "/api/v1/alerts?status=resolved").json()["items"]
    assert [a["id"] for a in resolved] == [alert["id"]]
    actions = {(e["entity_id"], e["action"]) for e in audit(api)}
    assert (str(old["id"]), "excursion.removed") in actions
    assert (str(moved["id"]), "excursion.created") in actions


def test_a_replay_that_removes_an_unsigned_excursion_resolves_its_alert(
    api: Api, database: Database
) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    post(api, "courier", readings(device, t0, [5.0, 9.0, 9.5, 9.0, 5.0]))
    (old,) = excursions(api, ship["id"])
    assert len(open_alerts(api)) == 1
    # In-range readings between the out-of-range ones: short blips that do not alarm.
    post(api, "courier", readings(device, t0 + 15 * MIN, [5.0, 5.0, 5.0], every=10))
    sweeps.reevaluate_marked(database, now=t0 + timedelta(hours=2))
    assert open_alerts(api) == []
    got = excursions(api, ship["id"])
    assert [e["duration_min"] for e in got] == [5, 5, 5]
    removed = [e for e in audit(api, old["id"]) if e["action"] == "excursion.changed"]
    assert removed and removed[-1]["after"]["severity"] == "warning"


def test_readings_before_pickup_tolerance_or_long_after_delivery_are_rejected_alone(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    j, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    items = [
        {"device_id": device, "ts": (t0 - 45 * MIN).isoformat(), "temp_c": 5.0},  # too early
        {"device_id": device, "ts": (t0 - 20 * MIN).isoformat(), "temp_c": 5.0},  # at packing
        {"device_id": device, "ts": (t0 + 10 * MIN).isoformat(), "temp_c": 5.0},
    ]
    result = post(api, "courier", items)
    assert result["accepted"] == 2
    assert result["rejected"] == [
        {"index": 0, "reason": "dated more than 30 min before its shipment's pickup"}
    ]
    clock.set(t0 + timedelta(hours=3, minutes=5))  # the delivery is recorded as it happens
    j.custody(ship, "delivered", hours=3)
    delivered = j.t
    clock.set(delivered + timedelta(hours=71))
    in_time = post(api, "courier", readings(device, t0 + 20 * MIN, [5.0, 5.0]))
    assert in_time["accepted"] == 2
    clock.set(delivered + timedelta(hours=73))
    late = [
        {"device_id": device, "ts": (t0 + 40 * MIN).isoformat(), "temp_c": 5.0},
        {"device_id": "NOT-OURS", "ts": (t0 + 40 * MIN).isoformat(), "temp_c": 5.0},
        {"device_id": device, "ts": (delivered + 10 * MIN).isoformat(), "temp_c": 5.0},
        {"device_id": device, "ts": (t0 + 50 * MIN).isoformat(), "temp_c": 5.0},
    ]
    result = post(api, "courier", late)
    assert result["accepted"] == 0
    assert result["rejected"] == [
        {"index": 0, "reason": "arrived more than 72 h after its shipment was delivered"},
        {"index": 1, "reason": "unknown device, or not one of your organisation's"},
        {"index": 2, "reason": "device is not assigned to a shipment at ts"},
        {"index": 3, "reason": "arrived more than 72 h after its shipment was delivered"},
    ]
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reading")).scalar_one() == 4


def test_the_pickup_tolerance_is_a_setting(api: Api) -> None:
    # A wider tolerance in the settings the app was built with.
    api.settings.reading_pickup_tolerance_min = 60
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    result = post(api, "courier", readings(device, t0 - 45 * MIN, [5.0]))
    assert result == {"accepted": 1, "duplicates": 0, "rejected": []}
    result = post(api, "courier", readings(device, t0 - 75 * MIN, [5.0]))
    assert result["rejected"] == [
        {"index": 0, "reason": "dated more than 60 min before its shipment's pickup"}
    ]
