"""Reading ingest through HTTP: per-item validation, duplicates, devices by interval, excursions."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from app.clock import FrozenClock
from app.db import Database
from app.jobs import sweeps
from app.raw import Raw
from app.services.access import principals
from app.services.coldchain import ingest, rides
from models.principal import Principal, Role
from tests.conftest import NOW, Api
from tests.helpers import Journey

MIN = timedelta(minutes=1)


def in_transit(api: Api, patient: str = "MRN-R1") -> tuple[Journey, dict[str, Any], datetime]:
    j = Journey(api, patient=patient)
    j.schedule()
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(shipment, "picked_up")
    return j, shipment, j.t


def readings(
    device: str, start: datetime, temps: list[float], every: int = 10
) -> list[dict[str, Any]]:
    return [
        {"device_id": device, "ts": (start + i * every * MIN).isoformat(), "temp_c": t}
        for i, t in enumerate(temps)
    ]


def post(api: Api, persona: str, items: list[Any]) -> dict[str, Any]:
    r = api.post(persona, "/api/v1/readings", {"readings": items})
    assert r.status_code == 200, r.text
    return dict(r.json())


def count(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM reading")).scalar_one())


def test_batch_stores_good_items_rejects_bad_ones_alone_and_counts_resends(
    api: Api, database: Database
) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    good = readings(device, t0, [5.0, 5.1, 5.2])
    bad = [
        {"device_id": device, "ts": "2026-11-01T00:00:00", "temp_c": 5},  # naive
        {"device_id": device, "ts": (t0 + 40 * MIN).isoformat(), "temp_c": "warm"},
        {"device_id": device, "ts": (t0 + 50 * MIN).isoformat()},
        {"device_id": device, "ts": (t0 + 60 * MIN).isoformat(), "temp_c": 5, "pressure": 1},
        {"device_id": "NOT-OURS", "ts": (t0 + 70 * MIN).isoformat(), "temp_c": 5},
        {"device_id": device, "ts": (t0 - 60 * MIN).isoformat(), "temp_c": 5},  # before pickup
        {"device_id": device, "ts": (NOW + 60 * MIN).isoformat(), "temp_c": 5},  # future
        {"device_id": device, "ts": (t0 + 80 * MIN).isoformat(), "temp_c": 1e9},
        "not an object",
    ]
    result = post(api, "courier", good[:2] + bad + good[2:] + [good[0]])
    assert result["accepted"] == 3
    assert result["duplicates"] == 1  # the same (device, ts) twice in one batch
    assert [r["index"] for r in result["rejected"]] == list(range(2, 11))
    reasons = " | ".join(r["reason"] for r in result["rejected"])
    for fragment in (
        "UTC offset",
        "temp_c",
        "unknown field",
        "not one of your",
        "before its shipment's pickup",  # 60 min before it: beyond the 30 min tolerance
        "future",
        "implausible",
        "JSON object",
    ):
        assert fragment in reasons
    assert count(database) == 3
    again = post(api, "courier", good)
    assert again == {"accepted": 0, "duplicates": 3, "rejected": []}
    assert count(database) == 3


def test_a_resend_with_new_readings_stores_and_counts_only_the_new(
    api: Api, database: Database
) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    first = readings(device, t0, [5.0, 5.1, 5.2])
    assert post(api, "courier", first)["accepted"] == 3
    more = readings(device, t0, [5.0, 5.1, 5.2, 5.3, 5.4])  # the first three sent again
    assert post(api, "courier", more) == {"accepted": 2, "duplicates": 3, "rejected": []}
    assert count(database) == 5
    with database.engine.connect() as conn:
        counted = conn.execute(
            text("SELECT n FROM shipment_state WHERE shipment_id = :s"), {"s": ship["id"]}
        ).scalar_one()
    assert counted == 5  # the detector saw each reading once


def test_whole_body_errors_are_problems_and_store_nothing(api: Api, database: Database) -> None:
    for body, status in (
        ({"readings": "x"}, 422),
        ({"nope": []}, 422),
        ({"readings": [{}] * 10_001}, 422),
    ):
        r = api.post("courier", "/api/v1/readings", body)
        assert r.status_code == status
        assert r.headers["content-type"].startswith("application/problem+json")
    r = api.client.post(
        "/api/v1/readings",
        content="{bad",
        headers={**api.headers("courier"), "content-type": "application/json"},
    )
    assert r.status_code == 422
    assert api.post("ncc", "/api/v1/readings", {"readings": []}).status_code == 403
    assert count(database) == 0


def test_other_courier_and_device_keys_only_post_their_own(api: Api, database: Database) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    result = post(api, "global", readings(device, t0, [5.0]))
    assert result["accepted"] == 0 and "not one of your" in result["rejected"][0]["reason"]
    api.key("logger", Role.device, courier="KASHIWA-COLD", device_id=device)
    assert post(api, "logger", readings(device, t0, [5.0]))["accepted"] == 1
    other = post(api, "logger", [{"device_id": "LOG-OTHER", "ts": t0.isoformat(), "temp_c": 5}])
    assert other["accepted"] == 0


def test_a_reused_logger_attaches_each_reading_to_the_shipment_it_was_in(
    api: Api, database: Database, clock: FrozenClock
) -> None:
    j, first, t0 = in_transit(api, "MRN-A")
    device = first["device_ids"][0]
    j.custody(first, "delivered", hours=2)
    delivered = j.t
    # The same logger goes out again with another patient's material.
    k = Journey(api, patient="MRN-B", start=delivered + timedelta(hours=1))
    k.schedule()
    k.step("collected")
    body = {
        "case_id": k.case["id"],
        "direction": "to_manufacturing",
        "origin": "NCC-EAST",
        "destination": "CELLARES-KASHIWA",
        "profile": "FRESH_2_8",
        "courier": "KASHIWA-COLD",
        "container": {"serial": "C2", "kind": "box"},
        "device_ids": [device],
        "coi": k.coi,
    }
    second = api.post("ncc", "/api/v1/shipments", body).json()
    k.custody(second, "picked_up")
    # Uploaded soon after (not 40 days after the first delivery: that is past the late bound).
    clock.set(k.t + timedelta(hours=1))
    items = readings(device, t0, [5.0] * 12) + readings(device, k.t, [6.0] * 6)
    gap = {"device_id": device, "ts": (delivered + 30 * MIN).isoformat(), "temp_c": 5}
    result = post(api, "courier", [*items, gap])
    assert result["accepted"] == 18 and result["rejected"][0]["index"] == 18
    with database.engine.connect() as conn:
        rows = dict(
            conn.execute(
                text("SELECT shipment_id, count(*) FROM reading GROUP BY shipment_id")
            ).all()
        )
    assert rows == {first["id"]: 12, second["id"]: 6}


def test_an_excursion_raises_one_alert_that_is_updated_not_duplicated(api: Api) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    post(api, "courier", readings(device, t0, [5, 5, 9, 9.5]))
    post(api, "courier", readings(device, t0 + 40 * MIN, [10, 9, 5, 5]))
    exc = api.get("ncc", f"/api/v1/excursions?shipment_id={ship['id']}").json()["items"]
    assert len(exc) == 1
    e = exc[0]
    assert (e["kind"], e["severity"], e["status"], e["peak_c"]) == ("high", "major", "closed", 10)
    assert e["duration_min"] == 40  # out at +20 min, back in range at +60 min
    alerts = api.get("ncc", "/api/v1/alerts?kind=temperature_excursion").json()["items"]
    assert len(alerts) == 1 and alerts[0]["severity"] == "major"
    summary = api.get("courier", f"/api/v1/shipments/{ship['id']}").json()
    assert summary["excursion_summary"]["count"] == 1
    assert summary["excursion_summary"]["out_of_range_min"] == 40
    assert summary["last_reading"]["temp_c"] == 5


def test_late_readings_are_reevaluated_to_the_in_order_result(api: Api, database: Database) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    temps = [5, 5, 9, 9, 9, 5, 5, 16, 5, 5]
    items = readings(device, t0, temps)
    post(api, "courier", items[5:])
    post(api, "courier", items[:5])  # arrives late: older than the watermark
    assert sweeps.reevaluate_marked(database, now=NOW) == 1
    got = api.get("ncc", f"/api/v1/excursions?shipment_id={ship['id']}").json()["items"]
    assert sorted((e["kind"], e["duration_min"], e["peak_c"]) for e in got) == [
        ("critical_high", 10, 16),
        ("high", 30, 9),
    ]
    assert sweeps.reevaluate_marked(database, now=NOW) == 0


def test_trace_downsampling_keeps_every_peak(api: Api) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    temps = [5.0] * 300
    temps[137] = 12.5
    temps[211] = 1.5
    post(api, "courier", readings(device, t0, temps, every=1))
    trace = api.get("ncc", f"/api/v1/shipments/{ship['id']}/readings?max_points=20").json()
    assert len(trace["points"]) <= 20
    assert max(p["max_c"] for p in trace["points"]) == 12.5
    assert min(p["min_c"] for p in trace["points"]) == 1.5
    assert sum(p["n"] for p in trace["points"]) == 300
    assert trace["points"][0]["t"].endswith("Z")


def test_qa_disposition_needs_the_signers_own_credential(api: Api) -> None:
    _, ship, t0 = in_transit(api)
    post(api, "courier", readings(ship["device_ids"][0], t0, [5, 9, 9, 5]))
    exc = api.get("qa", f"/api/v1/excursions?shipment_id={ship['id']}").json()["items"][0]
    url = f"/api/v1/excursions/{exc['id']}/disposition"
    body = {
        "decision": "accept",
        "reason": "within stability data",
        "signature": {"password_or_key": api.keys["admin"], "meaning": "approval"},
    }
    assert api.post("qa", url, body).status_code == 403
    assert (
        api.post(
            "ncc",
            url,
            {**body, "signature": {"password_or_key": api.keys["ncc"], "meaning": "approval"}},
        ).status_code
        == 403
    )
    body["signature"]["password_or_key"] = api.keys["qa"]
    r = api.post("qa", url, body)
    assert r.status_code == 200, r.text
    signed = r.json()
    assert (signed["disposition"], signed["signed_by"], signed["signature_meaning"]) == (
        "accept",
        "qa",
        "approval",
    )
    assert signed["signed_at"].endswith("Z")
    assert api.post("qa", url, body).status_code == 409
    assert (
        api.get("qa", "/api/v1/alerts?kind=temperature_excursion&status=open").json()["items"] == []
    )
    audit = api.get("qa", f"/api/v1/audit?entity=excursion&entity_id={exc['id']}").json()["items"]
    # Its creation and changes by ingest are audited too; the signature is the last entry.
    assert audit[0]["action"] == "excursion.created"
    signature = audit[-1]
    assert signature["after"]["signed_by"] == "qa"
    assert signature["reason"] == "within stability data"


def test_loss_of_signal_fires_within_one_sweep_and_clears(api: Api, database: Database) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    post(api, "courier", readings(device, t0, [5, 5, 5]))
    last = t0 + 20 * MIN
    assert sweeps.loss_of_signal(database, now=last + 30 * MIN) == 0
    assert sweeps.loss_of_signal(database, now=last + 31 * MIN) == 1
    assert sweeps.loss_of_signal(database, now=last + 32 * MIN) == 1  # refreshed, not doubled
    open_alerts = api.get("ncc", "/api/v1/alerts?kind=loss_of_signal&status=open").json()["items"]
    assert len(open_alerts) == 1
    post(api, "courier", readings(device, last + 35 * MIN, [5]))
    sweeps.loss_of_signal(database, now=last + 36 * MIN)
    assert api.get("ncc", "/api/v1/alerts?kind=loss_of_signal&status=open").json()["items"] == []


def test_thaw_clock_warns_then_expires_then_clears_on_infusion(
    api: Api, database: Database
) -> None:
    j = Journey(api)
    j.schedule()
    j.step("collected")
    s = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(s, "picked_up")
    j.custody(s, "delivered")
    j.step("received_at_manufacturing")
    j.step("manufacturing_started", coi=False)
    j.step("qc_released", coi=False)
    out = j.ship("to_site", "CRYO_LN2")
    j.custody(out, "picked_up")
    j.custody(out, "delivered")
    j.step("received_at_site")
    j.step("thawed")
    thawed = j.t
    assert sweeps.thaw_clock(database, now=thawed + 29 * MIN) == 0
    sweeps.thaw_clock(database, now=thawed + 31 * MIN)
    (alert,) = api.get("ncc", "/api/v1/alerts?kind=thaw_window").json()["items"]
    assert alert["severity"] == "major"
    sweeps.thaw_clock(database, now=thawed + 181 * MIN)
    (alert,) = api.get("ncc", "/api/v1/alerts?kind=thaw_window").json()["items"]
    assert alert["severity"] == "critical" and "expired" in alert["message"]
    j.step("infused", hours=0.1)
    sweeps.thaw_clock(database, now=thawed + 182 * MIN)
    assert api.get("ncc", "/api/v1/alerts?kind=thaw_window&status=open").json()["items"] == []


@pytest.mark.parametrize("container_hold_h", [None, 100.0])
def test_dry_shipper_hold_time_at_risk(
    api: Api, database: Database, container_hold_h: float | None
) -> None:
    j = Journey(api, route="JP-US-EWR")
    j.schedule()
    j.step("collected")
    body = {
        "case_id": j.case["id"],
        "direction": "to_manufacturing",
        "origin": "NCC-EAST",
        "destination": "CELLARES-BRIDGEWATER",
        "profile": "CRYO_LN2",
        "courier": "GLOBAL-CRYO",
        "container": {"serial": "DS1", "kind": "dry shipper", "hold_time_h": container_hold_h},
        "coi": j.coi,
    }
    ship = api.post("ncc", "/api/v1/shipments", body).json()
    j.custody(ship, "picked_up")
    hold = container_hold_h or 240.0
    safe = j.t + timedelta(hours=hold * 0.7 - 1)
    assert sweeps.hold_time(database, now=safe) == 0
    assert sweeps.hold_time(database, now=safe + timedelta(hours=2)) == 1
    (alert,) = api.get("ncc", "/api/v1/alerts?kind=hold_time_at_risk").json()["items"]
    assert f"{hold:.0f} h hold time" in alert["message"]


def test_fresh_material_stability_limit(api: Api, database: Database) -> None:
    j, ship, picked = in_transit(api)
    collected = picked - timedelta(hours=1)
    assert sweeps.hold_time(database, now=collected + timedelta(hours=29.9)) == 0
    assert sweeps.hold_time(database, now=collected + timedelta(hours=30.5)) == 1
    (alert,) = api.get("ncc", "/api/v1/alerts?kind=hold_time_at_risk").json()["items"]
    assert alert["severity"] == "critical" and "stability limit 30 h" in alert["message"]


def test_rides_are_read_ahead_of_the_key_check_only_for_one_device(database: Database) -> None:
    """A live reading's rides go with its key's check in one round trip; a caller whose key
    then fails has made us read one device's rides at most, never a thousand devices'."""
    now = NOW
    one = readings("LOG-A", now, [5.0, 5.1])
    two = [*one, *readings("LOG-B", now, [5.0])]
    with database.session() as session:
        raw = Raw.of(session)

        def ahead_of(body: bytes) -> list[tuple[str, Any]]:
            return rides.read_ahead(raw, ingest.prepare_json(body, now=now).columns.device_ids)

        assert [params for _, params in ahead_of(_body(one))] == [["LOG-A"], ["LOG-A"]]
        assert ahead_of(_body(two)) == []
        assert ahead_of(b'{"readings": 1}') == []  # a refused body: no readings


def test_rides_read_ahead_are_used_only_for_the_same_devices(api: Api, database: Database) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    with database.session() as session:
        raw = Raw.of(session)
        couriers, intervals = raw.pipelined(rides.ride_reads(raw, [device]))
        courier = api_courier(couriers)
        actor = Principal(name="c", role=Role.courier, courier=courier)
        read = rides.Read((device,), couriers, intervals)
        owned, found = rides.owned_rides(session, actor, [device], read=read)
        assert owned == {device} and found.locate(device, _ms(t0) + 60_000)[0] == ship["id"]
        # Read for another device: not used, the rides are read again.
        stale = rides.Read(("LOG-ELSEWHERE",), [], [])
        owned, found = rides.owned_rides(session, actor, [device], read=stale)
        assert owned == {device} and found.locate(device, _ms(t0) + 60_000)[0] == ship["id"]
        # Read for this device, but empty: taken as read (nothing owned, no ride).
        empty = rides.Read((device,), [], [])
        assert rides.owned_rides(session, actor, [device], read=empty)[0] == set()


def _body(items: list[dict[str, Any]]) -> bytes:
    return json.dumps({"readings": items}).encode()


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def api_courier(couriers: list[tuple[Any, ...]]) -> str:
    (row,) = couriers
    return str(row[1])


def test_reads_go_with_a_key_only_once_that_key_has_worked(api: Api, database: Database) -> None:
    """A stranger's key (right shape, wrong secret) never makes us read anything but the key's
    own row, even under a prefix that has worked; a key reads ahead only after it has
    passed once in this process."""
    key = api.key("read-ahead courier", Role.courier, courier="KASHIWA-COLD")
    secret = api.settings.secret_key.get_secret_value()
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")

    def along(api_key: str) -> tuple[Principal | None, list[Any]]:
        with database.session() as session:
            raw = Raw.of(session)
            ahead = rides.ride_reads(raw, ["LOG-A"])
            return principals.authenticate_along(
                session, api_key=api_key, secret_key=secret, now=NOW, along=ahead
            )

    assert along(wrong) == (None, [])  # never passed: the key's row alone
    first, rows = along(key)
    assert first is not None and rows == []  # passes, but was not known to before
    again, rows = along(key)
    assert again is not None and len(rows) == 2  # known now: the reads went with it
    assert along(wrong)[0] is None  # a wrong secret under a known prefix is still refused
