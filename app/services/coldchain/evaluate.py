"""Feeding a stored batch to its shipment's excursion detector, cheaply in the common case.

Most batches of a healthy shipment are in range, in time order, with no excursion open: the
detector then only advances its counters and mean-kinetic-temperature sums, which this
module does on the raw connection (reading_store). Anything else — a reading out of the
quiet band, an open excursion, a shipment alert to refresh — goes through the ORM path of
coldchain, which writes excursions and alerts. Both give exactly what ``excursions.step``
gives reading by reading; late readings mark the shipment for re-evaluation as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.db import Raw
from app.services.coldchain import engine as coldchain
from app.services.coldchain import store as reading_store
from app.services.coldchain.detector import DELTA_H_OVER_R_K, KELVIN, Rules, State, step
from app.services.coldchain.store import StateRow
from models.coldchain import ShipmentState
from models.shipment import Shipment

# Rules by the profile's stored values: a profile edited in the database gets new rules.
_RULES: dict[tuple[Any, ...], tuple[Rules, tuple[float, float]]] = {}


def _rules(raw: Raw, shipment_id: str) -> tuple[Rules, tuple[float, float]]:
    values = reading_store.shipment_profile(raw, shipment_id)
    cached = _RULES.get(values)
    if cached is None:
        rules = Rules.from_fields(*values)
        cached = _RULES[values] = (rules, rules.quiet_band())
    return cached


def _track_position(s: StateRow, ordered: Sequence[coldchain.Row]) -> None:
    newest = s.newest_ts_ms or 0
    for ts_ms, _, lat, lon in ordered:
        if ts_ms >= newest:
            if lat is not None and lon is not None:
                s.last_lat, s.last_lon = lat, lon
            newest = ts_ms
    s.newest_ts_ms = newest


def _advance_quietly(s: StateRow, rules: Rules, ordered: Sequence[coldchain.Row]) -> None:
    """``step`` over in-range readings with no excursion open: counters and MKT sums only."""
    if rules.mkt_limit_c is not None:
        w, wexp = s.mkt_w, s.mkt_wexp
        prev_ts, prev_temp = s.last_ts_ms, s.last_temp_c
        exp = math.exp
        for ts_ms, temp_c, _, _ in ordered:
            if prev_ts is not None and prev_temp is not None:
                weight = ts_ms - prev_ts
                w += weight
                wexp += weight * exp(-DELTA_H_OVER_R_K / (prev_temp + KELVIN))
            prev_ts, prev_temp = ts_ms, temp_c
        s.mkt_w, s.mkt_wexp = w, wexp
    s.n += len(ordered)
    s.last_ts_ms, s.last_temp_c = ordered[-1][0], ordered[-1][1]


def _state(s: StateRow) -> State:
    return State(
        n=s.n,
        last_ts_ms=s.last_ts_ms,
        last_temp_c=s.last_temp_c,
        mkt_w=s.mkt_w,
        mkt_wexp=s.mkt_wexp,
        oor_closed_ms=s.oor_closed_ms,
    )


def _alerts_due(rules: Rules, state: State) -> bool:
    """Whether a shipment-level alert (budget, MKT) must be raised or refreshed."""
    return coldchain.budget_used_up(rules, state) or coldchain.mkt_over_limit(rules, state)


def apply(
    session: Session, raw: Raw, *, shipment_id: str, rows: Sequence[coldchain.Row], now: datetime
) -> None:
    """Feed newly stored readings of one shipment to its detector (flushes; caller commits)."""
    if not rows:
        return
    ordered = sorted(rows)
    rules, (quiet_low, quiet_high) = _rules(raw, shipment_id)
    s = reading_store.lock_state(raw, shipment_id, now)
    _track_position(s, ordered)
    if (
        s.needs_reeval
        or (s.last_ts_ms is not None and ordered[0][0] <= s.last_ts_ms)
        or any(a[0] == b[0] for a, b in zip(ordered, ordered[1:], strict=False))
    ):
        # A late or simultaneous reading: the incremental path cannot place it. The
        # re-evaluation job replays the shipment from its stored readings.
        s.needs_reeval = True
        reading_store.save_state(raw, shipment_id, s, now)
        return
    temps = [r[1] for r in ordered]
    if s.open_excursion_id is None and quiet_low <= min(temps) and max(temps) <= quiet_high:
        _advance_quietly(s, rules, ordered)
        state = _state(s)
        if not _alerts_due(rules, state):
            reading_store.save_state(raw, shipment_id, s, now)
            return
        _persist_orm(session, shipment_id, rules, state, s, [], now)
        return
    state = _state(s)
    if s.open_excursion_id is not None:
        state.open = reading_store.open_excursion(raw, s.open_excursion_id)
    for ts_ms, temp_c, _, _ in ordered:
        step(state, rules, ts_ms, temp_c)
    touched = state.drain()
    if not touched and not _alerts_due(rules, state):
        s.n, s.last_ts_ms, s.last_temp_c = state.n, state.last_ts_ms, state.last_temp_c
        s.mkt_w, s.mkt_wexp, s.oor_closed_ms = state.mkt_w, state.mkt_wexp, state.oor_closed_ms
        s.open_excursion_id = state.open.db_id if state.open else None
        reading_store.save_state(raw, shipment_id, s, now)
        return
    _persist_orm(session, shipment_id, rules, state, s, touched, now)


def _persist_orm(
    session: Session,
    shipment_id: str,
    rules: Rules,
    state: State,
    s: StateRow,
    touched: list[Any],
    now: datetime,
) -> None:
    """Excursions and alerts to write: coldchain's ORM path, with the position tracked here."""
    shipment = session.get(Shipment, shipment_id)
    state_row = session.get(ShipmentState, shipment_id)
    if shipment is None or state_row is None:  # locked above, in this transaction
        raise RuntimeError(f"inconsistent data: shipment {shipment_id} missing")
    state_row.last_lat, state_row.last_lon, state_row.newest_ts_ms = (
        s.last_lat,
        s.last_lon,
        s.newest_ts_ms,
    )
    coldchain.persist(
        session,
        shipment=shipment,
        rules=rules,
        state=state,
        state_row=state_row,
        touched=touched,
        now=now,
    )
