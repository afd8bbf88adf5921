"""The one table of legs and targets (app/services/delays/targets.py) agrees with the data."""

from __future__ import annotations

from app.services.delays import routes
from app.services.delays.targets import DURATIONS, LEGS, TARGETS, VEIN_TO_VEIN
from seeds.loader import SEED_DIR, _read


def test_the_legs_run_from_collection_to_infusion_in_journey_order() -> None:
    assert LEGS[0].start == VEIN_TO_VEIN.start == "collected"
    assert LEGS[-1].end == VEIN_TO_VEIN.end == "infused"
    for leg, following in zip(LEGS, LEGS[1:], strict=False):
        assert leg.end == following.start
    order = [routes.SEQUENCE.index(leg.start) for leg in LEGS]
    assert order == sorted(order)


def test_a_legs_name_says_its_unit() -> None:
    for leg in DURATIONS:
        assert leg.hours_per_unit == {"_h": 1.0, "_d": 24.0}[leg.name[-2:]], leg.name


def test_every_route_target_in_the_seeds_is_a_watched_leg() -> None:
    names = {leg.name for leg in TARGETS}
    for route in _read("routes.yaml", SEED_DIR):
        assert set(route.get("targets") or {}) <= names, route["code"]
