"""Crash safety and multi-process writers against real uvicorn servers.

Every reading acknowledged with a 2xx is stored exactly once after a SIGKILL and restart,
once clients have retried whatever was not acknowledged; two API processes and the
scheduler sharing one SQLite file never show a client "database is locked".
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.db import Database
from app.services.audit.chain import verify_chain
from tests.conftest import Api
from tests.helpers import Journey, iso, register_devices
from tests.servers import Server

pytestmark = pytest.mark.slow


def _shipment_with_loggers(api: Api, devices: list[str]) -> tuple[dict[str, Any], Any]:
    j = Journey(api, patient=f"MRN-{devices[0]}")
    j.schedule()
    j.step("collected")
    body = {
        "case_id": j.case["id"],
        "direction": "to_manufacturing",
        "origin": "NCC-EAST",
        "destination": "CELLARES-KASHIWA",
        "profile": "FRESH_2_8",
        "courier": "KASHIWA-COLD",
        "container": {"serial": "C", "kind": "box"},
        "device_ids": devices,
        "coi": j.coi,
    }
    register_devices(api, "courier", devices)
    shipment = api.post("ncc", "/api/v1/shipments", body).json()
    j.custody(shipment, "picked_up")
    return shipment, j.t


def _batches(device: str, start: Any, n_batches: int, size: int) -> Iterator[dict[str, Any]]:
    """The logger's batches in order, each made when its uploader gets to it (an uploader
    told to stop early never builds the rest)."""
    for b in range(n_batches):
        items = [
            {
                "device_id": device,
                "ts": iso(start + timedelta(seconds=10 * (b * size + i))),
                "temp_c": round(4 + random.random() * 3, 2),
            }
            for i in range(size)
        ]
        yield {"readings": items}


class Uploader(threading.Thread):
    """Posts its batches in order, retrying each until a 2xx acknowledges it."""

    def __init__(
        self, urls: list[str], key: str, batches: Iterable[dict[str, Any]], deadline: float
    ) -> None:
        super().__init__(daemon=True)
        self.urls, self.batches, self.deadline = urls, batches, deadline
        self.headers = {"Authorization": f"Bearer {key}"}
        self.acknowledged = 0
        self.errors: list[str] = []
        self.failures = 0
        self.stop_at: int | None = None  # set while running: stop once this many are acked

    def run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            for i, batch in enumerate(self.batches):
                if self.stop_at is not None and self.acknowledged >= self.stop_at:
                    return
                while time.monotonic() < self.deadline:
                    url = self.urls[i % len(self.urls)]
                    try:
                        r = client.post(f"{url}/api/v1/readings", json=batch, headers=self.headers)
                    except httpx.HTTPError:
                        self.failures += 1  # server down: retry the same batch
                        time.sleep(0.05)
                        continue
                    if r.status_code == 200:
                        if r.json()["rejected"]:
                            self.errors.append(str(r.json()["rejected"][:1]))
                        self.acknowledged += 1
                        break
                    self.errors.append(f"{r.status_code}: {r.text[:200]}")
                    break


def _count(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM reading")).scalar_one())


# Batches each uploader still sends once the server is back after the kills.
AFTER_KILLS = 5


def test_sigkill_during_ingest_loses_and_duplicates_nothing(
    api: Api, database: Database, tmp_path: Path
) -> None:
    devices = [f"KILL-{i}" for i in range(3)]
    _, start = _shipment_with_loggers(api, devices)
    # Enough work that uploads are still in flight when the kills come, on a quiet machine too.
    size, n_batches = 200, 200
    server = Server(database.engine.url.render_as_string(False), log=tmp_path / "server.log")
    server.start()
    deadline = time.monotonic() + 90
    uploaders = [
        Uploader([server.url], api.keys["courier"], _batches(d, start, n_batches, size), deadline)
        for d in devices
    ]
    try:
        for u in uploaders:
            u.start()
        while not any(u.acknowledged for u in uploaders) and time.monotonic() < deadline:
            time.sleep(0.01)  # kill only once the server is really taking uploads
        for _ in range(3):
            time.sleep(0.1)
            server.kill()
            time.sleep(0.2)
            server.start()
        # The server is back: a few more batches each show it takes uploads again, then
        # the uploaders stop (each only once its batch in flight is acknowledged).
        for u in uploaders:
            u.stop_at = u.acknowledged + AFTER_KILLS
        for u in uploaders:
            u.join(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        server.stop()
    assert [u.errors for u in uploaders] == [[], [], []]
    assert sum(u.failures for u in uploaders) > 0  # the kills did hit uploads in flight
    acknowledged = [u.acknowledged for u in uploaders]
    assert [u.is_alive() for u in uploaders] == [False] * 3
    assert all(AFTER_KILLS <= n <= n_batches for n in acknowledged), acknowledged
    assert _count(database) == sum(acknowledged) * size  # each reading exactly once
    with database.engine.connect() as conn:
        per_device = dict(
            conn.execute(
                text("SELECT device_id, count(DISTINCT ts_ms) FROM reading GROUP BY device_id")
            ).all()
        )
    assert per_device == {d: n * size for d, n in zip(devices, acknowledged, strict=True)}
    with database.session() as session:
        assert verify_chain(session).ok


def test_two_api_processes_and_the_scheduler_share_one_database(
    api: Api, database: Database, tmp_path: Path
) -> None:
    devices = [f"PAIR-{i}" for i in range(4)]
    _, start = _shipment_with_loggers(api, devices)
    url = database.engine.url.render_as_string(False)
    servers = [Server(url, scheduler=(i == 0), log=tmp_path / f"s{i}.log") for i in range(2)]
    for s in servers:
        s.start()
    deadline = time.monotonic() + 60
    uploaders = [
        Uploader(
            [s.url for s in servers], api.keys["courier"], _batches(d, start, 12, 250), deadline
        )
        for d in devices
    ]
    try:
        for u in uploaders:
            u.start()
        with httpx.Client(timeout=10.0) as client:
            while any(u.is_alive() for u in uploaders) and time.monotonic() < deadline:
                for s in servers:
                    r = client.get(f"{s.url}/api/v1/alerts", headers=api.headers("ncc"))
                    assert r.status_code == 200, r.text
        for u in uploaders:
            u.join(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for s in servers:
            s.stop()
    assert [u.errors for u in uploaders] == [[]] * 4
    assert sum(u.failures for u in uploaders) == 0
    assert _count(database) == 4 * 12 * 250
    logs = " ".join((tmp_path / f"s{i}.log").read_text() for i in range(2))
    assert "database is locked" not in logs
