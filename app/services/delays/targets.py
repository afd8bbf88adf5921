"""The legs of the journey: which milestone starts and ends each, and its unit.

A leg's name is also its key in a route's ``targets`` (seeds/routes.yaml) and in the
durations and statistics the API reports, so the suffix is the unit: ``_h`` hours, ``_d`` days.
"""

from __future__ import annotations

from typing import NamedTuple


class Leg(NamedTuple):
    name: str
    start: str  # milestone type
    end: str
    hours_per_unit: float


# Consecutive, from collection to infusion; thawing is folded into site_to_infusion.
LEGS = (
    Leg("collection_to_receipt_h", "collected", "received_at_manufacturing", 1.0),
    Leg("receipt_to_start_h", "received_at_manufacturing", "manufacturing_started", 1.0),
    Leg("start_to_release_d", "manufacturing_started", "qc_released", 24.0),
    Leg("release_to_site_h", "qc_released", "received_at_site", 1.0),
    Leg("site_to_infusion_d", "received_at_site", "infused", 24.0),
)
THAW_TO_INFUSION = Leg("thaw_to_infusion_h", "thawed", "infused", 1.0)
VEIN_TO_VEIN = Leg("vein_to_vein_d", "collected", "infused", 24.0)
# The legs a route may set a target for (the delay rules watch each).
TARGETS = (*LEGS, VEIN_TO_VEIN)
# A case's durations, in the order the API lists them.
DURATIONS = (*LEGS, THAW_TO_INFUSION, VEIN_TO_VEIN)
