"""Courier feeds: polling a courier tracking API (httpx.MockTransport) into readings and custody."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.config import Settings
from app.db import Database
from app.errors import Invalid
from app.jobs.courier import poll_couriers
from app.scheduler import default_jobs
from app.services.coldchain import ingest as readings_service
from app.services.interop import courier as feeds
from integrations import courier as couriers
from models.courier_feed import CourierFeed
from models.principal import Principal
from tests.conftest import NOW, Api
from tests.helpers import Journey

TOKEN = "courier-token-0123456789-abcdef"  # a test value
BASE = "https://tracking.kashiwa-cold.test/v1"
MIN = timedelta(minutes=1)
Fault = httpx.Response | Exception


class FakeCourier:
    """A courier tracking API: pages by cursor, scripted faults per cursor, every request kept."""

    def __init__(self, pages: dict[str | None, Any]) -> None:
        self.pages = pages
        self.faults: dict[str | None, list[Fault]] = {}
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"error": "bad token"})
        cursor = request.url.params.get("cursor")
        queue = self.faults.get(cursor)
        if queue:
            fault = queue.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        return httpx.Response(200, json=self.pages[cursor])

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))

    @property
    def cursors(self) -> list[str | None]:
        return [r.url.params.get("cursor") for r in self.requests]


def page(events: list[Any], next_cursor: str | None) -> dict[str, Any]:
    return {"events": events, "next_cursor": next_cursor}


def reading(device: str, at: datetime, temp: float = 5.0) -> dict[str, Any]:
    return {"type": "reading", "device_id": device, "ts": at.isoformat(), "temp_c": temp}


def scan(ref: str, action: str, at: datetime, coi: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "scan",
        "shipment_ref": ref,
        "action": action,
        "ts": at.isoformat(),
        "coi": coi,
        "from_party": "driver",
        "to_party": "hub",
        **extra,
    }


@pytest.fixture
def small_pages(settings: Settings) -> Settings:
    return settings.model_copy(update={"courier_page_limit": 3})


def configure(database: Database, **kw: Any) -> None:
    with database.transaction() as session:
        feeds.configure_feed(
            session,
            courier="KASHIWA-COLD",
            base_url=BASE,
            auth_token=kw.pop("token", TOKEN),
            actor="test admin",
            now=NOW,
            **kw,
        )


def poll(
    database: Database,
    settings: Settings,
    fake: FakeCourier,
    *,
    sleeps: list[float] | None = None,
    now: datetime = NOW,
) -> int:
    sleep: Callable[[float], None] = (sleeps if sleeps is not None else []).append
    with fake.client() as client:
        return poll_couriers(
            database, now=now, client=client, settings=settings, sleep=sleep, clock=lambda: now
        )


def feed(database: Database) -> CourierFeed:
    with database.session() as session:
        row = session.get(CourierFeed, "KASHIWA-COLD")
        assert row is not None
        return row


def reading_rows(database: Database) -> tuple[int, int]:
    """(rows, distinct (device, ts)) in the reading table."""
    with database.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(
                text("SELECT count(*), count(DISTINCT device_id || ':' || ts_ms) FROM reading")
            ).one()
        )


def in_transit(api: Api, patient: str = "MRN-K1") -> tuple[Journey, dict[str, Any], datetime]:
    j = Journey(api, patient=patient)
    j.schedule()
    j.step("collected")
    shipment = j.ship("to_manufacturing", "FRESH_2_8")
    j.custody(shipment, "picked_up")
    return j, shipment, j.t


def three_pages(device: str, t0: datetime) -> dict[str | None, Any]:
    return {
        None: page([reading(device, t0 + i * 10 * MIN) for i in range(1, 4)], "c1"),
        "c1": page([reading(device, t0 + i * 10 * MIN) for i in range(4, 7)], "c2"),
        "c2": page([reading(device, t0 + 70 * MIN)], "c3"),
        "c3": page([], None),
    }


def test_pages_are_read_in_order_and_the_cursor_advances(
    api: Api, database: Database, small_pages: Settings
) -> None:
    _, shipment, t0 = in_transit(api)
    fake = FakeCourier(three_pages(shipment["device_ids"][0], t0))
    configure(database)

    assert poll(database, small_pages, fake) == 7
    assert fake.cursors == [None, "c1", "c2"]  # the short third page means "caught up"
    first = fake.requests[0]
    assert str(first.url).startswith(f"{BASE}/events?")
    assert first.url.params["limit"] == "3"
    assert "cursor" not in first.url.params
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert reading_rows(database) == (7, 7)
    row = feed(database)
    assert (row.cursor, row.last_error, row.events_processed) == ("c3", None, 7)
    assert row.last_polled_at == row.last_success_at == NOW
    trace = api.get("admin", f"/api/v1/shipments/{shipment['id']}").json()
    assert trace["last_reading"] is not None

    assert poll(database, small_pages, fake) == 0  # nothing new: asks from c3, stores nothing
    assert fake.cursors[-1] == "c3"
    assert feed(database).cursor == "c3"
    assert reading_rows(database) == (7, 7)


def test_a_5xx_and_a_network_error_are_retried_with_backoff(
    api: Api, database: Database, small_pages: Settings
) -> None:
    _, shipment, t0 = in_transit(api)
    fake = FakeCourier(three_pages(shipment["device_ids"][0], t0))
    fake.faults[None] = [httpx.Response(503), httpx.ConnectError("connection refused")]
    configure(database)
    sleeps: list[float] = []
    assert poll(database, small_pages, fake, sleeps=sleeps) == 7
    assert sleeps == [1.0, 2.0]
    assert fake.cursors[:3] == [None, None, None]
    assert reading_rows(database) == (7, 7)
    assert feed(database).last_error is None


def test_a_courier_down_beyond_the_retries_keeps_the_cursor_and_records_why(
    api: Api, database: Database, small_pages: Settings
) -> None:
    _, shipment, t0 = in_transit(api)
    fake = FakeCourier(three_pages(shipment["device_ids"][0], t0))
    fake.faults[None] = [httpx.Response(502)] * 3 + [httpx.ReadTimeout("timed out")]
    configure(database)
    sleeps: list[float] = []
    assert poll(database, small_pages, fake, sleeps=sleeps) == 0
    assert sleeps == [1.0, 2.0, 4.0]  # courier_max_retries = 3
    row = feed(database)
    assert row.cursor is None and row.last_polled_at == NOW and row.last_success_at is None
    assert row.last_error is not None and "ReadTimeout" in row.last_error
    assert reading_rows(database) == (0, 0)
    assert poll(database, small_pages, fake, now=NOW + MIN) == 7  # back up: from the start
    assert feed(database).last_error is None


def test_429_retry_after_in_seconds_or_as_an_http_date_is_honoured(
    api: Api, database: Database, small_pages: Settings
) -> None:
    _, shipment, t0 = in_transit(api)
    fake = FakeCourier(three_pages(shipment["device_ids"][0], t0))
    http_date = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    fake.faults["c1"] = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(429, headers={"Retry-After": http_date}),
        httpx.Response(429),  # no header: exponential backoff
    ]
    configure(database)
    sleeps: list[float] = []
    assert poll(database, small_pages, fake, sleeps=sleeps) == 7
    assert sleeps == [7.0, 30.0, 4.0]
    assert feed(database).cursor == "c3"


def test_a_retry_after_longer_than_the_poller_waits_defers_the_feed(
    api: Api, database: Database, small_pages: Settings
) -> None:
    _, shipment, t0 = in_transit(api)
    fake = FakeCourier(three_pages(shipment["device_ids"][0], t0))
    fake.faults[None] = [httpx.Response(429, headers={"Retry-After": "3600"})]
    configure(database)
    sleeps: list[float] = []
    assert poll(database, small_pages, fake, sleeps=sleeps) == 0
    assert sleeps == []  # never sleeps an hour in a scheduler thread
    row = feed(database)
    assert row.next_poll_at == NOW + timedelta(hours=1)
    assert row.last_error is not None and "retry after 3600" in row.last_error
    assert poll(database, small_pages, fake, now=NOW + 30 * MIN) == 0
    assert len(fake.requests) == 1  # not due: not even asked
    assert poll(database, small_pages, fake, now=NOW + timedelta(hours=1)) == 7
    assert feed(database).next_poll_at is None


@pytest.mark.parametrize(
    "bad",
    [
        httpx.Response(200, content=b"<html>maintenance</html>"),
        httpx.Response(200, json=[]),
        httpx.Response(200, json={"events": "none", "next_cursor": "c2"}),
        httpx.Response(200, json={"events": []}),
        httpx.Response(200, json={"events": [{"type": "reading"}], "next_cursor": None}),
        httpx.Response(200, json={"events": [{"type": "reading"}], "next_cursor": "c1"}),
        httpx.Response(200, json={"events": [], "next_cursor": 42}),
    ],
    ids=["html", "list", "events", "no-cursor", "null-cursor", "same-cursor", "cursor-type"],
)
def test_a_malformed_page_keeps_the_cursor_and_the_next_good_page_is_processed(
    api: Api,
    database: Database,
    small_pages: Settings,
    bad: httpx.Response,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, shipment, t0 = in_transit(api)
    fake = FakeCourier(three_pages(shipment["device_ids"][0], t0))
    fake.faults["c1"] = [bad]
    configure(database)
    with caplog.at_level(logging.WARNING, logger="v2v"):
        assert poll(database, small_pages, fake) == 3
    row = feed(database)
    assert row.cursor == "c1"
    assert row.last_error is not None and row.last_error.startswith("malformed page")
    assert reading_rows(database) == (3, 3)
    assert "malformed page" in caplog.text and "KASHIWA-COLD" in caplog.text

    assert poll(database, small_pages, fake, now=NOW + MIN) == 4
    row = feed(database)
    assert (row.cursor, row.last_error) == ("c3", None)
    assert reading_rows(database) == (7, 7)


def test_a_restart_mid_stream_continues_from_the_persisted_cursor_without_duplicates(
    api: Api,
    database: Database,
    small_pages: Settings,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, shipment, t0 = in_transit(api)
    fake = FakeCourier(three_pages(shipment["device_ids"][0], t0))
    configure(database)
    assert poll(database, small_pages.model_copy(update={"courier_max_pages": 1}), fake) == 3
    assert feed(database).cursor == "c1"

    # The process dies while storing page 2: its readings were written, not committed.
    real_ingest = readings_service.ingest

    def ingest_then_die(*args: Any, **kwargs: Any) -> Any:
        real_ingest(*args, **kwargs)
        raise RuntimeError("killed")

    monkeypatch.setattr(readings_service, "ingest", ingest_then_die)
    assert poll(database, small_pages, fake) == 0
    monkeypatch.undo()
    row = feed(database)
    assert row.cursor == "c1" and row.last_error == "storing a page failed: RuntimeError"
    assert reading_rows(database) == (3, 3)
    database.dispose()

    restarted = Database(db_url, pool_size=2)
    try:
        assert poll(restarted, small_pages, fake) == 4
        assert fake.cursors == [None, "c1", "c1", "c2"]  # page 1 was never asked for again
        assert reading_rows(restarted) == (7, 7)
        with restarted.session() as session:
            row2 = session.get(CourierFeed, "KASHIWA-COLD")
            assert row2 is not None and row2.cursor == "c3" and row2.events_processed == 7
    finally:
        restarted.dispose()


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
