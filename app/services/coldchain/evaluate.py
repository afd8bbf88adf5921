"""Feeding a stored batch to its shipment's excursion detector, cheaply in the common case.

Most batches of a healthy shipment are in range, in time order, with no excursion open: the
detector then only advances its counters and mean-kinetic-temperature sums, which this
module does on the raw connection (reading_store). Anything else — a reading out of the
quiet band, an open excursion, a shipment alert to refresh — goes through the ORM path of
coldchain, which writes excursions and alerts. Both give exactly what ``excursions.step``
gives reading by reading; late readings mark the shipment for re-evaluation as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.db import Raw
from app.services.coldchain import alarms
from app.services.coldchain import engine as coldchain
from app.services.coldchain import store as reading_store
from app.services.coldchain.detector import Rules, State, accumulate_mkt, step
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


def _track_position(state: State, ordered: Sequence[coldchain.Row]) -> None:
    newest = state.newest_ts_ms or 0
    for ts_ms, _, lat, lon in ordered:
        if ts_ms >= newest:
            if lat is not None and lon is not None:
                state.last_lat, state.last_lon = lat, lon
            newest = ts_ms
    state.newest_ts_ms = newest


def _alerts_due(rules: Rules, state: State) -> bool:
    """Whether a shipment-level alert (budget, MKT) must be raised or refreshed."""
    return alarms.budget_used_up(rules, state) or alarms.mkt_over_limit(rules, state)


def apply(
    session: Session, raw: Raw, *, shipment_id: str, rows: Sequence[coldchain.Row], now: datetime
) -> None:
    """Feed newly stored readings of one shipment to its detector (flushes; caller commits)."""
    if not rows:
        return
    ordered = sorted(rows)
    rules, (quiet_low, quiet_high) = _rules(raw, shipment_id)
    state = reading_store.lock_state(raw, shipment_id, now)
    _track_position(state, ordered)
    if (
        state.needs_reeval
        or (state.last_ts_ms is not None and ordered[0][0] <= state.last_ts_ms)
        or any(a[0] == b[0] for a, b in zip(ordered, ordered[1:], strict=False))
    ):
        # A late or simultaneous reading: the incremental path cannot place it. The
        # re-evaluation job replays the shipment from its stored readings.
        state.needs_reeval = True
        reading_store.save_state(raw, shipment_id, state, now)
        return
    if rules.mkt_limit_c is not None:
        accumulate_mkt(state, ordered)
    temps = [r[1] for r in ordered]
    if state.open_excursion_id is None and quiet_low <= min(temps) and max(temps) <= quiet_high:
        # In range with no excursion open: ``step`` would only count the readings.
        state.n += len(ordered)
        state.last_ts_ms, state.last_temp_c = ordered[-1][0], ordered[-1][1]
        touched = []
    else:
        if state.open_excursion_id is not None:
            state.open = reading_store.open_excursion(raw, state.open_excursion_id)
            if state.open is None:  # replayed away since: nothing open any more
                state.open_excursion_id = None
        for ts_ms, temp_c, _, _ in ordered:
            step(state, rules, ts_ms, temp_c)
        touched = state.drain()
    if not touched and not _alerts_due(rules, state):
        reading_store.save_state(raw, shipment_id, state, now)
        return
    shipment = session.get(Shipment, shipment_id)
    if shipment is None:  # locked above, in this transaction
        raise RuntimeError(f"inconsistent data: shipment {shipment_id} missing")
    coldchain.persist(
        session, shipment=shipment, rules=rules, state=state, touched=touched, now=now
    )
