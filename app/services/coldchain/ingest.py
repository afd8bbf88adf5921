"""Reading ingest: the hot path.

Each item is validated alone (a bad one is reported by index, the rest stored), attached to
the shipment its device was riding in at the reading's timestamp, stored with one bulk
statement (no ORM object per reading) and fed to the excursion detector of its shipment.
``(device_id, ts_ms)`` is unique: a resend counts as a duplicate and is never stored twice.
"""

from __future__ import annotations

import bisect
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from app.config import Settings
from app.db import Database, Raw, on_commit
from app.services.coldchain import decode as reading_batch
from app.services.coldchain import engine as coldchain
from app.services.coldchain import evaluate as ingest_eval
from app.services.coldchain import store as reading_store
from app.services.coldchain.decode import Columns
from app.telemetry import READINGS
from models.principal import Principal, Role

MAX_BATCH = reading_batch.MAX_BATCH
# One batch at a time per process, held by every ingest path (HTTP, MQTT) around its write
# transaction: executemany in a thread while the event loop validates other batches convoys
# on the GIL, and SQLite has one writer anyway. Scale with processes.
INGEST_LOCK = threading.Lock()
OPTIONAL = reading_batch.OPTIONAL
ALLOWED_KEYS = reading_batch.ALLOWED_KEYS
COLUMNS = reading_store.COLUMNS
FUTURE = reading_batch.FUTURE
UNKNOWN_DEVICE = "unknown device, or not one of your organisation's"
UNASSIGNED = "device is not assigned to a shipment at ts"
_NO_EXTRAS = reading_batch.NO_EXTRAS


T = TypeVar("T")


@contextmanager
def transaction(db: Database) -> Iterator[Session]:
    """The ingest unit of work of every path (HTTP, EPCIS, MQTT, courier feeds): this
    process's ingest lock around one write transaction, committed when the block succeeds."""
    with INGEST_LOCK, db.transaction() as session:
        yield session


def run_if_free(db: Database, work: Callable[[Session], T]) -> T | None:
    """Run ``work`` in the ingest unit of work at once if neither this process nor another
    holds the SQLite writer; None (nothing done) if either does, so the caller can wait in
    a worker thread instead of blocking its event loop."""
    if not INGEST_LOCK.acquire(blocking=False):
        return None
    try:
        with db.session(write=True, nowait=True) as session:
            try:
                session.connection()  # BEGIN IMMEDIATE, failing at once if taken
            except (OperationalError, sqlite3.OperationalError) as exc:
                # Raised by the begin hook itself, the driver's error comes through unwrapped.
                if "database is locked" in str(exc):
                    return None
                raise
            try:
                out = work(session)
                session.commit()
            except BaseException:
                session.rollback()
                raise
            return out
    finally:
        INGEST_LOCK.release()


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, index: int, reason: str) -> None:
        self.rejected.append({"index": index, "reason": reason})


@dataclass(frozen=True)
class LateBounds:
    """How far outside its ride a reading may lie: dated before the shipment's pickup (a
    logger started at packing, clock drift) and arriving after its delivery (loggers upload
    late by design, but a shipment's record must settle). Settings
    ``V2V_READING_PICKUP_TOLERANCE_MIN`` and ``V2V_READING_LATE_BOUND_H``."""

    pickup_tolerance_min: float = 30
    late_bound_h: float = 72

    @classmethod
    def of(cls, settings: Settings) -> LateBounds:
        return cls(settings.reading_pickup_tolerance_min, settings.reading_late_bound_h)

    @property
    def pickup_tolerance_ms(self) -> int:
        return int(self.pickup_tolerance_min * 60_000)

    @property
    def late_bound_ms(self) -> int:
        return int(self.late_bound_h * 3_600_000)

    def before_pickup(self) -> str:
        return f"dated more than {self.pickup_tolerance_min:g} min before its shipment's pickup"

    def too_late(self) -> str:
        return f"arrived more than {self.late_bound_h:g} h after its shipment was delivered"


DEFAULT_BOUNDS = LateBounds()


@dataclass(frozen=True)
class Ride:
    """A device in one shipment: readings from ``start_ms`` (pickup less the tolerance) to
    ``end_ms`` (delivery) attach to it; ``closed`` once delivered longer ago than the bound.
    A device paired in transit (``at_pickup`` False) rides from its pairing, no earlier."""

    start_ms: int
    end_ms: int | None
    shipment_id: str
    closed: bool
    at_pickup: bool


class Assignments:
    """Which shipment each device was in, by time: intervals from pickup to delivery.

    An interval reaches back ``pickup_tolerance`` before its pickup, never into the device's
    previous ride. A shipment delivered (and its delivery recorded) longer than
    ``late_bound`` before ``now_ms`` takes no more readings.
    """

    def __init__(
        self,
        session: Session,
        device_ids: set[str],
        *,
        now_ms: int | None = None,
        bounds: LateBounds = DEFAULT_BOUNDS,
    ) -> None:
        self.bounds = bounds
        found: dict[str, list[tuple[int, int | None, str, int | None, int | None]]]
        found = defaultdict(list)
        if device_ids:
            raw = Raw.of(session)
            for row in reading_store.assignments(raw, sorted(device_ids)):
                device_id, start, end, shipment_id, picked, delivered = row
                found[device_id].append((start, end, shipment_id, picked, delivered))
        tolerance, bound = bounds.pickup_tolerance_ms, bounds.late_bound_ms
        self.by_device: dict[str, list[Ride]] = {}
        for device_id, intervals in found.items():
            intervals.sort(key=lambda i: i[0])
            rides: list[Ride] = []
            previous_end: int | None = None
            for start, end, shipment_id, picked, delivered in intervals:
                at_pickup = picked is None or start <= picked
                reach = start - tolerance if at_pickup else start
                if previous_end is not None:
                    reach = max(reach, previous_end + 1)
                closed = now_ms is not None and delivered is not None and now_ms > delivered + bound
                rides.append(Ride(min(reach, start), end, shipment_id, closed, at_pickup))
                previous_end = end
            self.by_device[device_id] = rides
        self._starts = {d: [r.start_ms for r in v] for d, v in self.by_device.items()}

    def locate(self, device_id: str, ts_ms: int) -> tuple[str | None, str | None]:
        """(shipment id, None) for the ride the device was in at ``ts_ms``, else (None, why)."""
        rides = self.by_device.get(device_id)
        if not rides:
            return None, UNASSIGNED
        i = bisect.bisect_right(self._starts[device_id], ts_ms) - 1
        if i < 0:
            return None, self.bounds.before_pickup() if rides[0].at_pickup else UNASSIGNED
        ride = rides[i]
        if ride.end_ms is not None and ts_ms > ride.end_ms:
            return None, UNASSIGNED
        if ride.closed:
            return None, self.bounds.too_late()
        return ride.shipment_id, None

    def shipment_at(self, device_id: str, ts_ms: int) -> str | None:
        return self.locate(device_id, ts_ms)[0]


def _owned_devices(raw: Raw, actor: Principal, device_ids: list[str]) -> set[str]:
    if actor.role == Role.device:
        return {actor.device_id} & set(device_ids) if actor.device_id else set()
    rows = reading_store.device_couriers(raw, device_ids)
    if actor.role == Role.admin:
        return {device_id for device_id, _ in rows}
    return {device_id for device_id, courier in rows if courier == actor.courier}


def ingest_json(
    session: Session,
    *,
    actor: Principal,
    body: bytes,
    now: datetime,
    future_tolerance_s: int = 300,
    bounds: LateBounds = DEFAULT_BOUNDS,
) -> IngestResult:
    """Ingest a JSON batch body: whole at C speed when valid, else item by item."""
    result = ingest_body(
        session,
        actor=actor,
        body=body,
        now=now,
        future_tolerance_s=future_tolerance_s,
        bounds=bounds,
    )
    if result is None:  # some item is invalid: say which, store the rest
        result = ingest(
            session,
            actor=actor,
            items=reading_batch.items(body),
            now=now,
            future_tolerance_s=future_tolerance_s,
            bounds=bounds,
        )
    return result


def ingest_body(
    session: Session,
    *,
    actor: Principal,
    body: bytes,
    now: datetime,
    future_tolerance_s: int = 300,
    bounds: LateBounds = DEFAULT_BOUNDS,
) -> IngestResult | None:
    """Ingest a JSON body whose items are all valid; None if any is not (use ``ingest``)."""
    columns = reading_batch.decode(body)
    if columns is None:
        return None
    return _ingest_columns(
        session,
        actor=actor,
        columns=columns,
        indexes=None,
        result=IngestResult(),
        now=now,
        future_tolerance_s=future_tolerance_s,
        bounds=bounds,
    )


def ingest(
    session: Session,
    *,
    actor: Principal,
    items: list[Any],
    now: datetime,
    future_tolerance_s: int = 300,
    bounds: LateBounds = DEFAULT_BOUNDS,
) -> IngestResult:
    """Validate, attach, store and evaluate a batch of readings (flushes; caller commits)."""
    result = IngestResult()
    now_ms = int(now.timestamp() * 1000)
    columns = Columns([], [], [], [])
    indexes: list[int] = []
    for index, item in enumerate(items):
        outcome = reading_batch.parse_item(item, now_ms=now_ms, future_ms=future_tolerance_s * 1000)
        if isinstance(outcome, str):
            result.reject(index, outcome)
            continue
        device_id, ts_ms, measures = outcome
        indexes.append(index)
        columns.device_ids.append(device_id)
        columns.ts_ms.append(ts_ms)
        columns.temps.append(measures[0])
        extras = measures[1:]
        columns.extras.append(None if extras == _NO_EXTRAS else extras)
    return _ingest_columns(
        session,
        actor=actor,
        columns=columns,
        indexes=indexes,
        result=result,
        now=now,
        future_tolerance_s=future_tolerance_s,
        bounds=bounds,
    )


def _ingest_columns(
    session: Session,
    *,
    actor: Principal,
    columns: Columns,
    indexes: list[int] | None,
    result: IngestResult,
    now: datetime,
    future_tolerance_s: int,
    bounds: LateBounds,
) -> IngestResult:
    """Attach valid items to shipments, drop duplicates, store, evaluate."""
    now_ms = int(now.timestamp() * 1000)
    n = len(columns)
    if n == 0:
        return result
    raw = Raw.of(session)
    ids, ts, temps, extras = columns.device_ids, columns.ts_ms, columns.temps, columns.extras
    distinct = sorted(set(ids))
    owned = _owned_devices(raw, actor, distinct)
    assignments = Assignments(session, owned, now_ms=now_ms, bounds=bounds)
    latest_ms = now_ms + future_tolerance_s * 1000
    keep = _one_shipment(assignments, distinct, owned, ts, latest_ms)
    shipments: list[str | None]
    if keep is not None:
        shipments = [keep] * n
    else:
        shipments = []
        for i in range(n):
            index = indexes[i] if indexes is not None else i
            shipment_id: str | None = None
            if ts[i] > latest_ms:
                result.reject(index, FUTURE)
            elif ids[i] not in owned:
                result.reject(index, UNKNOWN_DEVICE)
            else:
                shipment_id, why = assignments.locate(ids[i], ts[i])
                if why is not None:
                    result.reject(index, why)
            shipments.append(shipment_id)
    result.rejected.sort(key=lambda r: int(r["index"]))
    candidates = [i for i in range(n) if shipments[i] is not None] if keep is None else range(n)
    stored = _store(raw, columns, shipments, list(candidates), now_ms, result)
    result.accepted = len(stored)
    if stored:  # every path (HTTP, EPCIS, MQTT, courier feeds) counts here, once committed
        on_commit(session, partial(READINGS.inc, len(stored)))
    by_shipment: dict[str, list[coldchain.Row]] = defaultdict(list)
    if keep is not None and len(stored) == n:
        by_shipment[keep] = [
            (t, c, None, None) if e is None else (t, c, e[0], e[1])
            for t, c, e in zip(ts, temps, extras, strict=True)
        ]
    else:
        for i in stored:
            extra = extras[i]
            by_shipment[str(shipments[i])].append(
                (ts[i], temps[i], None, None)
                if extra is None
                else (ts[i], temps[i], extra[0], extra[1])
            )
    for shipment_id in sorted(by_shipment):  # a fixed order avoids deadlocks between writers
        ingest_eval.apply(
            session, raw, shipment_id=shipment_id, rows=by_shipment[shipment_id], now=now
        )
    return result


def _one_shipment(
    assignments: Assignments, distinct: list[str], owned: set[str], ts: list[int], latest_ms: int
) -> str | None:
    """The shipment of every item, when one owned logger in one interval sent them all."""
    if len(distinct) != 1 or distinct[0] not in owned:
        return None
    rides = assignments.by_device.get(distinct[0], [])
    if len(rides) != 1 or rides[0].closed:
        return None
    ride = rides[0]
    low, high = min(ts), max(ts)
    if low < ride.start_ms or high > latest_ms or (ride.end_ms is not None and high > ride.end_ms):
        return None
    return ride.shipment_id


def _store(
    raw: Raw,
    columns: Columns,
    shipments: list[str | None],
    candidates: list[int],
    now_ms: int,
    result: IngestResult,
) -> list[int]:
    """Store the candidates not stored yet; return the indexes (into columns) stored."""
    if not candidates:
        return []
    ids, ts, temps, extras = columns.device_ids, columns.ts_ms, columns.temps, columns.extras
    known = reading_store.existing(
        raw,
        sorted({ids[i] for i in candidates}),
        min(ts[i] for i in candidates),
        max(ts[i] for i in candidates),
    )
    fresh: list[int] = []
    if not known and len(candidates) == len(ts) and len(set(zip(ids, ts, strict=True))) == len(ts):
        fresh = candidates  # the usual batch: nothing stored yet, no item twice
    else:
        seen: set[tuple[str, int]] = set()
        for i in candidates:
            key = (ids[i], ts[i])
            if key in known or key in seen:
                result.duplicates += 1
                continue
            seen.add(key)
            fresh.append(i)
    if not fresh:
        return []
    if raw.postgres:
        full = [
            (shipments[i], ids[i], ts[i], temps[i], *(extras[i] or _NO_EXTRAS), now_ms)
            for i in fresh
        ]
        if reading_store.copy_postgresql(raw, full):
            return fresh
        inserted = {(r[1], r[2]) for r in reading_store.upsert_postgresql(raw, full)}
        stored = [i for i in fresh if (ids[i], ts[i]) in inserted]
        result.duplicates += len(fresh) - len(stored)
        return stored
    plain = [(shipments[i], ids[i], ts[i], temps[i], now_ms) for i in fresh if extras[i] is None]
    full = [
        (shipments[i], ids[i], ts[i], temps[i], *extra, now_ms)
        for i in fresh
        if (extra := extras[i]) is not None
    ]
    reading_store.insert_sqlite(raw, plain, full)
    return fresh
