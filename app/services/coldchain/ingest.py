"""Reading ingest: the hot path.

Each item is validated alone (a bad one is reported by index, the rest stored), attached to
the shipment its device was riding in at the reading's timestamp, stored with one bulk
statement (no ORM object per reading) and fed to the excursion detector of its shipment.
``(device_id, ts_ms)`` is unique: a resend counts as a duplicate and is never stored twice.
"""

from __future__ import annotations

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

from app.db import Database, Raw, on_commit
from app.services.coldchain import decode as reading_batch
from app.services.coldchain import engine as coldchain
from app.services.coldchain import evaluate as ingest_eval
from app.services.coldchain import store as reading_store
from app.services.coldchain.decode import Columns
from app.services.coldchain.rides import (
    DEFAULT_BOUNDS,
    Assignments,
    LateBounds,
    owned_devices,
)
from app.telemetry import READINGS
from models.principal import Principal

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
    owned = owned_devices(raw, actor, distinct)
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
