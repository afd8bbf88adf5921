"""The clients of a run: loggers, journey walkers, bookers and dashboards, each a thread."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from app.db import Database
from app.services.capacity import slots as capacity
from loadtest.client import Abandon, Client, Deadline, Ledger
from loadtest.journey import FACTORY, MAX_CASES, SCHEDULE, VARIANTS, Walk, in_transit, journey
from models.reference import Site

STEP_MS = 1_000


class Logger:
    """One data logger: strictly increasing timestamps from just after its pickup."""

    def __init__(self, device_id: str, picked_up: datetime, *, seed: int, excursions: bool):
        self.device_id = device_id
        self.next_ms = (int(picked_up.timestamp()) + 1) * 1000
        self.excursions = excursions
        self.rng = random.Random(seed)  # noqa: S311 - test data, not secrets
        self.n = 0

    def take(self, count: int) -> tuple[bytes, list[int]]:
        """The next `count` readings as a request body, and their timestamps (epoch ms)."""
        items, stamps = [], []
        for _ in range(count):
            ts_ms, i = self.next_ms, self.n
            self.next_ms += STEP_MS
            self.n += 1
            temp = round(5.0 + self.rng.gauss(0.0, 0.4), 2)
            # Fifteen minutes at 11 °C every hour: past the 10-minute alarm dwell, an alert.
            if self.excursions and 1_800 <= i % 3_600 < 2_700:
                temp = 11.0
            stamp = datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")
            items.append({"device_id": self.device_id, "ts": stamp, "temp_c": temp})
            stamps.append(ts_ms)
        return json.dumps({"readings": items}, separators=(",", ":")).encode(), stamps


def upload(client: Client, key: str, logger: Logger, sizes: Sequence[int], seed: int) -> None:
    """Post the logger's readings back to back (batches or single readings) until the end."""
    rng = random.Random(seed)  # noqa: S311
    ledger = client.ledger
    while not client.expired():
        size = rng.choice(sizes)
        body, stamps = logger.take(size)
        op = "POST /readings (batch)" if size > 1 else "POST /readings (single)"
        try:
            response = client.call(op, "POST", "/api/v1/readings", key, body)
            out = client.expect(response, op, 200)
        except Abandon:
            return
        if out["rejected"]:
            ledger.error(f"{op}: rejected {out['rejected'][:2]}")
        if out["duplicates"]:  # a resend whose first attempt had been stored
            ledger.count("readings answered as duplicates", int(out["duplicates"]))
        with ledger.lock:
            ledger.readings[logger.device_id].update(stamps)
            ledger.counts[f"readings via {op}"] += len(stamps)


class Cases:
    """Hands out case indices (each case has its own stretch of time) across threads."""

    def __init__(self, first: int = 0) -> None:
        self._next = first
        self._lock = threading.Lock()

    def take(self) -> int | None:
        with self._lock:
            if self._next >= MAX_CASES:
                return None
            self._next += 1
            return self._next - 1


def loggers_in_transit(
    client: Client, keys: dict[str, str], cases: Cases, *, run: str, count: int, per: int = 1
) -> list[Logger]:
    """`count` inbound shipments in transit, each carrying `per` loggers."""
    out = []
    for s in range(count):
        index = cases.take()
        if index is None:
            raise RuntimeError("no case left for a logger shipment")
        devices = [f"LOG-{run}-{s}-{d}" for d in range(per)]
        picked_up = in_transit(Walk(client, keys, run=run, index=index), devices)
        for d, device in enumerate(devices):
            out.append(Logger(device, picked_up, seed=s * 16 + d, excursions=(s % 2 == 0)))
    return out


def walker(client: Client, keys: dict[str, str], cases: Cases, run: str) -> None:
    """Walk case after case through its journey until the run ends."""
    while not client.expired():
        index = cases.take()
        if index is None:
            return
        try:
            journey(Walk(client, keys, run=run, index=index), VARIANTS[index % len(VARIANTS)])
        except Abandon:
            return
        client.ledger.count("journeys finished")


def dashboard(client: Client, key: str, pause: float = 0.0) -> None:
    """A dashboard polling turnaround metrics, open alerts and factory availability."""
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET /metrics/turnaround", "/api/v1/metrics/turnaround", {}),
        ("GET /alerts", "/api/v1/alerts", {"status": "open"}),
        ("GET /slots/availability", "/api/v1/slots/availability", {"site": FACTORY}),
    ]
    i = 0
    while not client.expired():
        op, path, params = calls[i % len(calls)]
        i += 1
        try:
            client.expect(client.call(op, "GET", path, key, params=params), op, 200)
        except Abandon:
            return
        time.sleep(pause)


def _book(client: Client, keys: dict[str, str], walk: Walk, when: datetime | None) -> bool:
    """Book apheresis at `when`; on 409 factory-full follow next_available_at a few times."""
    for _ in range(4):
        if when is None:
            return False
        path = f"/api/v1/cases/{walk.case.id}/schedule"
        response = client.call(
            SCHEDULE, "POST", path, keys["ncc"], {"apheresis_at": when.isoformat()}
        )
        if response.status_code == 409 and response.json().get("code") == "factory-full":
            client.ledger.count("factory full (409)")
            after = response.json().get("next_available_at")
            when = datetime.fromisoformat(after.replace("Z", "+00:00")) if after else None
            continue
        client.expect(response, SCHEDULE, 200)
        return True
    return False


def booker(client: Client, keys: dict[str, str], run: str, seed: int, opens: datetime) -> None:
    """Register cases and book them into one crowded factory window; cancel some."""
    rng = random.Random(seed)  # noqa: S311 - test data
    index = 0
    while not client.expired() and index < MAX_CASES:
        walk = Walk(client, keys, run=run, index=index)
        index += 1
        walk.register()
        booked = _book(client, keys, walk, opens + timedelta(hours=rng.uniform(0, 24)))
        if booked and rng.random() < 0.3:  # a cancellation frees a position to race for
            walk.t = datetime.now(UTC) - timedelta(minutes=1)
            walk.event("cancelled", hours=0)


def prefill(client: Client, keys: dict[str, str], run: str, opens: datetime, n: int) -> None:
    """Book `n` positions in the window first, so the run races for the last ones."""
    for index in range(n):
        walk = Walk(client, keys, run=run, index=index)
        walk.register()
        _book(client, keys, walk, opens)


def positions(db: Database, code: str = FACTORY) -> int:
    with db.session() as session:
        site = session.get(Site, code)
        return capacity.positions(site) if site else 0


def spawn(
    fn: Callable[..., None],
    urls: Sequence[str],
    ledger: Ledger,
    deadline: Deadline | float,
    *args: Any,
    offset: int = 0,
) -> threading.Thread:
    """Start `fn(client, *args)` in a thread with a client of its own (closed at the end)."""

    def run() -> None:
        client = Client(urls, ledger, deadline=deadline, offset=offset)
        try:
            fn(client, *args)
        except Abandon:
            pass
        except Exception as exc:  # noqa: BLE001 - reported with the run's errors
            ledger.error(f"{fn.__name__} crashed: {type(exc).__name__}: {exc}")
        finally:
            client.close()

    thread = threading.Thread(target=run, name=fn.__name__, daemon=True)
    thread.start()
    return thread
