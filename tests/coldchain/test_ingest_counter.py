"""Every ingest path counts what it stores: ``v2v_readings_ingested_total`` on ``GET /metrics``
grows by exactly the readings each of HTTP, EPCIS capture, MQTT and a courier feed accepted
(duplicates and refusals are not counted).

The Prometheus registry is process-global, so each step compares the counter before and
after it rather than an absolute value.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from app.clock import FrozenClock
from app.config import Settings
from app.db import Database
from app.jobs.courier import poll_couriers
from models.principal import Role
from tests.coldchain.test_readings import in_transit, readings
from tests.conftest import METRICS_TOKEN, NOW, Api
from tests.interop.test_courier import FakeCourier, configure, page, reading
from tests.interop.test_epcis import capture, document, sensors
from tests.interop.test_mqtt import Rig
from tests.interop.test_mqtt import broker as broker  # the session fixture the rig below needs

MIN = timedelta(minutes=1)
COUNTER = "v2v_readings_ingested_total"


@pytest.fixture
def mqtt_rig(
    broker: tuple[str, int], api: Api, database: Database, settings: Settings, clock: FrozenClock
) -> Iterator[Rig]:
    rig = Rig(database, settings, clock)
    try:
        yield rig
    finally:
        rig.close()


def counted(api: Api) -> float:
    """The counter as ``GET /metrics`` exposes it (Prometheus text format)."""
    r = api.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200, r.text
    for line in r.text.splitlines():
        name, _, value = line.partition(" ")
        if name == COUNTER:
            return float(value)
    pytest.fail(f"{COUNTER} is not exposed on /metrics")


def temperature(at: datetime, value: float = 5.0) -> dict[str, Any]:
    return {"type": "Temperature", "time": at.isoformat(), "value": value, "uom": "CEL"}


def test_every_ingest_path_counts_exactly_what_it_accepted(
    api: Api, database: Database, settings: Settings, mqtt_rig: Rig
) -> None:
    _, shipment, t0 = in_transit(api)
    device = shipment["device_ids"][0]

    # HTTP: three new readings and a resend of the first (a duplicate, not counted).
    before = counted(api)
    items = readings(device, t0 + MIN, [5.0, 5.1, 5.2])
    r = api.post("courier", "/api/v1/readings", {"readings": [*items, items[0]]})
    assert r.status_code == 200, r.text
    assert (r.json()["accepted"], r.json()["duplicates"]) == (3, 1)
    assert counted(api) - before == 3

    # EPCIS capture: two new readings and one the HTTP call already stored.
    before = counted(api)
    reports = [temperature(t0 + 41 * MIN), temperature(t0 + 42 * MIN), temperature(t0 + MIN)]
    result = capture(api, "courier", document(sensors(t0 + 42 * MIN, reports, device=device)))
    assert (result["readings"], result["duplicates"]) == (2, 1)
    assert counted(api) - before == 2

    # MQTT (real broker): four new readings, one already stored, one for another device.
    key = api.key("logger", Role.device, courier="KASHIWA-COLD", device_id=device)
    mqtt_rig.start_worker()
    before = counted(api)
    message: list[dict[str, Any]] = [
        {"ts": (t0 + (50 + i) * MIN).isoformat(), "temp_c": 5.0} for i in range(4)
    ]
    message += [
        {"ts": (t0 + 41 * MIN).isoformat(), "temp_c": 5.0},
        {"device_id": "LOG-SOMEONE-ELSE", "ts": (t0 + 60 * MIN).isoformat(), "temp_c": 5.0},
    ]
    ack = mqtt_rig.logger.send(device, message, key)
    assert (ack["status"], ack["accepted"], ack["duplicates"]) == ("ok", 4, 1)
    assert len(ack["rejected"]) == 1
    assert counted(api) - before == 4

    # A courier feed page (courier HTTP faked): five new readings and one already stored.
    events = [reading(device, t0 + (70 + i) * MIN) for i in range(5)]
    fake = FakeCourier(
        {None: page([*events, reading(device, t0 + MIN)], "c1"), "c1": page([], None)}
    )
    configure(database)
    before = counted(api)
    with fake.client() as client:
        processed = poll_couriers(
            database, now=NOW, client=client, settings=settings, sleep=lambda _: None
        )
    assert processed == 6
    assert counted(api) - before == 5
