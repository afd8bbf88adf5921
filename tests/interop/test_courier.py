"""Courier feeds: polling a courier tracking API (httpx.MockTransport) into readings and custody."""

from __future__ import annotations

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
from app.jobs.courier import poll_couriers
from app.services.coldchain import ingest as readings_service
from app.services.interop import courier as feeds
from models.courier_feed import CourierFeed
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
