"""Feeding a stored batch to its shipment's excursion detector, cheaply in the common case.

Most batches of a healthy shipment are in range, in time order, with no excursion open: the
detector then only advances its counters and mean-kinetic-temperature sums, which this
module does on the raw connection (state_store). Anything else — a reading out of the
quiet band, an open excursion, a shipment alert to refresh — goes through the ORM path of
coldchain, which writes excursions and alerts. Both give exactly what ``excursions.step``
gives reading by reading; late readings mark the shipment for re-evaluation as before.

A batch goes through ``begin`` (rules read, state locked), ``compute`` (no database: it may
run while the readings are being written) and ``finish`` (what it decided, written).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.raw import Raw
from app.services.coldchain import alarms, state_store
from app.services.coldchain import engine as coldchain
from app.services.coldchain.detector import Exc, Rules, State, accumulate_mkt, step
from app.services.coldchain.excursion_rows import ShipmentRef

# Rules by the profile's stored values: a profile edited in the database gets new rules.
_RULES: dict[tuple[Any, ...], tuple[Rules, tuple[float, float]]] = {}


def _rules(values: tuple[Any, ...]) -> tuple[Rules, tuple[float, float]]:
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


@dataclass
class Pending:
    """One shipment's detector between ``begin`` (its rules and locked state, read) and
    ``finish`` (what ``compute`` decided, written)."""

    shipment: ShipmentRef
    rules: Rules
    quiet: tuple[float, float]
    state: State
    stored_open: Exc | None  # the open excursion's stored row, if the state names one
    touched: list[Exc] = field(default_factory=list)
    save_only: bool = True  # no excursion touched, no shipment alert due


def begin(raw: Raw, *, shipment_id: str, now: datetime) -> Pending:
    """Read a shipment's rules and lock its detector state (the database part before)."""
    case_id, profile, values, state = state_store.profile_and_state(raw, shipment_id, now)
    rules, quiet = _rules(values)
    stored_open = None
    if state.open_excursion_id is not None:
        stored_open = state_store.open_excursion(raw, state.open_excursion_id)
    return Pending(ShipmentRef(shipment_id, case_id, profile), rules, quiet, state, stored_open)


def compute(pending: Pending, rows: Sequence[coldchain.Row]) -> None:
    """Advance the detector over newly stored readings: no database, so it may run while
    the readings themselves are being written."""
    rules, state = pending.rules, pending.state
    quiet_low, quiet_high = pending.quiet
    ordered = sorted(rows)
    _track_position(state, ordered)
    if (
        state.needs_reeval
        or (state.last_ts_ms is not None and ordered[0][0] <= state.last_ts_ms)
        or any(a[0] == b[0] for a, b in zip(ordered, ordered[1:], strict=False))
    ):
        # A late or simultaneous reading: the incremental path cannot place it. The
        # re-evaluation job replays the shipment from its stored readings.
        state.needs_reeval = True
        return
    if rules.mkt_limit_c is not None:
        accumulate_mkt(state, ordered)
    temps = [r[1] for r in ordered]
    if state.open_excursion_id is None and quiet_low <= min(temps) and max(temps) <= quiet_high:
        # In range with no excursion open: ``step`` would only count the readings.
        state.n += len(ordered)
        state.last_ts_ms, state.last_temp_c = ordered[-1][0], ordered[-1][1]
    else:
        if state.open_excursion_id is not None:
            state.open = pending.stored_open
            if state.open is None:  # replayed away since: nothing open any more
                state.open_excursion_id = None
        for ts_ms, temp_c, _, _ in ordered:
            step(state, rules, ts_ms, temp_c)
        pending.touched = state.drain()
    pending.save_only = not pending.touched and not _alerts_due(rules, state)


def finish(session: Session, raw: Raw, pending: Pending, *, now: datetime) -> None:
    """Write what ``compute`` decided (flushes; caller commits)."""
    if pending.state.needs_reeval or pending.save_only:
        state_store.save_state(raw, pending.shipment.id, pending.state, now)
        return
    coldchain.persist(
        session,
        shipment=pending.shipment,
        rules=pending.rules,
        state=pending.state,
        touched=pending.touched,
        now=now,
    )
