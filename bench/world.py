"""The benchmarks' world: shipments in transit with loggers, and the loggers' readings.

Cases and shipments are created through the API (in-process, as a hospital and a courier
would: register, schedule, collect, ship with a logger, pick up), the same steps as
tests/helpers.py. Readings are generated deterministically, each batch twice: as the
pre-serialised JSON body a logger would POST and as the rows a raw insert would store.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from app.config import Settings
from app.db import Database
from app.main import create_app
from app.services.access import principals
from bench.harness import BenchError
from models.principal import Role

with warnings.catch_warnings():  # starlette's notice about httpx, irrelevant to setup
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

COURIER = "KASHIWA-COLD"
SITE = "NCC-EAST"
FACTORY = "CELLARES-KASHIWA"
PROFILE = "FRESH_2_8"
# Far enough back that a million 2-second readings fit between pickup and now.
PICKUP_AGO = timedelta(days=40)
STEP_MS = 2_000
# Loggers in Japan stamp +09:00; others UTC: the API must take any offset.
OFFSETS = (timezone(timedelta(hours=9)), UTC)


@dataclass
class Logger:
    """One data logger riding in one shipment; its clock only moves forward."""

    device_id: str
    shipment_id: str
    key: str
    tz: timezone
    next_ms: int
    seed: int
    n: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}", "content-type": "application/json"}

    def _next(self, *, door_openings: bool) -> tuple[int, int, float, float | None, float | None]:
        """(index, ts_ms, temp_c, lat, lon) of the next reading."""
        i, ts_ms = self.n, self.next_ms
        self.n += 1
        self.next_ms += STEP_MS
        temp = round(
            min(max(5.0 + 1.5 * math.sin(i / 1800) + self.rng.gauss(0.0, 0.15), 2.2), 7.8), 2
        )
        # A door opening once per 5,000 readings: 30 s above 8 °C, shorter than the dwell
        # time, so the detector records a warning excursion and raises no alarm.
        if door_openings and 2_500 <= i % 5_000 < 2_515:
            temp = 8.6
        if i % 30:
            return i, ts_ms, temp, None, None
        return i, ts_ms, temp, round(35.68 + i * 1e-7, 6), round(139.76 + i * 1e-7, 6)  # GPS fix

    def batch(self, count: int) -> Batch:
        """The next `count` readings, as a JSON body and as rows."""
        received_ms = int(time.time() * 1000)
        items: list[dict[str, Any]] = []
        rows: list[tuple[Any, ...]] = []
        for _ in range(count):
            i, ts_ms, temp, lat, lon = self._next(door_openings=True)
            stamp = datetime.fromtimestamp(ts_ms / 1000, self.tz).isoformat(timespec="milliseconds")
            item: dict[str, Any] = {"device_id": self.device_id, "ts": stamp, "temp_c": temp}
            if lat is not None:
                item["lat"], item["lon"] = lat, lon
            battery = None
            if i % 900 == 0:
                battery = item["battery_pct"] = round(max(5.0, 100.0 - i / 20_000), 1)
            items.append(item)
            rows.append(
                (
                    self.shipment_id,
                    self.device_id,
                    ts_ms,
                    temp,
                    lat,
                    lon,
                    None,
                    None,
                    None,
                    battery,
                    received_ms,
                )
            )
        body = json.dumps({"readings": items}, separators=(",", ":")).encode()
        return Batch(self, body, rows)

    def preload_rows(self, count: int) -> Iterator[tuple[Any, ...]]:
        """The next `count` in-range readings as rows only, lazily (for a fast preload)."""
        received_ms = int(time.time() * 1000)
        ship, device = self.shipment_id, self.device_id
        for _ in range(count):
            _, ts_ms, temp, lat, lon = self._next(door_openings=False)
            yield (ship, device, ts_ms, temp, lat, lon, None, None, None, None, received_ms)


@dataclass(frozen=True)
class Batch:
    logger: Logger
    body: bytes
    rows: list[tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class World:
    courier_key: str
    loggers: list[Logger]


def check_ingest(response: Any, expected: int) -> None:
    """A batch counts only if every reading was stored."""
    if response.status_code != 200:
        raise BenchError(f"POST /api/v1/readings: {response.status_code} {response.text[:500]}")
    result = response.json()
    if result.get("accepted") != expected or result.get("rejected"):
        raise BenchError(f"expected {expected} accepted, got {json.dumps(result)[:500]}")


def build_world(url: str, *, loggers: int, label: str = "B") -> World:
    """Principals, and `loggers` shipments picked up PICKUP_AGO ago, one logger in each."""
    settings = Settings(database_url=url, scheduler_enabled=False)
    secret = settings.secret_key.get_secret_value()
    db = Database(url, pool_size=2)
    try:
        with db.transaction() as session:
            _, coordinator = principals.create_principal(
                session,
                name="bench coordinator",
                role=Role.coordinator,
                site=SITE,
                secret_key=secret,
            )
            _, courier = principals.create_principal(
                session,
                name="bench courier",
                role=Role.courier,
                courier=COURIER,
                secret_key=secret,
            )
        start = datetime.now(UTC) - PICKUP_AGO
        shipments: list[tuple[str, str, datetime]] = []
        with TestClient(create_app(settings, database=db)) as client:
            for i in range(loggers):
                device_id = f"LOG-{label}{i:03d}-{start:%y%m%d}"
                shipment_id, picked_up = _ship(
                    client, coordinator, courier, i=i, label=label, device_id=device_id, t=start
                )
                shipments.append((device_id, shipment_id, picked_up))
        out: list[Logger] = []
        with db.transaction() as session:
            for i, (device_id, shipment_id, picked_up) in enumerate(shipments):
                _, key = principals.create_principal(
                    session,
                    name=f"logger {device_id}",
                    role=Role.device,
                    courier=COURIER,
                    device_id=device_id,
                    secret_key=secret,
                )
                first_ms = (int(picked_up.timestamp()) + 1) * 1000
                out.append(Logger(device_id, shipment_id, key, OFFSETS[i % 2], first_ms, seed=i))
    finally:
        db.dispose()
    return World(courier_key=courier, loggers=out)


def _ship(
    client: TestClient,
    coordinator: str,
    courier: str,
    *,
    i: int,
    label: str,
    device_id: str,
    t: datetime,
) -> tuple[str, datetime]:
    def post(key: str, url: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        r = client.post(url, json=body, headers={"authorization": f"Bearer {key}"})
        if r.status_code != status:
            raise BenchError(f"setup: POST {url}: {r.status_code} {r.text[:500]}")
        return dict(r.json())

    case = post(
        coordinator,
        "/api/v1/cases",
        {
            "site": SITE,
            "route": "KASHIWA-LOCAL",
            "product": "CART-CD19",
            "patient_ref": f"MRN-BENCH-{label}{i:04d}",
        },
    )
    cid, coi = case["id"], case["coi"]
    post(coordinator, f"/api/v1/cases/{cid}/schedule", {"apheresis_at": t.isoformat()}, 200)
    collected = t + timedelta(hours=2)
    post(
        coordinator,
        f"/api/v1/cases/{cid}/events",
        {"type": "collected", "occurred_at": collected.isoformat(), "site": SITE, "coi": coi},
    )
    post(courier, "/api/v1/devices", {"device_id": device_id})  # its courier registers it
    shipment = post(
        coordinator,
        "/api/v1/shipments",
        {
            "case_id": cid,
            "direction": "to_manufacturing",
            "origin": SITE,
            "destination": FACTORY,
            "profile": PROFILE,
            "courier": COURIER,
            "container": {"serial": f"BOX-{label}{i:04d}", "kind": "2-8 °C validated box"},
            "device_ids": [device_id],
            "coi": coi,
        },
    )
    picked_up = collected + timedelta(hours=1)
    post(
        courier,
        f"/api/v1/shipments/{shipment['id']}/custody",
        {
            "action": "picked_up",
            "occurred_at": picked_up.isoformat(),
            "from_party": "hospital",
            "to_party": "courier",
            "coi": coi,
        },
    )
    return str(shipment["id"]), picked_up
