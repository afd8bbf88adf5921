"""Persisting the excursion detector: per-shipment state, excursion rows and their alerts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app.db import Raw
from app.services.coldchain import alarms
from app.services.coldchain import store as reading_store
from app.services.coldchain.detector import Exc, Rules, State, feed
from app.times import from_ms
from models.coldchain import Excursion, Reading, ShipmentState
from models.reference import Profile
from models.shipment import Shipment

# One reading: (ts_ms, temp_c, lat, lon)
Row = tuple[int, float, float | None, float | None]
# Kept for importers outside the cold chain until they take app.times.from_ms and alarms'.
ms_to_dt = from_ms
MKT_MIN_SPAN_MS = alarms.MKT_MIN_SPAN_MS


def persist(
    session: Session,
    *,
    shipment: Shipment,
    rules: Rules,
    state: State,
    touched: Iterable[Exc],
    now: datetime,
) -> None:
    """Write touched excursions and their alerts, the detector state and shipment alerts."""
    for exc in touched:
        row = session.get(Excursion, exc.db_id) if exc.db_id is not None else None
        if row is None:
            row = Excursion(
                shipment_id=shipment.id,
                kind=exc.kind,
                started_ms=exc.started_ms,
                last_ms=exc.last_ms,
                peak_c=exc.peak_c,
                severity=exc.severity,
            )
        row.kind = exc.kind
        row.last_ms = exc.last_ms
        row.ended_ms = exc.ended_ms
        row.status = "closed" if exc.ended_ms is not None else "open"
        row.peak_c = exc.peak_c
        row.out_of_spec = exc.out_of_spec
        row.severity = exc.severity
        session.add(row)
        session.flush()
        exc.db_id = row.id
        spec = alarms.excursion(
            shipment_id=shipment.id,
            case_id=shipment.case_id,
            profile=shipment.profile,
            rules=rules,
            exc=exc,
        )
        if spec is not None:
            alarms.raise_spec(session, spec, now=now)
    state.open_excursion_id = state.open.db_id if state.open else None
    reading_store.save_state(Raw.of(session), shipment.id, state, now)
    for spec in alarms.shipment_level(
        shipment_id=shipment.id, case_id=shipment.case_id, rules=rules, state=state
    ):
        alarms.raise_spec(session, spec, now=now)


def reevaluate(session: Session, *, shipment: Shipment, profile: Profile, now: datetime) -> None:
    """Replay the shipment's stored readings from scratch and reconcile its excursions."""
    raw = Raw.of(session)
    state = reading_store.lock_state(raw, shipment.id, now).replay()
    rules = Rules.from_profile(profile)
    readings = session.execute(
        select_columns(col(Reading.ts_ms), col(Reading.temp_c))
        .where(col(Reading.shipment_id) == shipment.id)
        .order_by(col(Reading.ts_ms), col(Reading.device_id))
    )
    ordered: list[tuple[int, float]] = []
    previous: int | None = None
    for ts_ms, temp_c in readings:
        if previous is not None and ts_ms <= previous:
            # Two loggers in one box reading at the same instant: keep the first.
            continue
        ordered.append((ts_ms, temp_c))
        previous = ts_ms
    feed(state, rules, ordered)
    fresh = state.drain()
    existing = {
        e.started_ms: e
        for e in session.exec(select(Excursion).where(Excursion.shipment_id == shipment.id))
    }
    for exc in fresh:
        if exc.started_ms in existing:
            exc.db_id = existing.pop(exc.started_ms).id
    stale = [e.id for e in existing.values() if e.disposition is None]
    if stale:
        session.execute(delete(Excursion).where(col(Excursion.id).in_(stale)))
    persist(session, shipment=shipment, rules=rules, state=state, touched=fresh, now=now)


def summary(session: Session, *, shipment: Shipment, profile: Profile) -> dict[str, object]:
    """Excursion count, open count, out-of-range minutes, worst peak and MKT so far."""
    state = session.get(ShipmentState, shipment.id)
    excursions = list(session.exec(select(Excursion).where(Excursion.shipment_id == shipment.id)))
    rules = Rules.from_profile(profile)

    def distance(e: Excursion) -> float:
        limit = rules.max_c if e.kind.endswith("high") else (rules.min_c or rules.max_c)
        return abs(e.peak_c - limit)

    worst = max(excursions, key=distance, default=None)
    oor_ms = 0
    mkt = None
    if state is not None:
        open_ms = sum(e.last_ms - e.started_ms for e in excursions if e.status == "open")
        oor_ms = state.oor_closed_ms + open_ms
        if rules.mkt_limit_c is not None:
            mkt = State(mkt_w=state.mkt_w, mkt_wexp=state.mkt_wexp).mkt_c()
    return {
        "count": len(excursions),
        "open": sum(1 for e in excursions if e.status == "open"),
        "out_of_range_min": round(oor_ms / 60_000, 3),
        "peak_c": worst.peak_c if worst else None,
        "mkt_c": round(mkt, 3) if mkt is not None else None,
    }


def last_reading(session: Session, *, shipment_id: str) -> dict[str, object] | None:
    row = session.execute(
        select_columns(
            col(Reading.ts_ms),
            col(Reading.temp_c),
            col(Reading.lat),
            col(Reading.lon),
            col(Reading.device_id),
        )
        .where(col(Reading.shipment_id) == shipment_id)
        .order_by(col(Reading.ts_ms).desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    ts_ms, temp_c, lat, lon, device_id = row
    return {"t": from_ms(ts_ms), "temp_c": temp_c, "lat": lat, "lon": lon, "device_id": device_id}
