"""Courier feeds: scans become custody and move the journey, bad events are refused alone, the
token is never shown, feeds are configured with checks."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.config import Settings
from app.db import Database
from app.errors import Invalid
from app.scheduler import default_jobs
from app.services.coldchain import ingest as readings_service
from app.services.interop import courier as feeds
from integrations import courier as couriers
from models.courier_feed import CourierFeed
from models.principal import Principal
from tests.conftest import NOW, Api
from tests.helpers import Journey
from tests.interop.test_courier import (
    BASE,
    MIN,
    TOKEN,
    FakeCourier,
    configure,
    feed,
    in_transit,
    page,
    poll,
    reading,
    reading_rows,
    scan,
)


def test_scans_become_custody_and_move_the_journey(
    api: Api, database: Database, settings: Settings
) -> None:
    j = Journey(api, patient="MRN-K2")
    j.schedule()
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    device, t0 = shipment["device_ids"][0], j.t
    serial = "C-to_manufacturing"
    fake = FakeCourier(
        {
            None: page(
                [
                    scan(serial, "picked_up", t0 + 10 * MIN, j.coi, lat=35.90, lon=139.94),
                    reading(device, t0 + 20 * MIN),
                    scan(shipment["id"], "handoff", t0 + 30 * MIN, f"&/{j.coi}"),
                    reading(device, t0 + 40 * MIN),
                    scan(serial, "delivered", t0 + 50 * MIN, j.coi),
                ],
                "c1",
            )
        }
    )
    configure(database)
    assert poll(database, settings, fake) == 5
    assert reading_rows(database) == (2, 2)  # readings after the pickup found the logger assigned
    body = api.get("admin", f"/api/v1/shipments/{shipment['id']}").json()
    assert body["status"] == "delivered"
    assert [c["action"] for c in body["custody"]] == ["picked_up", "handoff", "delivered"]
    assert {c["actor"] for c in body["custody"]} == {"courier feed KASHIWA-COLD"}
    assert body["custody"][0]["lat"] == 35.90
    case = api.get("admin", f"/api/v1/cases/{j.case['id']}").json()
    assert case["status"] == "in_transit_to_manufacturing"
    trail = api.get("admin", f"/api/v1/audit?entity=shipment&entity_id={shipment['id']}").json()
    actions = [e["action"] for e in trail["items"]]
    assert "shipment.picked_up" in actions and "shipment.delivered" in actions
    assert feed(database).events_rejected == 0


def test_bad_events_are_rejected_alone(api: Api, database: Database, settings: Settings) -> None:
    j, shipment, t0 = in_transit(api)
    device = shipment["device_ids"][0]
    other = Journey(api, route="JP-US-EWR", patient="MRN-K3")
    other.schedule()
    other.step("collected")
    foreign = other.ship("to_manufacturing", "CRYO_LN2")  # GLOBAL-CRYO's shipment
    wrong_coi = other.coi
    events: list[Any] = [
        reading(device, t0 + 10 * MIN),  # 0 ok
        reading("LOG-NOT-OURS", t0 + 11 * MIN),  # 1
        {**reading(device, t0), "ts": "2026-10-01T00:00:00"},  # 2 naive
        "not an object",  # 3
        {"type": "weather", "temp_c": 5},  # 4
        scan("NO-SUCH-REF", "handoff", t0 + 12 * MIN, j.coi),  # 5
        scan(foreign["id"], "picked_up", t0 + 12 * MIN, other.coi),  # 6 another courier's
        scan(shipment["id"], "handoff", t0 + 13 * MIN, wrong_coi),  # 7 wrong label
        {**scan(shipment["id"], "handoff", t0 + 14 * MIN, j.coi), "to_party": ""},  # 8
        scan(shipment["id"], "picked_up", t0 + 15 * MIN, j.coi),  # 9 already picked up
        scan(shipment["id"], "handoff", NOW + timedelta(hours=1), j.coi),  # 10 future
        scan(shipment["id"], "handoff", t0 + 20 * MIN, j.coi, courier_note="x"),  # 11 ok
        reading(device, t0 + 30 * MIN, temp=4.5),  # 12 ok
    ]
    fake = FakeCourier({None: page(events, "c1")})
    configure(database)
    assert poll(database, settings, fake) == len(events)

    row = feed(database)
    assert row.cursor == "c1" and row.last_error is None
    rejected = {r["index"]: r for r in row.recent_rejections}
    assert sorted(rejected) == list(range(1, 11))
    assert row.events_rejected == 10
    assert {r["cursor"] for r in row.recent_rejections} == {None}
    assert "not one of your" in rejected[1]["reason"]
    assert "UTC offset" in rejected[2]["reason"]
    assert "unknown event type" in rejected[3]["reason"]
    assert rejected[4]["type"] == "weather"
    assert "unknown shipment_ref" in rejected[5]["reason"]
    assert "unknown shipment_ref" in rejected[6]["reason"]
    assert rejected[7]["reason"].startswith("coi-mismatch")
    assert rejected[8]["reason"].startswith("to_party")
    assert rejected[9]["reason"].startswith("illegal-transition")
    assert "future" in rejected[10]["reason"]
    assert reading_rows(database) == (2, 2)
    body = api.get("admin", f"/api/v1/shipments/{shipment['id']}").json()
    assert [c["action"] for c in body["custody"]] == ["picked_up", "handoff"]
    alerts = api.get("admin", "/api/v1/alerts?kind=coi_mismatch").json()["items"]
    assert [(a["severity"], a["case_id"]) for a in alerts] == [("critical", j.case["id"])]
    foreign_now = api.get("admin", f"/api/v1/shipments/{foreign['id']}").json()
    assert foreign_now["status"] == "created"


def test_the_token_is_used_but_never_shown(
    api: Api, database: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    configure(database, token="wrong-" + TOKEN)
    fake = FakeCourier({None: page([], None)})
    sleeps: list[float] = []
    with caplog.at_level(logging.DEBUG):
        assert poll(database, settings, fake, sleeps=sleeps) == 0
    assert sleeps == []  # a 401 is not retried
    row = feed(database)
    assert row.last_error is not None and "HTTP 401" in row.last_error
    assert TOKEN not in caplog.text and TOKEN not in row.last_error
    assert TOKEN not in repr(row)
    configure(database)  # the right token now
    assert poll(database, settings, fake) == 0
    assert feed(database).last_error is None
    with database.engine.connect() as conn:
        audit_rows = conn.execute(text("SELECT before, after FROM audit_log")).all()
    assert audit_rows and TOKEN not in json.dumps([list(map(str, r)) for r in audit_rows])
    # The feed's principal records custody but no API key logs in as it.
    principal_id = feed(database).principal_id
    assert principal_id is not None
    with database.session() as session:
        principal = session.get(Principal, principal_id)
        assert principal is not None and principal.role == "courier"
        prefix = principal.key_prefix
    r = api.client.get("/api/v1/me", headers={"Authorization": f"Bearer v2v_{prefix}_x"})
    assert r.status_code == 401


def test_disabled_feeds_are_skipped_and_the_job_is_scheduled(
    api: Api, database: Database, settings: Settings
) -> None:
    configure(database, enabled=False)
    fake = FakeCourier({None: page([], None)})
    assert poll(database, settings, fake) == 0
    assert fake.requests == []
    with httpx.Client() as client:
        jobs = default_jobs(client)
    assert jobs["couriers"][1] == 60


def test_feeds_are_configured_with_checks(database: Database) -> None:
    for kw in (
        {"courier": "NO-SUCH-COURIER"},
        {"base_url": "ftp://tracking.test"},
        {"base_url": "https://user:pw@tracking.test"},
        {"auth_token": " "},
        {"auth_token": "two words"},
        {"auth_token": "line\nbreak"},
    ):
        args: dict[str, Any] = {
            "courier": "KASHIWA-COLD",
            "base_url": BASE,
            "auth_token": TOKEN,
            **kw,
        }
        with pytest.raises(Invalid), database.transaction() as session:
            feeds.configure_feed(session, actor="admin", now=NOW, **args)
    configure(database)
    with database.transaction() as session:
        row = session.get(CourierFeed, "KASHIWA-COLD")
        assert row is not None
        row.cursor = "c9"
    configure(database, reset_cursor=True)
    assert feed(database).cursor is None


def test_retry_after_parsing() -> None:
    assert couriers.retry_after_s("120", now=NOW) == 120.0
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert couriers.retry_after_s(later, now=NOW) == 90.0
    earlier = format_datetime(NOW - timedelta(seconds=90), usegmt=True)
    assert couriers.retry_after_s(earlier, now=NOW) == 0.0
    for junk in (None, "", "soon", "-5", "1.5"):
        assert couriers.retry_after_s(junk, now=NOW) is None


def test_a_full_page_of_readings_fits_one_ingest_batch() -> None:
    assert couriers.MAX_EVENTS_PER_PAGE <= readings_service.MAX_BATCH


def test_a_scan_does_not_wait_for_a_sweep_raising_an_alert_on_the_case(
    api: Api, database: Database, settings: Settings
) -> None:
    """A sweep inserting an alert holds key-share locks on its case and shipment (the foreign
    keys' checks) until it commits, and then may want a row the scan holds: the scan's own
    locks must not conflict with those (they did: a deadlock under load on PostgreSQL)."""
    if database.dialect == "sqlite":
        pytest.skip("SQLite locks the whole database, not rows")
    j = Journey(api, patient="MRN-K9")
    j.schedule()
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    fake = FakeCourier(
        {None: page([scan(shipment["id"], "picked_up", j.t + 10 * MIN, j.coi)], "c1")}
    )
    configure(database)
    sweep = database.engine.connect()
    done: list[int] = []
    try:
        with sweep.begin():
            for table, key in (("cases", j.case["id"]), ("shipment", shipment["id"])):
                sweep.execute(
                    text(f"SELECT 1 FROM {table} WHERE id = :k FOR KEY SHARE"), {"k": key}
                )  # noqa: S608
            worker = threading.Thread(target=lambda: done.append(poll(database, settings, fake)))
            worker.start()
            worker.join(15)
            finished_beside_the_sweep = not worker.is_alive()
        worker.join(30)
    finally:
        sweep.close()
    assert finished_beside_the_sweep
    assert done == [1]
    body = api.get("admin", f"/api/v1/shipments/{shipment['id']}").json()
    assert [c["action"] for c in body["custody"]] == ["picked_up"]
