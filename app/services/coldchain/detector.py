"""The excursion detector: a pure, incremental state machine over time-ordered readings.

DESIGN.md, "Cold chain": an excursion opens at the first out-of-range reading and closes at
the first in-range one; durations come from reading timestamps. Severity only ever rises:
``warning`` (out of range, shorter than the profile's dwell time, or only in a warning band),
``major`` (out of range for the dwell time, or the shipment's cumulative budget used up) and
``critical`` (a critical limit crossed at any reading). Mean kinetic temperature (USP
<1079.2>) weights each reading by the time it stands for, until the next reading.

Feeding the same readings in time order, in any batching, gives the same result; a late
reading (older than the state's watermark) is handled by re-running from the stored readings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.reference import Profile

DELTA_H_OVER_R_K = 10_000.0  # ΔH/R for ΔH = 83.144 kJ/mol (USP <1079.2>)
KELVIN = 273.15
SEVERITY_RANK = {"warning": 1, "major": 2, "critical": 3}
# What the detector reads of a temperature profile.
PROFILE_FIELDS = (
    "min_c",
    "max_c",
    "alarm_after_min",
    "cumulative_budget_min",
    "critical_below_c",
    "critical_above_c",
    "warn_above_c",
    "mkt_limit_c",
    "mkt_severity",
    "cryogenic",
)


@dataclass(frozen=True)
class Rules:
    min_c: float | None
    max_c: float
    alarm_after_ms: int
    budget_ms: int | None
    critical_below_c: float | None
    critical_above_c: float | None
    warn_above_c: float | None
    mkt_limit_c: float | None
    mkt_severity: str
    cryogenic: bool

    @classmethod
    def from_profile(cls, p: Profile) -> Rules:
        return cls.from_fields(*(getattr(p, name) for name in PROFILE_FIELDS))

    @classmethod
    def from_fields(cls, *values: Any) -> Rules:
        """Rules from a profile's PROFILE_FIELDS values, in that order (a raw row)."""
        fields = dict(zip(PROFILE_FIELDS, values, strict=True))
        budget = fields["cumulative_budget_min"]
        return cls(
            min_c=fields["min_c"],
            max_c=fields["max_c"],
            alarm_after_ms=int(fields["alarm_after_min"] * 60_000),
            budget_ms=None if budget is None else int(budget * 60_000),
            critical_below_c=fields["critical_below_c"],
            critical_above_c=fields["critical_above_c"],
            warn_above_c=fields["warn_above_c"],
            mkt_limit_c=None if fields["cryogenic"] else fields["mkt_limit_c"],
            mkt_severity=fields["mkt_severity"],
            cryogenic=bool(fields["cryogenic"]),
        )

    def quiet_band(self) -> tuple[float, float]:
        """[low, high] where ``classify`` finds nothing: no excursion can open in it."""
        high = min(
            x for x in (self.max_c, self.critical_above_c, self.warn_above_c) if x is not None
        )
        lows = [x for x in (self.min_c, self.critical_below_c) if x is not None]
        return (max(lows) if lows else -math.inf), high


@dataclass(frozen=True)
class Level:
    side: str  # high | low
    out_of_spec: bool  # outside [min_c, max_c]; False for a warning band only
    critical: bool


def classify(rules: Rules, temp_c: float) -> Level | None:
    """Where a reading stands against the profile; None when in range."""
    if rules.critical_above_c is not None and temp_c > rules.critical_above_c:
        return Level("high", True, True)
    if rules.critical_below_c is not None and temp_c < rules.critical_below_c:
        return Level("low", True, True)
    if temp_c > rules.max_c:
        return Level("high", True, False)
    if rules.min_c is not None and temp_c < rules.min_c:
        return Level("low", True, False)
    if rules.warn_above_c is not None and temp_c > rules.warn_above_c:
        return Level("high", False, False)
    return None


@dataclass
class Exc:
    started_ms: int
    last_ms: int
    side: str
    peak_c: float
    out_of_spec: bool
    critical: bool
    severity: str = "warning"
    ended_ms: int | None = None
    db_id: int | None = None

    @property
    def kind(self) -> str:
        return f"critical_{self.side}" if self.critical else self.side

    @property
    def duration_ms(self) -> int:
        return (self.ended_ms if self.ended_ms is not None else self.last_ms) - self.started_ms

    def absorb(self, ts_ms: int, temp_c: float, level: Level) -> None:
        self.last_ms = ts_ms
        self.peak_c = max(self.peak_c, temp_c) if self.side == "high" else min(self.peak_c, temp_c)
        self.out_of_spec = self.out_of_spec or level.out_of_spec
        self.critical = self.critical or level.critical


@dataclass
class State:
    """One shipment's detector state: what ``feed`` advances and ``shipment_state`` stores.

    ``open`` is the open excursion itself, loaded only when a batch needs it;
    ``open_excursion_id`` is its stored row (None until written, and once it closes).
    """

    n: int = 0
    last_ts_ms: int | None = None
    last_temp_c: float | None = None
    # Mean kinetic temperature sums: Σ w and Σ w·exp(−ΔH/(R·T)), w in milliseconds.
    mkt_w: float = 0.0
    mkt_wexp: float = 0.0
    oor_closed_ms: int = 0
    # Position and newest reading seen, in or out of order (last_ts_ms lags while marked).
    last_lat: float | None = None
    last_lon: float | None = None
    newest_ts_ms: int | None = None
    open_excursion_id: int | None = None
    needs_reeval: bool = False
    open: Exc | None = None
    touched: dict[int, Exc] = field(default_factory=dict)  # by started_ms, since last drain

    def oor_total_ms(self) -> int:
        return self.oor_closed_ms + (self.open.duration_ms if self.open else 0)

    def mkt_c(self) -> float | None:
        if self.mkt_w <= 0 or self.mkt_wexp <= 0:
            return None
        return DELTA_H_OVER_R_K / -math.log(self.mkt_wexp / self.mkt_w) - KELVIN

    def drain(self) -> list[Exc]:
        out = sorted(self.touched.values(), key=lambda e: e.started_ms)
        self.touched = {}
        return out

    def replay(self) -> State:
        """A fresh detector state for a replay from scratch, keeping the tracked position."""
        return State(last_lat=self.last_lat, last_lon=self.last_lon, newest_ts_ms=self.newest_ts_ms)


def _rate(exc: Exc, rules: Rules, oor_total_ms: int) -> None:
    if exc.critical:
        level = "critical"
    elif exc.out_of_spec and (
        exc.duration_ms >= rules.alarm_after_ms
        or (rules.budget_ms is not None and oor_total_ms >= rules.budget_ms)
    ):
        level = "major"
    else:
        level = "warning"
    if SEVERITY_RANK[level] > SEVERITY_RANK[exc.severity]:
        exc.severity = level


def accumulate_mkt(state: State, readings: Sequence[tuple[Any, ...]]) -> None:
    """Add time-ordered ``(ts_ms, temp_c, …)`` readings, newer than the state's, to its MKT
    sums; each reading stands for the time until the next one (the last waits for it)."""
    prev_temp = state.last_temp_c
    try:
        sums = _mkt_sums(state.mkt_w, state.mkt_wexp, state.last_ts_ms, prev_temp, readings)
    except ZeroDivisionError:
        # A reading at absolute zero (the decoder's lowest bound) weighs exp(−∞) = 0: just
        # above it, the factor underflows to exactly that.
        if prev_temp is not None:
            prev_temp = max(prev_temp, _ABOVE_ABSOLUTE_ZERO)
        lifted = [(r[0], max(r[1], _ABOVE_ABSOLUTE_ZERO)) for r in readings]
        sums = _mkt_sums(state.mkt_w, state.mkt_wexp, state.last_ts_ms, prev_temp, lifted)
    state.mkt_w, state.mkt_wexp = sums


_ABOVE_ABSOLUTE_ZERO = math.nextafter(-KELVIN, 0.0)


def _mkt_sums(
    w: float,
    wexp: float,
    prev_ts: int | None,
    prev_temp: float | None,
    readings: Sequence[tuple[Any, ...]],
) -> tuple[float, float]:
    rest = iter(readings)
    if prev_ts is None or prev_temp is None:  # the first reading only starts the clock
        first = next(rest, None)
        if first is None:
            return w, wexp
        prev_ts, prev_temp = first[0], first[1]
    exp = math.exp
    for reading in rest:  # indexing, not unpacking: pairs and 4-tuples alike, fastest
        ts_ms = reading[0]
        weight = ts_ms - prev_ts
        w += weight
        wexp += weight * exp(-DELTA_H_OVER_R_K / (prev_temp + KELVIN))
        prev_ts, prev_temp = ts_ms, reading[1]
    return w, wexp


def step(state: State, rules: Rules, ts_ms: int, temp_c: float) -> None:
    """Advance the excursions by one reading, newer than every reading seen so far (MKT
    sums are ``accumulate_mkt``'s: ``feed`` does both)."""
    if state.last_ts_ms is not None and ts_ms <= state.last_ts_ms:
        raise ValueError("readings must be fed in strictly increasing time order")
    level = classify(rules, temp_c)
    current = state.open
    if current is not None:
        if level is None or level.side != current.side:
            current.ended_ms = ts_ms
            _rate(current, rules, state.oor_total_ms())
            state.oor_closed_ms += current.duration_ms
            state.open = None
            state.open_excursion_id = None
        else:
            current.absorb(ts_ms, temp_c, level)
            _rate(current, rules, state.oor_total_ms())
        state.touched[current.started_ms] = current
    if level is not None and state.open is None:
        opened = Exc(ts_ms, ts_ms, level.side, temp_c, level.out_of_spec, level.critical)
        _rate(opened, rules, state.oor_total_ms())
        state.open = opened
        state.touched[opened.started_ms] = opened
    state.n += 1
    state.last_ts_ms = ts_ms
    state.last_temp_c = temp_c


def feed(state: State, rules: Rules, readings: Sequence[tuple[int, float]]) -> None:
    """Advance the detector (MKT sums and excursions) by time-ordered readings."""
    if rules.mkt_limit_c is not None:
        accumulate_mkt(state, readings)
    for ts_ms, temp_c in readings:
        step(state, rules, ts_ms, temp_c)


def evaluate(rules: Rules, readings: Iterable[tuple[int, float]]) -> tuple[State, list[Exc]]:
    """Run the detector from scratch over time-ordered ``(ts_ms, temp_c)`` readings."""
    state = State()
    feed(state, rules, list(readings))
    return state, state.drain()


def mkt_of(durations_and_temps: Iterable[tuple[float, float]]) -> float:
    """Mean kinetic temperature of ``(duration, °C)`` pairs (any time unit)."""
    w = wexp = 0.0
    for duration, temp_c in durations_and_temps:
        w += duration
        wexp += duration * math.exp(-DELTA_H_OVER_R_K / (temp_c + KELVIN))
    return DELTA_H_OVER_R_K / -math.log(wexp / w) - KELVIN
