"""Persisting the excursion detector: per-shipment state, excursion rows and their alerts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app.db import Raw
from app.services.alerts import lifecycle as alerts
from app.services.coldchain import store as reading_store
from app.services.coldchain.detector import Exc, Rules, State, step
from models.alert import AlertKind, Severity
from models.coldchain import Excursion, Reading, ShipmentState
from models.reference import Profile
from models.shipment import Shipment

# One reading: (ts_ms, temp_c, lat, lon)
Row = tuple[int, float, float | None, float | None]
MKT_MIN_SPAN_MS = 60 * 60_000  # MKT over less than an hour of data is not judged


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _state_row(session: Session, shipment_id: str, now: datetime) -> ShipmentState:
    """The shipment's detector state as a row object, created if missing and locked."""
    reading_store.lock_state(Raw.of(session), shipment_id, now)
    row = session.get(ShipmentState, shipment_id)
    if row is None:  # just locked in this transaction
        raise RuntimeError(f"shipment state of {shipment_id} vanished")
    return row


def persist(
    session: Session,
    *,
    shipment: Shipment,
    rules: Rules,
    state: State,
    state_row: ShipmentState,
    touched: Iterable[Exc],
    now: datetime,
) -> None:
    """Write touched excursions and their alerts, the state row and shipment-level alerts."""
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
        _excursion_alert(session, shipment=shipment, rules=rules, exc=exc, now=now)
    state_row.n = state.n
    state_row.last_ts_ms = state.last_ts_ms
    state_row.last_temp_c = state.last_temp_c
    state_row.mkt_w = state.mkt_w
    state_row.mkt_wexp = state.mkt_wexp
    state_row.oor_closed_ms = state.oor_closed_ms
    state_row.open_excursion_id = state.open.db_id if state.open else None
    state_row.updated_at = now
    session.add(state_row)
    _shipment_alerts(session, shipment=shipment, rules=rules, state=state, now=now)


def _excursion_alert(
    session: Session, *, shipment: Shipment, rules: Rules, exc: Exc, now: datetime
) -> None:
    # Short out-of-range blips (door openings) are recorded but do not alarm; the dwell
    # time exists for that. A cryogenic warning band does warn.
    warn_band = not exc.out_of_spec and rules.warn_above_c is not None
    if exc.severity == "warning" and not warn_band:
        return
    minutes = exc.duration_ms / 60_000
    state = "closed" if exc.ended_ms is not None else "ongoing"
    alerts.raise_alert(
        session,
        kind=AlertKind.temperature_excursion,
        severity=Severity(exc.severity),
        message=(
            f"{exc.kind.replace('_', ' ')} temperature excursion on shipment {shipment.id[:8]} "
            f"({shipment.profile}): peak {exc.peak_c:.1f} °C, {minutes:.0f} min, {state}"
        ),
        now=now,
        case_id=shipment.case_id,
        shipment_id=shipment.id,
        dedupe_key=f"excursion:{shipment.id}:{exc.started_ms}",
        data={
            "started_at": ms_to_dt(exc.started_ms).isoformat(),
            "peak_c": exc.peak_c,
            "duration_min": round(minutes, 2),
            "kind": exc.kind,
        },
    )


def budget_used_up(rules: Rules, state: State) -> bool:
    """The shipment's cumulative out-of-range budget is spent."""
    return rules.budget_ms is not None and state.oor_total_ms() >= rules.budget_ms


def mkt_over_limit(rules: Rules, state: State) -> bool:
    """The trip's mean kinetic temperature, over at least an hour of data, is over its limit."""
    mkt = state.mkt_c()
    return (
        rules.mkt_limit_c is not None
        and mkt is not None
        and state.mkt_w >= MKT_MIN_SPAN_MS
        and mkt > rules.mkt_limit_c
    )


def _shipment_alerts(
    session: Session, *, shipment: Shipment, rules: Rules, state: State, now: datetime
) -> None:
    total = state.oor_total_ms()
    if rules.budget_ms is not None and budget_used_up(rules, state):
        alerts.raise_alert(
            session,
            kind=AlertKind.temperature_excursion,
            severity=Severity.major,
            message=(
                f"shipment {shipment.id[:8]} has been out of range {total / 60_000:.0f} min in "
                f"total (budget {rules.budget_ms / 60_000:.0f} min)"
            ),
            now=now,
            case_id=shipment.case_id,
            shipment_id=shipment.id,
            dedupe_key=f"budget:{shipment.id}",
        )
    mkt = state.mkt_c()
    if rules.mkt_limit_c is not None and mkt is not None and mkt_over_limit(rules, state):
        alerts.raise_alert(
            session,
            kind=AlertKind.temperature_excursion,
            severity=Severity(rules.mkt_severity),
            message=(
                f"mean kinetic temperature of shipment {shipment.id[:8]} is {mkt:.2f} °C "
                f"(limit {rules.mkt_limit_c:.1f} °C)"
            ),
            now=now,
            case_id=shipment.case_id,
            shipment_id=shipment.id,
            dedupe_key=f"mkt:{shipment.id}",
        )


def reevaluate(session: Session, *, shipment: Shipment, profile: Profile, now: datetime) -> None:
    """Replay the shipment's stored readings from scratch and reconcile its excursions."""
    state_row = _state_row(session, shipment.id, now)
    rules = Rules.from_profile(profile)
    state = State()
    readings = session.execute(
        select_columns(col(Reading.ts_ms), col(Reading.temp_c), col(Reading.device_id))
        .where(col(Reading.shipment_id) == shipment.id)
        .order_by(col(Reading.ts_ms), col(Reading.device_id))
    )
    previous: int | None = None
    for ts_ms, temp_c, _ in readings:
        if previous is not None and ts_ms <= previous:
            # Two loggers in one box reading at the same instant: keep the first.
            continue
        step(state, rules, ts_ms, temp_c)
        previous = ts_ms
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
    state_row.needs_reeval = False
    persist(
        session,
        shipment=shipment,
        rules=rules,
        state=state,
        state_row=state_row,
        touched=fresh,
        now=now,
    )


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
    return {"t": ms_to_dt(ts_ms), "temp_c": temp_c, "lat": lat, "lon": lon, "device_id": device_id}
