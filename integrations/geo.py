"""Geodesy for the route model: leg times from WGS 84 geodesic distances (geopy)."""

from __future__ import annotations

from dataclasses import dataclass

from geopy.distance import geodesic


@dataclass(frozen=True)
class Mode:
    speed_kmh: float  # door-to-door average over the geodesic distance
    detour: float  # road or airway distance / geodesic distance
    fixed_h: float  # taxi, climb and descent, loading


# Defaults; a leg's handling and customs hours come from seeds/routes.yaml.
MODES: dict[str, Mode] = {
    "ground": Mode(speed_kmh=40.0, detour=1.25, fixed_h=0.0),
    "air": Mode(speed_kmh=800.0, detour=1.05, fixed_h=1.0),
}


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Geodesic distance on the WGS 84 ellipsoid, in km."""
    return float(geodesic(a, b).km)


def travel_hours(km: float, mode: str) -> float:
    m = MODES[mode]
    return km * m.detour / m.speed_kmh + m.fixed_h


def leg_hours(
    a: tuple[float, float],
    b: tuple[float, float],
    *,
    mode: str,
    handling_h: float = 0.0,
    customs_h: float = 0.0,
) -> float:
    """Expected time of one leg: travel over the geodesic plus handling and customs."""
    return travel_hours(distance_km(a, b), mode) + handling_h + customs_h
