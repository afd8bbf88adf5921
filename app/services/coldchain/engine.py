"""Persisting the excursion detector: per-shipment state, excursion rows and their alerts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app.raw import Raw
from app.services.coldchain import alarms, frozen, state_store
from app.services.coldchain import excursion_rows as rows
from app.services.coldchain.detector import Exc, Rules, State, feed
from app.services.metrics import turnaround_rows
from app.services.metrics.case_rows import FLAGGING_SEVERITIES
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
    shipment: rows.ShipmentKey,
    rules: Rules,
    state: State,
    touched: Iterable[Exc],
    now: datetime,
) -> None:
    """Write touched excursions (audited) and their alerts, the detector state and shipment
    alerts: the incremental path, which only ever extends the open excursion or opens new ones."""
    flag_inputs = False  # an excursion that is or was major or critical: the case's flag
    for exc in touched:
        row = session.get(Excursion, exc.db_id) if exc.db_id is not None else None
        if row is not None and row.disposition is not None:
            # Signed while open (before signing required a closed excursion): frozen. The
            # replay records what the new readings change beside it.
            state.needs_reeval = True
            continue
        before = rows.snapshot(row) if row is not None else None
        if row is None:
            row = rows.new_row(shipment.id, exc, exc.started_ms)
        else:
            rows.assign(row, exc)
        session.add(row)
        session.flush()
        exc.db_id = row.id
        if rows.record(session, row=row, before=before, now=now):
            was = before["severity"] if before is not None else None
            flag_inputs |= was in FLAGGING_SEVERITIES or row.severity in FLAGGING_SEVERITIES
        # A referring excursion (written by a replay) that goes on keeps its own alert.
        referent = (
            session.get(Excursion, row.refers_to_id) if row.refers_to_id is not None else None
        )
        rows.raise_alert(
            session,
            shipment=shipment,
            profile=shipment.profile,
            rules=rules,
            exc=exc,
            row=row,
            referent=referent,
            resolve=False,
            now=now,
        )
    if flag_inputs:  # a warning neither makes nor unmakes the case's flag: no refresh
        turnaround_rows.refresh(session, case_id=shipment.case_id)
    _finish(session, shipment=shipment, rules=rules, state=state, now=now)


def _finish(
    session: Session, *, shipment: rows.ShipmentKey, rules: Rules, state: State, now: datetime
) -> None:
    state.open_excursion_id = state.open.db_id if state.open else None
    state_store.save_state(Raw.of(session), shipment.id, state, now)
    for spec in alarms.shipment_level(
        shipment_id=shipment.id, case_id=shipment.case_id, rules=rules, state=state
    ):
        alarms.raise_spec(session, spec, now=now)


def reevaluate(session: Session, *, shipment: Shipment, profile: Profile, now: datetime) -> None:
    """Replay the shipment's stored readings from scratch and reconcile its excursions with
    the stored ones: signed ones stay frozen, every change is audited (``frozen``)."""
    raw = Raw.of(session)
    state = state_store.lock_state(raw, shipment.id, now).replay()
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
    frozen.reconcile(
        session,
        shipment=shipment,
        profile=shipment.profile,
        rules=rules,
        fresh=state.drain(),
        now=now,
    )
    turnaround_rows.refresh(session, case_id=shipment.case_id)
    _finish(session, shipment=shipment, rules=rules, state=state, now=now)


def summary(session: Session, *, shipment: Shipment, profile: Profile) -> dict[str, object]:
    """Excursion count, open count, out-of-range minutes, worst peak and MKT so far."""
    state = session.get(ShipmentState, shipment.id)
    excursions = list(session.exec(select(Excursion).where(Excursion.shipment_id == shipment.id)))
    return summarize(state, excursions, Rules.from_profile(profile))


def summarize(
    state: ShipmentState | None, excursions: list[Excursion], rules: Rules | None
) -> dict[str, object]:
    """``summary`` of a detector state and excursions; ``rules`` may be None only when
    neither exists (a shipment nothing has been recorded for: ``nothing_recorded``)."""
    worst = None
    oor_ms = 0
    mkt = None
    if state is not None or excursions:
        if rules is None:
            raise ValueError("a recorded shipment's summary needs its profile's rules")
        worst = max(excursions, key=lambda e: _beyond_limit(e, rules), default=None)
    if state is not None and rules is not None:
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


def _beyond_limit(e: Excursion, rules: Rules) -> float:
    """How far an excursion's peak went past the limit it crossed."""
    limit = rules.max_c if e.kind.endswith("high") else (rules.min_c or rules.max_c)
    return abs(e.peak_c - limit)


def nothing_recorded() -> dict[str, object]:
    """The summary of a shipment no reading has reached yet (one created in this
    transaction: no other can have written for it)."""
    return summarize(None, [], None)


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
