"""The excursion detector's rules (DESIGN.md, "Cold chain"), with a courier's 10-minute sampling."""

from __future__ import annotations

import math

import pytest

from app.services.coldchain.detector import Rules, evaluate, mkt_of
from models.reference import Profile
from seeds.loader import SEED_DIR, _read

PROFILES = {p["code"]: Profile.model_validate(p) for p in _read("profiles.yaml", SEED_DIR)}
FRESH = Rules.from_profile(PROFILES["FRESH_2_8"])
CRT = Rules.from_profile(PROFILES["CRT_15_25"])
CRYO = Rules.from_profile(PROFILES["CRYO_LN2"])
MIN = 60_000


def trace(*temps: float, every_min: float = 10) -> list[tuple[int, float]]:
    return [(int(i * every_min * MIN), t) for i, t in enumerate(temps)]


def test_mkt_check_values() -> None:
    assert mkt_of([(20, 5.0), (4, 15.0)]) == pytest.approx(7.705, abs=5e-4)
    assert mkt_of([(1, 2.0), (1, 8.0)]) == pytest.approx(5.536, abs=5e-4)


def test_detector_mkt_weights_each_reading_by_the_time_it_stands_for() -> None:
    # 20 h at 5 °C then 4 h at 15 °C, sampled every 10 min; the last reading closes the span.
    temps = [5.0] * 120 + [15.0] * 24 + [5.0]
    state, _ = evaluate(FRESH, trace(*temps))
    assert state.mkt_c() == pytest.approx(7.705, abs=5e-4)


def test_fresh_in_range_trip_has_no_excursion() -> None:
    state, excursions = evaluate(FRESH, trace(4, 5, 6, 7.9, 2.0, 5))
    assert excursions == [] and state.oor_total_ms() == 0


def test_fresh_single_out_of_range_reading_is_a_short_warning() -> None:
    # Out at 10 min, back at 20 min: the interval is 10 min long (reading timestamps).
    _, (exc,) = evaluate(FRESH, trace(5, 9, 5))
    assert (exc.kind, exc.started_ms, exc.ended_ms, exc.peak_c) == ("high", 10 * MIN, 20 * MIN, 9)
    assert exc.severity == "major"  # 10 min out of range reaches the 10 min dwell time


def test_fresh_dwell_time_separates_warning_from_alarm() -> None:
    # With 5-minute sampling a 5-minute blip stays a warning.
    _, (blip,) = evaluate(FRESH, trace(5, 9, 5, every_min=5))
    assert blip.duration_ms == 5 * MIN and blip.severity == "warning"
    _, (long,) = evaluate(FRESH, trace(5, 9, 9.5, 9, 5, every_min=5))
    assert long.duration_ms == 15 * MIN and long.severity == "major" and long.peak_c == 9.5


def test_fresh_critical_limits_at_any_reading() -> None:
    _, (hot,) = evaluate(FRESH, trace(5, 15.5, 5, every_min=1))
    assert hot.kind == "critical_high" and hot.severity == "critical"
    _, (cold,) = evaluate(FRESH, trace(5, 1, -0.5, 1, 5, every_min=1))
    assert cold.kind == "critical_low" and cold.peak_c == -0.5 and cold.severity == "critical"


def test_fresh_cumulative_budget_of_60_minutes() -> None:
    # Seven 9-minute blips (5-minute sampling gives 5-minute intervals): each below the dwell.
    temps: list[float] = []
    for _ in range(13):
        temps += [9, 5, 5]
    state, excursions = evaluate(FRESH, trace(*temps, every_min=5))
    assert len(excursions) == 13
    assert all(e.duration_ms == 5 * MIN for e in excursions)
    assert [e.severity for e in excursions[:11]] == ["warning"] * 11
    # The 12th takes the shipment to 60 min in total: from then on each is an alarm.
    assert [e.severity for e in excursions[11:]] == ["major", "major"]
    assert state.oor_total_ms() == 65 * MIN


def test_switching_sides_closes_one_excursion_and_opens_another() -> None:
    _, excursions = evaluate(FRESH, trace(5, 9, 1.5, 5))
    assert [(e.kind, e.started_ms, e.ended_ms) for e in excursions] == [
        ("high", 10 * MIN, 20 * MIN),
        ("low", 20 * MIN, 30 * MIN),
    ]


def test_cryo_alarm_after_5_minutes_warning_band_and_critical() -> None:
    _, (warn,) = evaluate(CRYO, trace(-190, -158, -158, -190))
    assert warn.severity == "warning" and not warn.out_of_spec
    _, (alarm,) = evaluate(CRYO, trace(-190, -149, -190, every_min=5))
    assert alarm.severity == "major" and alarm.duration_ms == 5 * MIN
    _, (crit,) = evaluate(CRYO, trace(-190, -130, -190))
    assert crit.kind == "critical_high" and crit.severity == "critical"
    state, _ = evaluate(CRYO, trace(-190, -185, -180))
    assert state.mkt_c() is None  # MKT never applies to cryogenic profiles


def test_crt_profile_ranges() -> None:
    _, (exc,) = evaluate(CRT, trace(20, 26, 26, 20))
    assert exc.kind == "high" and exc.severity == "major"
    _, (crit,) = evaluate(CRT, trace(20, 41, 20))
    assert crit.severity == "critical"


def test_open_excursion_at_the_end_of_the_data() -> None:
    state, (exc,) = evaluate(FRESH, trace(5, 9, 9, 9))
    assert exc.ended_ms is None and exc.duration_ms == 20 * MIN and state.open is exc


def test_readings_must_be_fed_in_order() -> None:
    with pytest.raises(ValueError, match="increasing"):
        evaluate(FRESH, [(2 * MIN, 5.0), (1 * MIN, 5.0)])


def test_a_reading_at_absolute_zero_weighs_nothing_in_the_mkt() -> None:
    # -273.15 °C is the decoder's lowest bound: its Arrhenius factor is exp(-inf) = 0.
    state, _ = evaluate(CRT, trace(-273.15, 20, 20))
    assert state.mkt_w == 20 * MIN
    assert state.mkt_wexp == pytest.approx(10 * MIN * math.exp(-10_000 / (20 + 273.15)))
