"""Reading ingest: the hot path.

Each item is validated alone (a bad one is reported by index, the rest stored), attached to
the shipment its device was riding in at the reading's timestamp, stored with one bulk
statement (no ORM object per reading) and fed to the excursion detector of its shipment.
``(device_id, ts_ms)`` is unique: a resend counts as a duplicate and is never stored twice.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlmodel import Session, col, select

from app.services import coldchain
from models.coldchain import Device
from models.principal import Principal, Role
from models.reference import Profile
from models.shipment import DeviceAssignment, Shipment

MAX_BATCH = 10_000
# One batch at a time per process, held by every ingest path (HTTP, MQTT) around its write
# transaction: executemany in a thread while the event loop validates other batches convoys
# on the GIL, and SQLite has one writer anyway. Scale with processes.
INGEST_LOCK = threading.Lock()
OPTIONAL = {
    "lat": (-90.0, 90.0),
    "lon": (-180.0, 180.0),
    "humidity_pct": (0.0, 100.0),
    "shock_g": (0.0, 1000.0),
    "light_lux": (0.0, 1e7),
    "battery_pct": (0.0, 100.0),
}
ALLOWED_KEYS = frozenset({"device_id", "ts", "temp_c", *OPTIONAL})
# Physically possible for a logger on this journey (vapour-phase LN2 to a hot tarmac).
TEMP_RANGE = (-273.15, 150.0)
COLUMNS = (
    "shipment_id",
    "device_id",
    "ts_ms",
    "temp_c",
    "lat",
    "lon",
    "humidity_pct",
    "shock_g",
    "light_lux",
    "battery_pct",
    "received_ms",
)


_SQLITE_INSERT = (
    f"INSERT INTO reading ({', '.join(COLUMNS)}) "  # noqa: S608 - constant column names
    f"VALUES ({', '.join('?' for _ in COLUMNS)})"
)


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, index: int, reason: str) -> None:
        self.rejected.append({"index": index, "reason": reason})


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


_NO_EXTRAS: tuple[None, ...] = (None,) * len(OPTIONAL)


def epoch_ms(ts: str) -> int | str:
    """Epoch milliseconds of an RFC 3339 time with an offset, or why it is refused.

    (The C ``fromisoformat`` beats a hand-written parser here: measured 4 vs 9 ms per 5,000.)
    """
    try:
        when = datetime.fromisoformat(ts)
    except ValueError:
        return "ts: not an RFC 3339 time"
    if when.tzinfo is None or when.utcoffset() is None:
        return "ts: a UTC offset is required (naive times are ambiguous)"
    return round(when.timestamp() * 1000)


def _temperature(value: Any) -> float | None:
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        return float(value)
    return None


def parse_item(item: Any, *, now_ms: int, future_ms: int) -> tuple[str, int, tuple[Any, ...]] | str:
    """A valid item as (device_id, ts_ms, measurement columns), or the reason it is refused."""
    if type(item) is not dict:
        return "a reading must be a JSON object"
    if len(item) > 3 and not ALLOWED_KEYS.issuperset(item):
        return f"unknown field {sorted(item.keys() - ALLOWED_KEYS)[0]!r}"
    device_id = item.get("device_id")
    if type(device_id) is not str or not 0 < len(device_id) <= 200:
        return "device_id: a string of 1 to 200 characters is required"
    ts = item.get("ts")
    if type(ts) is not str or len(ts) > 40:
        return "ts: an RFC 3339 time with a UTC offset is required"
    ts_ms = epoch_ms(ts)
    if type(ts_ms) is str:
        return ts_ms
    when_ms = int(ts_ms)
    if when_ms > now_ms + future_ms:
        return "ts: more than 5 minutes in the future"
    temp = _temperature(item.get("temp_c"))
    if temp is None:
        return "temp_c: a finite number is required"
    if not TEMP_RANGE[0] <= temp <= TEMP_RANGE[1]:
        return f"temp_c: {temp} °C is physically implausible"
    if len(item) == 3:
        return device_id, when_ms, (temp, *_NO_EXTRAS)
    extras: list[float | None] = []
    for name, (low, high) in OPTIONAL.items():
        raw = item.get(name)
        if raw is None:
            extras.append(None)
            continue
        value = _number(raw)
        if value is None or not low <= value <= high:
            return f"{name}: a finite number between {low:g} and {high:g} is required"
        extras.append(value)
    return device_id, when_ms, (temp, *extras)


class Assignments:
    """Which shipment each device was in, by time: intervals from pickup to delivery."""

    def __init__(self, session: Session, device_ids: set[str]) -> None:
        self._by_device: dict[str, list[tuple[int, int | None, str]]] = defaultdict(list)
        if not device_ids:
            return
        rows = session.exec(
            select(DeviceAssignment).where(col(DeviceAssignment.device_id).in_(device_ids))
        )
        for a in rows:
            start = int(a.assigned_from.timestamp() * 1000)
            end = int(a.assigned_until.timestamp() * 1000) if a.assigned_until else None
            self._by_device[a.device_id].append((start, end, a.shipment_id))
        for intervals in self._by_device.values():
            intervals.sort(key=lambda i: i[0])
        self._starts = {d: [i[0] for i in v] for d, v in self._by_device.items()}

    def shipment_at(self, device_id: str, ts_ms: int) -> str | None:
        intervals = self._by_device.get(device_id)
        if not intervals:
            return None
        if len(intervals) == 1:  # the usual case: a logger in one shipment
            start, end, shipment_id = intervals[0]
            return shipment_id if start <= ts_ms and (end is None or ts_ms <= end) else None
        i = bisect.bisect_right(self._starts[device_id], ts_ms) - 1
        if i < 0:
            return None
        start, end, shipment_id = intervals[i]
        return shipment_id if end is None or ts_ms <= end else None


def _owned_devices(session: Session, actor: Principal, device_ids: set[str]) -> set[str]:
    if actor.role == Role.device:
        return {actor.device_id} & device_ids if actor.device_id else set()
    rows = session.exec(select(Device.id, Device.courier).where(col(Device.id).in_(device_ids)))
    if actor.role == Role.admin:
        return {device_id for device_id, _ in rows}
    return {device_id for device_id, courier in rows if courier == actor.courier}


def ingest(
    session: Session,
    *,
    actor: Principal,
    items: list[Any],
    now: datetime,
    future_tolerance_s: int = 300,
) -> IngestResult:
    """Validate, attach, store and evaluate a batch of readings (flushes; caller commits)."""
    result = IngestResult()
    now_ms = int(now.timestamp() * 1000)
    parsed: list[tuple[int, str, int, tuple[Any, ...]]] = []
    for index, item in enumerate(items):
        outcome = parse_item(item, now_ms=now_ms, future_ms=future_tolerance_s * 1000)
        if isinstance(outcome, str):
            result.reject(index, outcome)
        else:
            parsed.append((index, *outcome))
    device_ids = {device_id for _, device_id, _, _ in parsed}
    owned = _owned_devices(session, actor, device_ids) if device_ids else set()
    assignments = Assignments(session, owned)
    rows: list[tuple[Any, ...]] = []
    seen: set[tuple[str, int]] = set()
    for index, device_id, ts_ms, measures in parsed:
        if device_id not in owned:
            result.reject(index, "unknown device, or not one of your organisation's")
            continue
        shipment_id = assignments.shipment_at(device_id, ts_ms)
        if shipment_id is None:
            result.reject(index, "device is not assigned to a shipment at ts")
            continue
        if (device_id, ts_ms) in seen:
            result.duplicates += 1
            continue
        seen.add((device_id, ts_ms))
        rows.append((shipment_id, device_id, ts_ms, *measures, now_ms))
    result.rejected.sort(key=lambda r: int(r["index"]))
    if not rows:
        return result
    stored = _store(session, rows)
    result.accepted = len(stored)
    result.duplicates += len(rows) - len(stored)
    _evaluate(session, stored, now)
    return result


def _store(session: Session, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Insert the rows not stored yet; return those inserted."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        return _store_postgresql(session, rows)
    ts_values = [r[2] for r in rows]
    existing = conn.execute(
        text(
            "SELECT device_id, ts_ms FROM reading WHERE device_id IN :devices "
            "AND ts_ms BETWEEN :low AND :high"
        ).bindparams(bindparam("devices", expanding=True)),
        {"devices": sorted({r[1] for r in rows}), "low": min(ts_values), "high": max(ts_values)},
    ).all()
    if existing:
        known = {(d, t) for d, t in existing}
        rows = [r for r in rows if (r[1], r[2]) not in known]
    if rows:
        # The raw DB-API cursor of this transaction: executemany without per-row overhead.
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(_SQLITE_INSERT, rows)
        finally:
            cursor.close()
    return rows


def _store_postgresql(session: Session, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    driver = session.connection().connection.driver_connection
    if driver is None:  # guaranteed by foreign keys and state
        raise RuntimeError("inconsistent data: driver missing")
    cols = ", ".join(COLUMNS)
    with driver.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS reading_in "
            "(LIKE reading INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        cur.execute("TRUNCATE reading_in")
        with cur.copy(f"COPY reading_in ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO reading ({cols}) SELECT {cols} FROM reading_in "  # noqa: S608
            f"ON CONFLICT (device_id, ts_ms) DO NOTHING RETURNING {cols}"
        )
        return [tuple(r) for r in cur.fetchall()]


def _evaluate(session: Session, stored: list[tuple[Any, ...]], now: datetime) -> None:
    by_shipment: dict[str, list[coldchain.Row]] = defaultdict(list)
    for row in stored:
        by_shipment[row[0]].append((row[2], row[3], row[4], row[5]))
    profiles: dict[str, Profile] = {}
    for shipment_id in sorted(by_shipment):  # a fixed order avoids deadlocks between writers
        shipment = session.get(Shipment, shipment_id)
        if shipment is None:  # guaranteed by foreign keys and state
            raise RuntimeError("inconsistent data: shipment missing")
        if shipment.profile not in profiles:
            profile = session.get(Profile, shipment.profile)
            if profile is None:  # guaranteed by foreign keys and state
                raise RuntimeError("inconsistent data: profile missing")
            profiles[shipment.profile] = profile
        coldchain.apply_readings(
            session,
            shipment=shipment,
            profile=profiles[shipment.profile],
            rows=by_shipment[shipment_id],
            now=now,
        )
