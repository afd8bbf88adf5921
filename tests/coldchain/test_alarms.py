"""The cold-chain alert rules are pure: the demo generator's alerts are exactly theirs."""

from __future__ import annotations

from typing import Any

import pytest

from app.services.coldchain import alarms
from app.services.coldchain.detector import Rules, evaluate
from seeds.demo.alerts import detector_alerts
from tests.coldchain.test_excursion_engine import PROFILES

MIN = 60_000
SHIPMENT = "0123456789abcdef0123456789abcdef"


def _trace(*temps: float, every_min: float = 10) -> list[tuple[int, float]]:
    return [(int(i * every_min * MIN), t) for i, t in enumerate(temps)]


@pytest.mark.parametrize(
    ("profile", "temps", "kinds"),
    [
        ("CRT_15_25", (20, 26, 26, 26, 26, 26, 26, 20, *(24.9,) * 30), ["excursion"]),
        ("FRESH_2_8", (5, *(9,) * 15), ["excursion", "budget", "mkt"]),  # open, long, warm
        ("FRESH_2_8", (5, 9, 5, 1, 5), ["excursion", "excursion"]),
        ("FRESH_2_8", (5, 5, 5), []),
        ("CRYO_LN2", (-190, -160, -190, -100, -190), ["excursion"]),
    ],
)
def test_the_demo_words_detector_alerts_as_the_rules_do(
    profile: str, temps: Any, kinds: list[str]
) -> None:
    rules = Rules.from_profile(PROFILES[profile])
    state, excursions = evaluate(rules, _trace(*temps))
    specs = [
        spec
        for exc in excursions
        if (
            spec := alarms.excursion(
                shipment_id=SHIPMENT, case_id="c", profile=profile, rules=rules, exc=exc
            )
        )
        is not None
    ]
    specs += alarms.shipment_level(shipment_id=SHIPMENT, case_id="c", rules=rules, state=state)
    expected = [
        (severity, key, message, data, code, params)
        for _, _, severity, key, message, data, code, params in detector_alerts(
            shipment_id=SHIPMENT, profile=profile, rules=rules, state=state, excursions=excursions
        )
    ]
    assert [
        (s.severity.value, s.dedupe_key, s.message, s.data, s.code, s.params) for s in specs
    ] == expected
    assert [s.dedupe_key.split(":")[0] for s in specs] == kinds


def test_each_sweep_rule_fires_only_past_its_threshold() -> None:
    assert (
        alarms.hold_time(shipment_id=SHIPMENT, case_id="c", elapsed_h=10, remaining_h=4, hold_h=20)
        is None
    )  # 14 h of 0.7 × 20 h: not beyond
    held = alarms.hold_time(
        shipment_id=SHIPMENT, case_id="c", elapsed_h=10, remaining_h=4.5, hold_h=20
    )
    assert held is not None and held.dedupe_key == f"hold:{SHIPMENT}"
    fresh = alarms.fresh_stability(
        shipment_id=SHIPMENT, case_id="c", coi="W1234", age_h=31, remaining_h=0, limit_h=30
    )
    assert fresh is not None and fresh.severity.value == "critical"
    thaw = alarms.thaw_window(case_id="c", coi="W1234", minutes=31, start_min=30, expiry_min=180)
    assert thaw is not None and thaw.severity.value == "major"
    assert (
        alarms.thaw_window(case_id="c", coi="W", minutes=30, start_min=30, expiry_min=180) is None
    )
