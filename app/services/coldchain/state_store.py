"""A shipment's temperature-detector state (``shipment_state``): read with its profile's
rules and locked for the transaction, created if missing, stored after the detector ran;
and the open excursion it points at. Every writer of readings goes through here, on the
driver's own connection (``Raw``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.raw import Raw
from app.services.coldchain.detector import PROFILE_FIELDS, Exc, State

_STATE_COLUMNS = (
    "n, last_ts_ms, last_temp_c, last_lat, last_lon, newest_ts_ms, mkt_w, mkt_wexp, "
    "oor_closed_ms, open_excursion_id, needs_reeval"
)

_PROFILE_OF_SHIPMENT = (
    "SELECT s.case_id, s.profile, "  # noqa: S608
    f"{', '.join('p.' + f for f in PROFILE_FIELDS)} FROM shipment s "
    "JOIN profile p ON p.code = s.profile WHERE s.id = ?"
)


# The ingest writer runs several units in one transaction (writer.py). Once a group holds
# its first unit's shipments, a later unit must not wait for a shipment another transaction
# holds: two groups taking the same shipments in opposite orders would deadlock, and
# PostgreSQL breaks a deadlock only after ``deadlock_timeout`` (a second), failing a group.
# With this note in the session's info, a state held elsewhere (or not created yet, whose
# insert could wait too) raises ``StateBusy`` instead, before the unit has written anything
# (ingest reads and locks each shipment's state first); the writer runs the unit again on
# its own once the group has committed.
NO_WAIT = "ingest_no_wait"


class StateBusy(Exception):  # noqa: N818 - a signal to the writer, not an error
    """A shipment's detector state is held by another transaction, and this unit may not
    wait for it here."""


def _no_wait(raw: Raw) -> bool:
    return raw.postgres and bool(raw.info.get(NO_WAIT))


def _state_select(raw: Raw) -> str:
    select = f"SELECT {_STATE_COLUMNS} FROM shipment_state WHERE shipment_id = ?"  # noqa: S608
    if not raw.postgres:
        return select
    return select + (" FOR NO KEY UPDATE SKIP LOCKED" if _no_wait(raw) else " FOR NO KEY UPDATE")


def profile_and_state(
    raw: Raw, shipment_id: str, now: datetime
) -> tuple[str, str, tuple[Any, ...], State]:
    """A shipment's case, profile code and the detector's fields of its temperature profile
    (PROFILE_FIELDS order), and its state as ``lock_state`` gives it: one round trip on
    PostgreSQL when the state exists (every unit of ingest reads both, for each shipment)."""
    profiles, states = raw.pipelined(
        [(_PROFILE_OF_SHIPMENT, [shipment_id]), (_state_select(raw), [shipment_id])]
    )
    if not profiles:  # readings reference the shipment, and it its profile, by foreign key
        raise RuntimeError(f"inconsistent data: shipment {shipment_id} or its profile missing")
    row = profiles[0]
    if states:
        state = _state_of(states[0])
    elif _no_wait(raw):
        raise StateBusy(shipment_id)
    else:
        state = lock_state(raw, shipment_id, now)
    return str(row[0]), str(row[1]), tuple(row[2:]), state


def lock_state(raw: Raw, shipment_id: str, now: datetime) -> State:
    """The shipment's detector state, created if missing, locked for this transaction."""
    select = _state_select(raw)
    row = raw.one(select, [shipment_id])
    if row is None and _no_wait(raw):
        raise StateBusy(shipment_id)
    if row is None:
        # Insert-if-absent: two writers seeing a new shipment at once cannot both insert.
        raw.run(
            "INSERT INTO shipment_state (shipment_id, n, mkt_w, mkt_wexp, oor_closed_ms, "
            "needs_reeval, updated_at) VALUES (?, 0, 0, 0, 0, ?, ?) "
            "ON CONFLICT (shipment_id) DO NOTHING",
            [shipment_id, False, raw.stamp(now)],
        )
        row = raw.one(select, [shipment_id])
        if row is None:  # just inserted, or inserted by the winner of the race
            raise RuntimeError("shipment state vanished")
    return _state_of(row)


def _state_of(row: Sequence[Any]) -> State:
    n, last_ts, last_temp, lat, lon, newest, w, wexp, oor, open_id, reeval = row
    return State(
        n=n,
        last_ts_ms=last_ts,
        last_temp_c=last_temp,
        mkt_w=w,
        mkt_wexp=wexp,
        oor_closed_ms=oor,
        last_lat=lat,
        last_lon=lon,
        newest_ts_ms=newest,
        open_excursion_id=open_id,
        needs_reeval=bool(reeval),
    )


def save_state(raw: Raw, shipment_id: str, s: State, now: datetime) -> None:
    """Store a shipment's detector state: the one writer of ``shipment_state``'s values."""
    raw.run(
        "UPDATE shipment_state SET n = ?, last_ts_ms = ?, last_temp_c = ?, last_lat = ?, "
        "last_lon = ?, newest_ts_ms = ?, mkt_w = ?, mkt_wexp = ?, oor_closed_ms = ?, "
        "open_excursion_id = ?, needs_reeval = ?, updated_at = ? WHERE shipment_id = ?",
        [
            s.n,
            s.last_ts_ms,
            s.last_temp_c,
            s.last_lat,
            s.last_lon,
            s.newest_ts_ms,
            s.mkt_w,
            s.mkt_wexp,
            s.oor_closed_ms,
            s.open_excursion_id,
            s.needs_reeval,
            raw.stamp(now),
            shipment_id,
        ],
    )


def open_excursion(raw: Raw, excursion_id: int) -> Exc | None:
    row = raw.one(
        "SELECT started_ms, last_ms, kind, peak_c, out_of_spec, severity, ended_ms "
        "FROM excursion WHERE id = ?",
        [excursion_id],
    )
    if row is None:
        return None
    started, last, kind, peak, out_of_spec, severity, ended = row
    return Exc(
        started_ms=int(started),
        last_ms=int(last),
        side="high" if str(kind).endswith("high") else "low",
        peak_c=float(peak),
        out_of_spec=bool(out_of_spec),
        critical=str(kind).startswith("critical"),
        severity=str(severity),
        ended_ms=int(ended) if ended is not None else None,
        db_id=excursion_id,
    )
