"""Where a shipment is over time, what its logger reads, and the pool of loggers."""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from app.times import to_ms
from seeds.demo.config import DemoConfig
from seeds.demo.world import Ship, World

DEVICE_TURNAROUND = timedelta(days=1)  # a logger is read out and recharged between trips
UPLOAD_DELAY_MS = 30_000  # loggers upload within a minute over cellular


def _unit(point: tuple[float, float]) -> tuple[float, float, float]:
    a, b = math.radians(point[0]), math.radians(point[1])
    return (math.cos(a) * math.cos(b), math.cos(a) * math.sin(b), math.sin(a))


@dataclass(frozen=True)
class Segment:
    """A stretch of a trip: waiting in one place (a == b) or moving from a to b."""

    start_ms: int
    end_ms: int
    a: tuple[float, float]
    b: tuple[float, float]
    air: bool

    def at(self, ms: int) -> tuple[float, float]:
        """Position at ``ms``: on the great circle for flights, straight on the ground."""
        a, b = self.a, self.b
        f = min(1.0, max(0.0, (ms - self.start_ms) / max(self.end_ms - self.start_ms, 1)))
        if not self.air or a == b:
            return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)
        p, q, w = self.arc
        s1, s2 = math.sin((1 - f) * w) / math.sin(w), math.sin(f * w) / math.sin(w)
        x, y, z = (s1 * u + s2 * v for u, v in zip(p, q, strict=True))
        return (math.degrees(math.atan2(z, math.hypot(x, y))), math.degrees(math.atan2(y, x)))

    @cached_property
    def arc(self) -> tuple[tuple[float, float, float], tuple[float, float, float], float]:
        p, q = _unit(self.a), _unit(self.b)
        dot = sum(x * y for x, y in zip(p, q, strict=True))
        return p, q, math.acos(max(-1.0, min(1.0, dot)))


def segments(world: World, ship: Ship) -> tuple[list[Segment], list[int]]:
    """Where the shipment is over time (waiting, moving, in customs), and each leg's end."""
    t = to_ms(ship.pickup_at)
    out: list[Segment] = []
    leg_ends: list[int] = []
    for leg in ship.legs:
        a = (world.sites[leg.from_site].lat, world.sites[leg.from_site].lon)
        b = (world.sites[leg.to_site].lat, world.sites[leg.to_site].lon)
        moving_h = max(leg.expected_h - leg.handling_h - leg.customs_h, 0.1)
        for hours, p, q in ((leg.handling_h, a, a), (moving_h, a, b), (leg.customs_h, b, b)):
            if hours <= 0:
                continue
            end = t + round(hours * ship.leg_factor * 3_600_000)
            out.append(Segment(t, end, p, q, leg.mode == "air"))
            t = end
        leg_ends.append(t)
    return out, leg_ends


def readings_for(
    world: World, config: DemoConfig, ship: Ship, *, until_ms: int, interval_ms: int
) -> list[tuple[Any, ...]]:
    """The logger's readings from pickup to delivery (or ``until_ms``), as reading rows."""
    rng = random.Random(ship.readings_seed)
    spec = config.raw["temperatures"][ship.profile]
    base = rng.uniform(*spec["base_c"])
    wave, drift, noise = float(spec["wave_c"]), float(spec["drift_c_per_d"]), float(spec["noise_c"])
    low, high = spec["clamp_c"]
    phase, period_ms = rng.uniform(0, 2 * math.pi), rng.uniform(2, 4) * 3_600_000
    segs, _ = segments(world, ship)
    pickup = to_ms(ship.pickup_at)
    end = min(to_ms(ship.delivered_at), until_ms)
    rows: list[tuple[Any, ...]] = []
    i = 0
    for ts in range(pickup + rng.randrange(interval_ms), end + 1, interval_ms):
        while i < len(segs) - 1 and ts > segs[i].end_ms:
            i += 1
        lat, lon = segs[i].at(ts)
        elapsed = ts - pickup
        temp = base + drift * elapsed / 86_400_000 + rng.gauss(0.0, noise)
        if wave:
            temp += wave * math.sin(phase + 2 * math.pi * elapsed / period_ms)
        temp = min(high, max(low, temp))
        if ship.excursion is not None:
            start, length, peak = ship.excursion
            if start <= ts < start + length:
                x = (ts - start) / length  # a steep rise, a plateau near the peak, a fall
                temp += (peak - temp) * min(1.0, x / 0.15, (1 - x) / 0.15)
        rows.append(
            (
                ship.id,
                ship.device_id,
                ts,
                round(temp, 2),
                round(lat, 5),
                round(lon, 5),
                None,
                None,
                None,
                None,
                ts + UPLOAD_DELAY_MS,
            )
        )
    return rows


class Fleet:
    """Loggers per courier, reused once read out; a logger rides one shipment at a time."""

    def __init__(self, tag: str, now: datetime) -> None:
        self.tag, self.now = tag, now
        self.free: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self.count: Counter[str] = Counter()
        self.new: list[dict[str, Any]] = []

    def take(self, ship: Ship) -> str:
        heap = self.free[ship.courier]
        if heap and heap[0][0] <= to_ms(ship.pickup_at):
            _, device = heapq.heappop(heap)
        else:
            self.count[ship.courier] += 1
            device = f"{ship.courier}-{self.tag}-{self.count[ship.courier]:05d}"
            created = min(ship.created_at, self.now)
            self.new.append({"id": device, "courier": ship.courier, "created_at": created})
        heapq.heappush(heap, (to_ms(ship.delivered_at + DEVICE_TURNAROUND), device))
        return device
