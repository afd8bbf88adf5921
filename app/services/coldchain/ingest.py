"""Reading ingest: the hot path.

Each item is validated alone (a bad one is reported by index, the rest stored), attached to
the shipment its device was riding in at the reading's timestamp, stored with one bulk
statement (no ORM object per reading) and fed to the excursion detector of its shipment.
``(device_id, ts_ms)`` is unique: a resend counts as a duplicate and is never stored twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlmodel import Session

from app.db import on_commit
from app.errors import AppError
from app.raw import Raw
from app.services.coldchain import decode as reading_batch
from app.services.coldchain import engine as coldchain
from app.services.coldchain import evaluate as ingest_eval
from app.services.coldchain import rides
from app.services.coldchain import store as reading_store
from app.services.coldchain.decode import Columns
from app.services.coldchain.rides import (
    DEFAULT_BOUNDS,
    Assignments,
    LateBounds,
    owned_rides,
)
from app.telemetry import READINGS
from models.principal import Principal

MAX_BATCH = reading_batch.MAX_BATCH
OPTIONAL = reading_batch.OPTIONAL
ALLOWED_KEYS = reading_batch.ALLOWED_KEYS
COLUMNS = reading_store.COLUMNS
FUTURE = reading_batch.FUTURE
UNKNOWN_DEVICE = "unknown device, or not one of your organisation's"
_NO_EXTRAS = reading_batch.NO_EXTRAS


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, index: int, reason: str) -> None:
        self.rejected.append({"index": index, "reason": reason})


@dataclass
class Prepared:
    """A JSON batch decoded outside the write transaction: its valid items as columns (and
    their indexes in the body, None when all are valid) and the items already rejected; or
    the refusal of the whole body, raised only once the caller is authenticated."""

    columns: Columns
    indexes: list[int] | None
    result: IngestResult
    refused: AppError | None = None

    def __len__(self) -> int:
        return len(self.columns)


def prepare_json(body: bytes, *, now: datetime, future_tolerance_s: int = 300) -> Prepared:
    """Decode and validate a JSON batch body (no database): whole at C speed when every
    item is valid, else item by item, saying which are not and why."""
    columns = reading_batch.decode(body)
    if columns is not None:
        return Prepared(columns, None, IngestResult())
    try:
        items = reading_batch.items(body)
    except AppError as refused:
        return Prepared(Columns([], [], [], []), [], IngestResult(), refused)
    result = IngestResult()
    columns, indexes = _parse(items, result, now=now, future_tolerance_s=future_tolerance_s)
    return Prepared(columns, indexes, result)


def store_prepared(
    session: Session,
    *,
    actor: Principal,
    prepared: Prepared,
    now: datetime,
    future_tolerance_s: int = 300,
    bounds: LateBounds = DEFAULT_BOUNDS,
    read: rides.Read | None = None,
) -> IngestResult:
    """Attach, store and evaluate a prepared batch (flushes; caller commits); ``read``: its
    devices' rides, read already in this transaction (``ride_reads``)."""
    if prepared.refused is not None:
        raise prepared.refused
    result = IngestResult(rejected=list(prepared.result.rejected))
    return _ingest_columns(
        session,
        actor=actor,
        columns=prepared.columns,
        indexes=prepared.indexes,
        result=result,
        now=now,
        future_tolerance_s=future_tolerance_s,
        bounds=bounds,
        read=read,
    )


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
    prepared = prepare_json(body, now=now, future_tolerance_s=future_tolerance_s)
    return store_prepared(
        session,
        actor=actor,
        prepared=prepared,
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
    columns, indexes = _parse(items, result, now=now, future_tolerance_s=future_tolerance_s)
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


def _parse(
    items: list[Any], result: IngestResult, *, now: datetime, future_tolerance_s: int
) -> tuple[Columns, list[int]]:
    """The valid items as columns with their indexes; the others rejected into ``result``."""
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
    return columns, indexes


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
    read: rides.Read | None = None,
) -> IngestResult:
    """Attach valid items to shipments, drop duplicates, store, evaluate."""
    now_ms = int(now.timestamp() * 1000)
    n = len(columns)
    if n == 0:
        return result
    raw = Raw.of(session)
    ids, ts = columns.device_ids, columns.ts_ms
    distinct = sorted(set(ids))
    owned, assignments = owned_rides(
        session, actor, distinct, now_ms=now_ms, bounds=bounds, read=read
    )
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
    fresh = _fresh(raw, columns, list(candidates), result)
    if not fresh:
        return result
    # Each shipment's rules and detector state are read and locked before the readings are
    # written, in a fixed order (no deadlock between writers), so the detector can advance
    # while the database stores them; what it decided is written after.
    every = keep if len(fresh) == n else None
    shipment_ids = [every] if every is not None else sorted({str(shipments[i]) for i in fresh})
    pending = [ingest_eval.begin(raw, shipment_id=sid, now=now) for sid in shipment_ids]

    def evaluate() -> None:
        _compute(pending, _rows_by_shipment(columns, shipments, fresh, every))

    stored = _write(raw, columns, shipments, fresh, now_ms, result, during=evaluate)
    if stored is not fresh:  # a concurrent writer stored some of them first: start again
        by_shipment = _rows_by_shipment(columns, shipments, stored, None)
        pending = [ingest_eval.begin(raw, shipment_id=sid, now=now) for sid in sorted(by_shipment)]
        _compute(pending, by_shipment)
    result.accepted = len(stored)
    if stored:  # every path (HTTP, EPCIS, MQTT, courier feeds) counts here, once committed
        on_commit(session, partial(READINGS.inc, len(stored)))
    for p in pending:
        ingest_eval.finish(session, raw, p, now=now)
    return result


def _compute(
    pending: list[ingest_eval.Pending], by_shipment: dict[str, list[coldchain.Row]]
) -> None:
    for p in pending:
        ingest_eval.compute(p, by_shipment[p.shipment.id])


def _rows_by_shipment(
    columns: Columns, shipments: list[str | None], stored: list[int], keep: str | None
) -> dict[str, list[coldchain.Row]]:
    """The detector's rows (ts_ms, temp_c, lat, lon) of the stored readings, by shipment;
    ``keep`` says every reading of the batch is stored, all in that one shipment."""
    ts, temps, extras = columns.ts_ms, columns.temps, columns.extras
    by_shipment: dict[str, list[coldchain.Row]] = defaultdict(list)
    if keep is not None:
        by_shipment[keep] = [
            (t, c, None, None) if e is None else (t, c, e[0], e[1])
            for t, c, e in zip(ts, temps, extras, strict=True)
        ]
        return by_shipment
    for i in stored:
        extra = extras[i]
        by_shipment[str(shipments[i])].append(
            (ts[i], temps[i], None, None)
            if extra is None
            else (ts[i], temps[i], extra[0], extra[1])
        )
    return by_shipment


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


def _no_repeats(ids: list[str], ts: list[int]) -> bool:
    """No (device, timestamp) twice; one device's batch checks its timestamps alone."""
    if ids.count(ids[0]) == len(ids):
        return len(set(ts)) == len(ts)
    return len(set(zip(ids, ts, strict=True))) == len(ts)


def _fresh(raw: Raw, columns: Columns, candidates: list[int], result: IngestResult) -> list[int]:
    """The candidates not stored yet, each once (indexes into columns); the rest counted
    as duplicates."""
    if not candidates:
        return []
    ids, ts = columns.device_ids, columns.ts_ms
    whole = len(candidates) == len(ts)
    unique = whole and _no_repeats(ids, ts)
    if raw.postgres and unique:
        # No item twice: the unique key is the duplicate check. A COPY that meets a stored
        # reading fails, and the conflict-safe insert counts what was stored (``_write``).
        return candidates
    if whole:  # every item: the columns whole, at C speed
        known = reading_store.existing(raw, sorted(set(ids)), min(ts), max(ts))
    else:
        known = reading_store.existing(
            raw,
            sorted({ids[i] for i in candidates}),
            min(ts[i] for i in candidates),
            max(ts[i] for i in candidates),
        )
    if not known and unique:
        return candidates  # the usual batch: nothing stored yet, no item twice
    fresh: list[int] = []
    seen: set[tuple[str, int]] = set()
    for i in candidates:
        key = (ids[i], ts[i])
        if key in known or key in seen:
            result.duplicates += 1
            continue
        seen.add(key)
        fresh.append(i)
    return fresh


def _write(
    raw: Raw,
    columns: Columns,
    shipments: list[str | None],
    fresh: list[int],
    now_ms: int,
    result: IngestResult,
    *,
    during: Callable[[], None],
) -> list[int]:
    """Store the fresh readings, running ``during`` while the database works; the indexes
    stored: ``fresh`` itself, or (PostgreSQL, when a concurrent writer stored some of them
    first) those this call stored, with ``during`` to be run again over them."""
    ids, ts, temps, extras = columns.device_ids, columns.ts_ms, columns.temps, columns.extras
    if raw.postgres:
        full = [
            (shipments[i], ids[i], ts[i], temps[i], *(extras[i] or _NO_EXTRAS), now_ms)
            for i in fresh
        ]
        if 0 < len(full) <= reading_store.INSERT_MAX_ROWS:
            inserted = reading_store.insert_postgresql(raw, full)
            if len(inserted) == len(full):
                during()
                return fresh
        elif reading_store.copy_postgresql(raw, full, during):
            return fresh
        else:
            inserted = {(r[1], r[2]) for r in reading_store.upsert_postgresql(raw, full)}
        stored = [i for i in fresh if (ids[i], ts[i]) in inserted]
        result.duplicates += len(fresh) - len(stored)
        return stored
    groups = reading_store.groups(columns, shipments, fresh)
    reading_store.insert_sqlite_overlapped(raw, groups, now_ms, during)
    return fresh
