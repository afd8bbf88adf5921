"""The demo cohort: two years of synthetic cases on the seeded sites and routes.

Each case's whole timeline is sampled from the distributions in ``demo.yaml`` (collection,
shipments, manufacturing, release, infusion; failures, recollections, cancellations), then
cut at ``now``: what happened by then is stored, so the latest cases are still in flight,
at whatever stage ``now`` finds them. Shipments get custody scans, a logger and its
readings every 10 minutes in transit; excursion and detector-state rows are what the
excursion detector computes from those readings. Everything is drawn from one
``random.Random(seed)``: the same (seed, now, cases) gives the same rows. Rows are written
with bulk statements, one transaction per batch of cases.
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from functools import cached_property
from pathlib import Path
from statistics import median
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from rich.console import Group, RenderableType
from rich.table import Table as RichTable
from sqlalchemy import Table, insert
from sqlalchemy import select as select_columns
from sqlmodel import Session, SQLModel, col, select

from app.config import Settings, get_settings
from app.db import Database
from app.services.audit import chain as audit
from app.services.coldchain.detector import Exc, Rules, State, evaluate
from app.services.coldchain.engine import MKT_MIN_SPAN_MS
from app.services.coldchain.ingest import COLUMNS as READING_COLUMNS
from app.services.identity.coi import Keyring, check_char, next_coi
from app.services.journey.cases import patient_hash
from app.services.journey.events import TRANSITIONS
from models.alert import AlertKind, AlertStatus, Severity
from models.case import Case, CaseStatus
from models.reference import Product, Profile, Route, RouteLeg, Site

CONFIG_PATH = Path(__file__).resolve().parent / "demo.yaml"
BATCH = 500
READINGS_CHUNK = 50_000
HOUR = timedelta(hours=1)
DEVICE_TURNAROUND = timedelta(days=1)  # a logger is read out and recharged between trips
UPLOAD_DELAY_MS = 30_000  # loggers upload within a minute over cellular
# Progress callback: (stage, done, total); stages "generated" and "written".
Progress = Callable[[str, int, int], None]


class DemoRefused(RuntimeError):
    """The demo generator will not run here (production, or missing reference data)."""


# ---- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    kind: str
    params: tuple[float, ...]
    low: float | None = None
    high: float | None = None

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> Dist:
        kind = spec["dist"]
        names = {
            "lognormal": ("median", "sigma"),
            "triangular": ("low", "mode", "high"),
            "uniform": ("low", "high"),
        }
        if kind not in names:
            raise ValueError(f"unknown distribution {kind!r}")
        return cls(
            kind, tuple(float(spec[n]) for n in names[kind]), spec.get("min"), spec.get("max")
        )

    def draw(self, rng: random.Random) -> float:
        p = self.params
        if self.kind == "lognormal":
            value = p[0] * math.exp(rng.gauss(0.0, p[1]))
        elif self.kind == "triangular":
            value = rng.triangular(p[0], p[2], p[1])
        else:
            value = rng.uniform(p[0], p[1])
        if self.low is not None:
            value = max(value, self.low)
        if self.high is not None:
            value = min(value, self.high)
        return value


@dataclass(frozen=True)
class KindConfig:
    courier: str
    containers: dict[str, dict[str, Any]]
    durations: dict[str, Dist]
    probabilities: dict[str, float]


@dataclass(frozen=True)
class DemoConfig:
    raw: dict[str, Any]
    dists: dict[str, Dist]
    kinds: dict[str, KindConfig]

    @classmethod
    def load(cls, path: Path = CONFIG_PATH) -> DemoConfig:
        return cls.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DemoConfig:
        dists = {k: Dist.parse(v) for k, v in raw.items() if isinstance(v, dict) and "dist" in v}
        kinds = {
            name: KindConfig(
                courier=k["courier"],
                containers=k["containers"],
                durations={d: Dist.parse(s) for d, s in k["durations"].items()},
                probabilities={p: float(v) for p, v in k["probabilities"].items()},
            )
            for name, k in raw["kinds"].items()
        }
        for name, k in kinds.items():
            bad = [p for p, v in k.probabilities.items() if not 0 <= v <= 1]
            if bad:
                raise ValueError(f"demo.yaml kinds.{name}: probabilities out of [0, 1]: {bad}")
        return cls(raw, dists, kinds)


# ---- the seeded world ----------------------------------------------------------------------


@dataclass(frozen=True)
class Leg:
    from_site: str
    to_site: str
    mode: str
    expected_h: float
    handling_h: float
    customs_h: float


@dataclass(frozen=True)
class RouteInfo:
    code: str
    kind: str
    factory: str
    inbound_profile: str
    outbound_profile: str
    legs: dict[str, list[Leg]]
    v2v_target_d: float


@dataclass(frozen=True)
class World:
    sites: dict[str, Site]
    routes: dict[str, RouteInfo]
    profiles: dict[str, Profile]
    products: dict[str, Product]

    @classmethod
    def load(cls, session: Session, config: DemoConfig) -> World:
        sites = {s.code: s for s in session.exec(select(Site))}
        profiles = {p.code: p for p in session.exec(select(Profile))}
        products = {p.code: p for p in session.exec(select(Product))}
        legs: dict[str, dict[str, list[Leg]]] = defaultdict(lambda: defaultdict(list))
        for leg in session.exec(select(RouteLeg).order_by(col(RouteLeg.seq))):
            legs[leg.route_code][leg.direction].append(
                Leg(
                    leg.from_site,
                    leg.to_site,
                    leg.mode,
                    leg.expected_h,
                    leg.handling_h,
                    leg.customs_h,
                )
            )
        routes = {
            r.code: RouteInfo(
                r.code,
                r.kind,
                r.manufacturing_site,
                r.inbound_profile,
                r.outbound_profile,
                dict(legs[r.code]),
                float((r.targets or {}).get("vein_to_vein_d", 30)),
            )
            for r in session.exec(select(Route))
        }
        world = cls(sites, routes, profiles, products)
        world.check(config)
        return world

    def check(self, config: DemoConfig) -> None:
        for site, spec in config.raw["sites"].items():
            if site not in self.sites:
                raise DemoRefused(f"site {site} is not loaded: run `v2v seed` first")
            for code in spec["routes"]:
                route = self.routes.get(code)
                if route is None or not route.legs.get("inbound"):
                    raise DemoRefused(f"route {code} is not loaded: run `v2v seed` first")
                if route.legs["inbound"][0].from_site != site:
                    raise ValueError(f"demo.yaml: route {code} does not start at {site}")
                if route.kind not in config.kinds:
                    raise ValueError(f"demo.yaml: no distributions for route kind {route.kind}")
        for product in config.raw["products"]:
            if product not in self.products:
                raise DemoRefused(f"product {product} is not loaded: run `v2v seed` first")


# ---- sampled plans -------------------------------------------------------------------------


@dataclass
class Ev:
    at: datetime
    type: str
    site: str
    cycle: int
    note: str | None = None
    data: dict[str, Any] | None = None


@dataclass
class Ship:
    id: str
    direction: str
    origin: str
    destination: str
    profile: str
    courier: str
    container_kind: str
    container_serial: str
    hold_time_h: float | None
    created_at: datetime
    pickup_at: datetime
    delivered_at: datetime
    legs: list[Leg]
    leg_factor: float
    excursion: tuple[int, int, float] | None  # start ms, duration ms, peak °C
    readings_seed: int
    case_id: str = ""
    device_id: str = ""
    cancelled_at: datetime | None = None


@dataclass
class Start:
    collected_at: datetime
    site: str
    route: str
    product: str


def _after(t: datetime, hours: float) -> datetime:
    return t + timedelta(seconds=round(hours * 3600))


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _hex(rng: random.Random) -> str:
    return uuid.UUID(int=rng.getrandbits(128)).hex


def _pick(rng: random.Random, weights: dict[str, Any]) -> str:
    names = list(weights)
    values = [float(w["weight"]) if isinstance(w, dict) else float(w) for w in weights.values()]
    return rng.choices(names, values)[0]


class Planner:
    """Samples each case's whole timeline; knows nothing of the database."""

    def __init__(self, rng: random.Random, world: World, config: DemoConfig) -> None:
        self.rng, self.world, self.config = rng, world, config
        self.zones = {code: ZoneInfo(s.timezone) for code, s in world.sites.items()}

    def daytime(self, t: datetime, site: str, hours: Sequence[float], *, weekday: bool) -> datetime:
        """The same local day (or the next suitable one) at a random daytime hour."""
        zone = self.zones[site]
        local = t.astimezone(zone).replace(microsecond=0)
        day = local.date()
        if local.hour >= hours[1]:
            day += timedelta(days=1)
        while weekday and day.weekday() >= 5:
            day += timedelta(days=1)
        start = datetime.combine(day, time(int(hours[0])), zone)
        if day == local.date() and local > start:
            start = local
        end = datetime.combine(day, time(int(hours[1])), zone)
        hours_left = (end - start).total_seconds() / 3600
        return _after(start, self.rng.random() * hours_left).astimezone(UTC)

    def starts(self, cases: int, now: datetime) -> list[Start]:
        """Where and when each case's first collection happens, in time order."""
        raw, rng = self.config.raw, self.rng
        horizon, ahead, growth = raw["horizon_days"], raw["lookahead_days"], float(raw["growth"])
        out = []
        for _ in range(cases):
            site = _pick(rng, raw["sites"])
            route = _pick(rng, raw["sites"][site]["routes"])
            product = _pick(rng, raw["products"])
            while True:  # a weekday, at a rate rising linearly to (1 + growth) times the start
                p = rng.random()
                u = p if growth <= 0 else (math.sqrt(1 + growth * p * (2 + growth)) - 1) / growth
                day = (now + timedelta(days=-horizon + u * (horizon + ahead))).astimezone(
                    self.zones[site]
                )
                if day.weekday() < 5:
                    break
            at = self.daytime(day.replace(hour=0), site, raw["collection_hours"], weekday=True)
            out.append(Start(at, site, route, product))
        return sorted(out, key=lambda s: s.collected_at)

    def timeline(self, start: Start) -> tuple[list[Ev], list[Ship], list[datetime]]:
        """Events from the first collection to infusion or cancellation, the shipments, and
        the apheresis start of each cycle."""
        rng, cfg = self.rng, self.config
        route = self.world.routes[start.route]
        kind = cfg.kinds[route.kind]
        dur, prob = kind.durations, kind.probabilities
        extra_d = float(cfg.raw["products"][start.product].get("extra_manufacturing_d", 0))
        events: list[Ev] = []
        ships: list[Ship] = []
        aphereses = [_after(start.collected_at, -rng.uniform(3, 5))]
        collected, cycle = start.collected_at, 1
        while True:
            events.append(Ev(collected, "collected", start.site, cycle))
            pickup = _after(collected, dur["collection_to_pickup_h"].draw(rng))
            inbound = self.ship(route, "inbound", start.site, collected, pickup)
            ships.append(inbound)
            events.append(Ev(pickup, "shipped_to_manufacturing", inbound.origin, cycle))
            received = _after(
                inbound.delivered_at, cfg.dists["receipt_after_delivery_min"].draw(rng) / 60
            )
            events.append(Ev(received, "received_at_manufacturing", route.factory, cycle))
            started = _after(received, dur["receipt_to_start_h"].draw(rng))
            events.append(Ev(started, "manufacturing_started", route.factory, cycle))
            making_d = dur["start_to_release_d"].draw(rng) + extra_d
            if rng.random() < prob["manufacturing_failure"]:
                failed = _after(started, 24 * making_d * cfg.dists["failure_at_fraction"].draw(rng))
                events.append(
                    Ev(
                        failed,
                        "manufacturing_failed",
                        route.factory,
                        cycle,
                        note="out of specification at release testing",
                    )
                )
                decided = _after(failed, 24 * cfg.dists["failure_decision_d"].draw(rng))
                if (
                    cycle < cfg.raw["max_cycles"]
                    and rng.random() < prob["recollection_after_failure"]
                ):
                    lead = cfg.dists["recollection_lead_d"].draw(rng)
                    collected = self.daytime(
                        _after(decided, 24 * lead),
                        start.site,
                        cfg.raw["collection_hours"],
                        weekday=True,
                    )
                    aphereses.append(_after(collected, -rng.uniform(3, 5)))
                    cycle += 1
                    events.append(
                        Ev(
                            decided,
                            "recollection",
                            start.site,
                            cycle,
                            data={"apheresis_at": audit.jsonable(aphereses[-1])},
                        )
                    )
                    continue
                events.append(
                    Ev(
                        decided,
                        "cancelled",
                        start.site,
                        cycle,
                        note="manufacturing failed; no further collection",
                    )
                )
                break
            released = _after(started, 24 * making_d)
            events.append(Ev(released, "qc_released", route.factory, cycle))
            pickup = _after(released, 24 * dur["release_to_pickup_d"].draw(rng))
            outbound = self.ship(route, "outbound", route.factory, released, pickup)
            ships.append(outbound)
            events.append(Ev(pickup, "shipped_to_site", outbound.origin, cycle))
            at_site = _after(
                outbound.delivered_at, cfg.dists["receipt_after_delivery_min"].draw(rng) / 60
            )
            events.append(Ev(at_site, "received_at_site", start.site, cycle))
            thawed = self.daytime(
                _after(at_site, 24 * dur["site_to_thaw_d"].draw(rng)),
                start.site,
                cfg.raw["infusion_hours"],
                weekday=False,
            )
            events.append(Ev(thawed, "thawed", start.site, cycle))
            infused = _after(thawed, dur["thaw_to_infusion_min"].draw(rng) / 60)
            events.append(Ev(infused, "infused", start.site, cycle))
            break
        if events[-1].type != "cancelled" and rng.random() < prob["cancel_after_collection"]:
            events = self.cancel(events, ships, start.site)
            aphereses = aphereses[: 1 + sum(e.type == "recollection" for e in events)]
        return events, ships, aphereses

    def cancel(self, events: list[Ev], ships: list[Ship], site: str) -> list[Ev]:
        """The patient leaves the journey (progression, death) at a random point of it."""
        rng = self.rng
        first, last = events[0].at, events[-1].at
        at = _after(first, (last - first) / HOUR * rng.random())
        k = max(i for i, e in enumerate(events) if e.at <= at)
        # Material in transit is received first; a thawed product is infused, not dropped.
        if events[k].type.startswith("shipped_"):
            k += 1
            at = _after(
                events[k].at, (events[k + 1].at - events[k].at) / HOUR * rng.uniform(0.2, 0.8)
            )
        elif events[k].type in ("thawed", "infused"):
            k = next(i for i, e in enumerate(events) if e.type == "thawed") - 1
            at = _after(
                events[k].at, (events[k + 1].at - events[k].at) / HOUR * rng.uniform(0.2, 0.8)
            )
        kept = events[: k + 1]
        at = max(at, kept[-1].at + timedelta(seconds=1))
        kept.append(
            Ev(
                at,
                "cancelled",
                site,
                kept[-1].cycle,
                note="patient no longer eligible (disease progression)",
            )
        )
        for ship in ships:
            if ship.pickup_at > at:
                ship.cancelled_at = at
        ships[:] = [s for s in ships if s.created_at <= at]
        return kept

    def ship(
        self, route: RouteInfo, direction: str, origin: str, ready: datetime, pickup: datetime
    ) -> Ship:
        rng, cfg = self.rng, self.config
        kind = cfg.kinds[route.kind]
        legs = route.legs[direction]
        profile = route.inbound_profile if direction == "inbound" else route.outbound_profile
        factor = kind.durations["transit_factor"].draw(rng)
        delivered = _after(pickup, factor * sum(leg.expected_h for leg in legs))
        container = kind.containers[profile]
        excursion = None
        if rng.random() < kind.probabilities["excursion_per_shipment"]:
            spec = cfg.raw["excursions"][profile]
            length_ms = round(Dist.parse(spec["duration_min"]).draw(rng) * 60_000)
            peak = Dist.parse(spec["peak_c"]).draw(rng)
            # In range at pickup and at delivery: a short trip shortens the episode.
            trip_ms = _ms(delivered) - _ms(pickup) - 20 * 60_000
            length_ms = min(length_ms, trip_ms)
            room = trip_ms - length_ms
            if length_ms >= 15 * 60_000:
                excursion = (
                    _ms(pickup) + 10 * 60_000 + round(rng.random() * room),
                    length_ms,
                    peak,
                )
        return Ship(
            id=_hex(rng),
            direction="to_manufacturing" if direction == "inbound" else "to_site",
            origin=origin,
            destination=legs[-1].to_site,
            profile=profile,
            courier=kind.courier,
            container_kind=container["kind"],
            container_serial=f"{container['prefix']}-{rng.getrandbits(32):08X}",
            hold_time_h=container.get("hold_time_h"),
            created_at=_after(ready, (pickup - ready) / HOUR * rng.uniform(0.1, 0.5)),
            pickup_at=pickup,
            delivered_at=delivered,
            legs=legs,
            leg_factor=factor,
            excursion=excursion,
            readings_seed=rng.getrandbits(64),
        )


# ---- positions, temperatures and loggers ---------------------------------------------------


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
    t = _ms(ship.pickup_at)
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
    pickup = _ms(ship.pickup_at)
    end = min(_ms(ship.delivered_at), until_ms)
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
        if heap and heap[0][0] <= _ms(ship.pickup_at):
            _, device = heapq.heappop(heap)
        else:
            self.count[ship.courier] += 1
            device = f"{ship.courier}-{self.tag}-{self.count[ship.courier]:05d}"
            created = min(ship.created_at, self.now)
            self.new.append({"id": device, "courier": ship.courier, "created_at": created})
        heapq.heappush(heap, (_ms(ship.delivered_at + DEVICE_TURNAROUND), device))
        return device


# ---- from plans to rows --------------------------------------------------------------------

# State after each milestone: the journey's transitions plus the shipment pickups.
AFTER = {
    **{event: target.value for event, (_, target) in TRANSITIONS.items()},
    "shipped_to_manufacturing": CaseStatus.in_transit_to_manufacturing.value,
    "shipped_to_site": CaseStatus.in_transit_to_site.value,
}
CLOSED = frozenset({CaseStatus.infused.value, CaseStatus.cancelled.value})
MANUFACTURING = frozenset(
    {"received_at_manufacturing", "manufacturing_started", "qc_released", "manufacturing_failed"}
)


@dataclass
class DemoReport:
    seed: int
    now: datetime
    cases: int = 0
    skipped: bool = False
    by_status: Counter[str] = field(default_factory=Counter)
    by_route: Counter[tuple[str, str]] = field(default_factory=Counter)  # (route, status)
    rows: Counter[str] = field(default_factory=Counter)  # rows written per table
    # Observed at `now`, per route kind: vein-to-vein and collection -> arrival at the
    # hospital (days, latest cycle), and closed cases (infused or cancelled after collection).
    v2v_d: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    to_site_d: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    closed: Counter[str] = field(default_factory=Counter)
    attrited: Counter[str] = field(default_factory=Counter)

    @property
    def in_flight(self) -> int:
        return sum(n for s, n in self.by_status.items() if s not in CLOSED)

    def medians(self) -> dict[str, dict[str, float | None]]:
        kinds = sorted(set(self.v2v_d) | set(self.to_site_d) | set(self.closed))
        return {
            k: {
                "v2v_d": round(median(self.v2v_d[k]), 2) if self.v2v_d[k] else None,
                "collection_to_site_d": (
                    round(median(self.to_site_d[k]), 2) if self.to_site_d[k] else None
                ),
                "attrition": round(self.attrited[k] / self.closed[k], 4)
                if self.closed[k]
                else None,
            }
            for k in kinds
        }

    def counts(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "now": self.now,
            "cases": self.cases,
            "by_status": dict(sorted(self.by_status.items())),
            "rows": dict(sorted(self.rows.items())),
        }


@dataclass
class Batch:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    readings: list[tuple[Any, ...]] = field(default_factory=list)
    open_states: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)


class Cohort:
    """Turns sampled timelines into rows, cut at ``now``."""

    def __init__(
        self,
        rng: random.Random,
        world: World,
        config: DemoConfig,
        *,
        now: datetime,
        settings: Settings,
        readings: bool,
        report: DemoReport,
    ) -> None:
        self.rng, self.world, self.config, self.now = rng, world, config, now
        self.now_ms = _ms(now)
        self.planner = Planner(rng, world, config)
        self.keyring = Keyring(
            settings.coi_signing_keys.get_secret_value(), settings.coi_verify_keys
        )
        self.patient_key = settings.patient_hash_key.get_secret_value()
        self.default_fin = settings.coi_fin
        self.with_readings = readings
        self.interval_ms = int(config.raw["readings_interval_min"] * 60_000)
        self.fleet = Fleet(f"{rng.getrandbits(16):04x}", now)
        self.rules = {code: Rules.from_profile(p) for code, p in world.profiles.items()}
        self.report = report

    def recorded(self, at: datetime) -> datetime:
        delay = self.config.dists["recorded_delay_min"].draw(self.rng)
        return min(_after(at, delay / 60), self.now)

    def build(self, session: Session, starts: Sequence[Start]) -> Batch:
        batch = Batch()
        for start in starts:
            self.case(session, start, batch)
        return batch

    def case(self, session: Session, start: Start, batch: Batch) -> None:
        rng, cfg, now = self.rng, self.config, self.now
        case_id, mrn = _hex(rng), f"{start.site[:3]}{rng.getrandbits(40):013d}"
        route = self.world.routes[start.route]
        events, ships, aphereses = self.planner.timeline(start)
        created = self.planner.daytime(
            _after(aphereses[0], -24 * cfg.dists["registration_lead_d"].draw(rng)),
            start.site,
            (9, 17),
            weekday=True,
        )
        created = min(created, aphereses[0] - timedelta(hours=20))
        if created > now:  # booked for the coming days: registered recently
            created = _after(now, -rng.uniform(1, 48))
        scheduled = _after(created, cfg.dists["scheduling_after_registration_h"].draw(rng))
        scheduled = max(
            created + timedelta(minutes=5), min(scheduled, aphereses[0] - timedelta(hours=2))
        )

        stored = [e for e in events if e.at <= now]
        custody_recorded = self.shipments(case_id, ships, events[-1], batch)
        milestones: list[dict[str, Any]] = []
        for e in stored:
            shipped = e.type.startswith("shipped_")
            milestones.append(
                {
                    "case_id": case_id,
                    "type": e.type,
                    "cycle": e.cycle,
                    "occurred_at": e.at,
                    "recorded_at": custody_recorded[e.at] if shipped else self.recorded(e.at),
                    "site": e.site,
                    "actor": self.actor(e, route),
                    "actor_id": None,
                    "note": e.note,
                    "data": e.data,
                }
            )
        batch.rows["milestone"].extend(milestones)

        status = (
            AFTER[stored[-1].type]
            if stored
            else (CaseStatus.apheresis_scheduled if scheduled <= now else CaseStatus.registered)
        )
        cycle = stored[-1].cycle if stored else 1
        terminal = milestones[-1]["recorded_at"] if status in CLOSED else None
        changes = [created] + ([scheduled] if scheduled <= now else [])
        changes += [m["recorded_at"] for m in milestones]
        site = self.world.sites[start.site]
        year = aphereses[0].astimezone(self.planner.zones[start.site]).year
        coi = next_coi(session, fin=site.fin or self.default_fin, year=year)
        batch.rows["cases"].append(
            {
                "id": case_id,
                "coi": coi,
                "coi_check": check_char(coi),
                "coi_token": self.keyring.sign(coi=coi, case_id=case_id, issued_at=created),
                "site": start.site,
                "route": start.route,
                "product": start.product,
                "patient_hash": patient_hash(
                    key=self.patient_key, site=start.site, patient_ref=mrn
                ),
                "status": str(status),
                "cycle": cycle,
                "apheresis_at": None if status == CaseStatus.registered else aphereses[cycle - 1],
                "planned_infusion_at": _after(aphereses[0], 24 * route.v2v_target_d),
                "created_at": created,
                "updated_at": max(changes),
                "closed_at": terminal,
            }
        )
        self.slots(case_id, start, route, aphereses, scheduled, events, batch)
        self.tally(route, str(status), stored)

    def actor(self, e: Ev, route: RouteInfo) -> str:
        if e.type in MANUFACTURING:
            return f"{route.factory} manufacturing (demo)"
        if e.type.startswith("shipped_"):
            return f"{self.config.kinds[route.kind].courier} courier (demo)"
        return f"{e.site} coordinator (demo)"

    def slots(
        self,
        case_id: str,
        start: Start,
        route: RouteInfo,
        aphereses: list[datetime],
        scheduled: datetime,
        events: list[Ev],
        batch: Batch,
    ) -> None:
        inbound_h = sum(leg.expected_h for leg in route.legs["inbound"])
        process_h = self.world.products[start.product].process_h
        booked = [scheduled] + [e.at for e in events if e.type == "recollection"]
        ends = [e.at for e in events if e.type in ("recollection", "cancelled")]
        for cycle, (apheresis, at) in enumerate(zip(aphereses, booked, strict=True), start=1):
            if at > self.now:
                break
            begin = _after(apheresis, inbound_h)
            ended = len(ends) >= cycle and ends[cycle - 1] <= self.now
            batch.rows["slot"].append(
                {
                    "case_id": case_id,
                    "site": route.factory,
                    "start_at": begin,
                    "end_at": _after(begin, process_h),
                    "status": "released" if ended else "reserved",
                    "created_at": at,
                }
            )

    def tally(self, route: RouteInfo, status: str, stored: list[Ev]) -> None:
        r = self.report
        r.cases += 1
        r.by_status[status] += 1
        r.by_route[(route.code, status)] += 1
        at = {e.type: e.at for e in stored if e.cycle == stored[-1].cycle} if stored else {}
        day = 86_400.0
        if "infused" in at:
            r.v2v_d[route.kind].append((at["infused"] - at["collected"]).total_seconds() / day)
        if "received_at_site" in at:
            r.to_site_d[route.kind].append(
                (at["received_at_site"] - at["collected"]).total_seconds() / day
            )
        if status in CLOSED and any(e.type == "collected" for e in stored):
            r.closed[route.kind] += 1
            r.attrited[route.kind] += status == CaseStatus.cancelled

    def shipments(
        self, case_id: str, ships: list[Ship], last: Ev, batch: Batch
    ) -> dict[datetime, datetime]:
        """Shipment, custody, logger and reading rows; returns each pickup's recorded time."""
        now = self.now
        historic = last.type in ("infused", "cancelled") and last.at <= now
        pickups: dict[datetime, datetime] = {}
        for ship in ships:
            if ship.created_at > now:
                continue
            ship.case_id = case_id
            ship.device_id = self.fleet.take(ship)
            picked = ship.pickup_at <= now and ship.cancelled_at is None
            delivered = picked and ship.delivered_at <= now
            if ship.cancelled_at is not None and ship.cancelled_at <= now:
                status = "cancelled"
            else:
                status = "delivered" if delivered else "in_transit" if picked else "created"
            batch.rows["shipment"].append(
                {
                    "id": ship.id,
                    "case_id": case_id,
                    "direction": ship.direction,
                    "origin": ship.origin,
                    "destination": ship.destination,
                    "profile": ship.profile,
                    "courier": ship.courier,
                    "container_serial": ship.container_serial,
                    "container_kind": ship.container_kind,
                    "hold_time_h": ship.hold_time_h,
                    "device_ids": [ship.device_id],
                    "status": status,
                    "created_at": ship.created_at,
                    "picked_up_at": ship.pickup_at if picked else None,
                    "delivered_at": ship.delivered_at if delivered else None,
                    "created_by": None,
                }
            )
            if not picked:
                continue
            batch.rows["device_assignment"].append(
                {
                    "device_id": ship.device_id,
                    "shipment_id": ship.id,
                    "assigned_from": ship.pickup_at,
                    "assigned_until": ship.delivered_at if delivered else None,
                }
            )
            pickups[ship.pickup_at] = self.custody(ship, batch)
            if self.with_readings:
                self.readings(ship, historic, batch)
        return pickups

    def custody(self, ship: Ship, batch: Batch) -> datetime:
        """Pickup, a handoff wherever the carrier changes (airports), delivery."""
        _, leg_ends = segments(self.world, ship)

        def party(leg: Leg) -> str:
            return (
                ship.courier if leg.mode == "ground" else f"air cargo {leg.from_site}-{leg.to_site}"
            )

        origin = self.world.sites[ship.origin]
        scans = [(ship.pickup_at, "picked_up", ship.origin, party(ship.legs[0]), origin)]
        for leg, nxt, end in zip(ship.legs, ship.legs[1:], leg_ends, strict=False):
            if party(leg) != party(nxt):
                scans.append(
                    (_dt(end), "handoff", party(leg), party(nxt), self.world.sites[leg.to_site])
                )
        scans.append(
            (
                ship.delivered_at,
                "delivered",
                party(ship.legs[-1]),
                ship.destination,
                self.world.sites[ship.destination],
            )
        )
        first_recorded = self.now
        for i, (at, action, giver, taker, where) in enumerate(scans):
            if at > self.now:
                break
            recorded = self.recorded(at)
            first_recorded = recorded if i == 0 else first_recorded
            batch.rows["custody_event"].append(
                {
                    "shipment_id": ship.id,
                    "action": action,
                    "occurred_at": at,
                    "recorded_at": recorded,
                    "from_party": giver,
                    "to_party": taker,
                    "lat": where.lat,
                    "lon": where.lon,
                    "actor": f"{ship.courier} courier (demo)",
                    "actor_id": None,
                    "data": None,
                }
            )
        return first_recorded

    def readings(self, ship: Ship, historic: bool, batch: Batch) -> None:
        """The logger's readings and what the excursion detector makes of them."""
        rows = readings_for(
            self.world, self.config, ship, until_ms=self.now_ms, interval_ms=self.interval_ms
        )
        if not rows:
            return
        batch.readings.extend(rows)
        rules = self.rules[ship.profile]
        state, excursions = evaluate(rules, ((r[2], r[3]) for r in rows))
        last = rows[-1]
        state_row = {
            "shipment_id": ship.id,
            "n": state.n,
            "last_ts_ms": state.last_ts_ms,
            "last_temp_c": state.last_temp_c,
            "last_lat": last[4],
            "last_lon": last[5],
            "newest_ts_ms": last[2],
            "mkt_w": state.mkt_w,
            "mkt_wexp": state.mkt_wexp,
            "oor_closed_ms": state.oor_closed_ms,
            "open_excursion_id": None,
            "needs_reeval": False,
            "updated_at": _dt(min(last[10], self.now_ms)),
        }
        batch.rows["shipment_state"].append(state_row)
        if state.open is not None:
            batch.open_states[(ship.id, state.open.started_ms)] = state_row
        # QA reviews a finished case's excursions after delivery (signed disposition). Not
        # drawn from the cohort's generator: the case rows must not depend on --no-readings.
        reviewed = min(_after(ship.delivered_at, 1 + ship.readings_seed % 2300 / 100), self.now)
        for exc in excursions:
            quarantine = exc.severity == "critical"
            batch.rows["excursion"].append(
                {
                    "shipment_id": ship.id,
                    "kind": exc.kind,
                    "status": "closed" if exc.ended_ms is not None else "open",
                    "started_ms": exc.started_ms,
                    "last_ms": exc.last_ms,
                    "ended_ms": exc.ended_ms,
                    "peak_c": exc.peak_c,
                    "out_of_spec": exc.out_of_spec,
                    "severity": exc.severity,
                    "disposition": None,
                    "disposition_reason": None,
                    "signed_by": None,
                    "signed_at": None,
                    "signature_meaning": None,
                }
            )
            if historic:
                batch.rows["excursion"][-1].update(
                    disposition="quarantine" if quarantine else "accept",
                    disposition_reason=(
                        "critical limit crossed: product held for investigation"
                        if quarantine
                        else "within the product's stability data; released for use"
                    ),
                    signed_by="demo QA",
                    signed_at=reviewed,
                    signature_meaning="review",
                )
        self.alerts(ship, rules, state, excursions, historic, reviewed, batch)

    def alerts(
        self,
        ship: Ship,
        rules: Rules,
        state: State,
        excursions: list[Exc],
        historic: bool,
        reviewed: datetime,
        batch: Batch,
    ) -> None:
        """The alerts the detector raises for these results: open while the case is in
        flight; acknowledged and resolved at QA review once the case is closed."""
        for first_ms, last_ms, severity, key, message, data in detector_alerts(
            ship, rules, state, excursions
        ):
            updated = _dt(min(last_ms + UPLOAD_DELAY_MS, self.now_ms))
            done = max(reviewed, updated) if historic else None
            batch.rows["alert"].append(
                {
                    "kind": AlertKind.temperature_excursion.value,
                    "severity": severity,
                    "status": AlertStatus.resolved.value if historic else AlertStatus.open.value,
                    "case_id": ship.case_id,
                    "shipment_id": ship.id,
                    "dedupe_key": key,
                    "message": message,
                    "data": data,
                    "created_at": _dt(min(first_ms + UPLOAD_DELAY_MS, self.now_ms)),
                    "updated_at": done or updated,
                    "acknowledged_at": done,
                    "acknowledged_by": "demo QA" if historic else None,
                    "ack_note": None,
                    "resolved_at": done,
                }
            )


AlertSpec = tuple[int, int, str, str, str, dict[str, Any] | None]


def detector_alerts(
    ship: Ship, rules: Rules, state: State, excursions: list[Exc]
) -> list[AlertSpec]:
    """(first ms, last ms, severity, dedupe key, message, data) of each alert, exactly as
    coldchain._excursion_alert and coldchain._shipment_alerts word them."""
    out: list[AlertSpec] = []
    for exc in excursions:
        # Short blips do not alarm; a cryogenic warning band does.
        warn_band = not exc.out_of_spec and rules.warn_above_c is not None
        if exc.severity == "warning" and not warn_band:
            continue
        minutes = exc.duration_ms / 60_000
        message = (
            f"{exc.kind.replace('_', ' ')} temperature excursion on shipment {ship.id[:8]} "
            f"({ship.profile}): peak {exc.peak_c:.1f} °C, {minutes:.0f} min, "
            + ("closed" if exc.ended_ms is not None else "ongoing")
        )
        data = {
            "started_at": _dt(exc.started_ms).isoformat(),
            "peak_c": exc.peak_c,
            "duration_min": round(minutes, 2),
            "kind": exc.kind,
        }
        last = exc.ended_ms or exc.last_ms
        out.append(
            (
                exc.started_ms,
                last,
                exc.severity,
                f"excursion:{ship.id}:{exc.started_ms}",
                message,
                data,
            )
        )
    last_ms = state.last_ts_ms or 0
    total = state.oor_total_ms()
    if rules.budget_ms is not None and total >= rules.budget_ms:
        message = (
            f"shipment {ship.id[:8]} has been out of range {total / 60_000:.0f} min in "
            f"total (budget {rules.budget_ms / 60_000:.0f} min)"
        )
        out.append((last_ms, last_ms, Severity.major.value, f"budget:{ship.id}", message, None))
    mkt = state.mkt_c()
    if (
        rules.mkt_limit_c is not None
        and mkt is not None
        and state.mkt_w >= MKT_MIN_SPAN_MS
        and mkt > rules.mkt_limit_c
    ):
        message = (
            f"mean kinetic temperature of shipment {ship.id[:8]} is {mkt:.2f} °C "
            f"(limit {rules.mkt_limit_c:.1f} °C)"
        )
        out.append((last_ms, last_ms, rules.mkt_severity, f"mkt:{ship.id}", message, None))
    return out


# ---- writing -------------------------------------------------------------------------------

# Parents before children (foreign keys).
TABLES = (
    "cases",
    "slot",
    "milestone",
    "device",
    "shipment",
    "custody_event",
    "device_assignment",
    "reading",
    "excursion",
    "shipment_state",
    "alert",
)


def _table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


def write(session: Session, batch: Batch, fleet: Fleet) -> Counter[str]:
    """Bulk-insert a batch: Core executemany per table, COPY or raw executemany for readings."""
    batch.rows["device"], fleet.new = fleet.new, []
    written: Counter[str] = Counter()
    for name in TABLES:
        if name == "reading":
            for i in range(0, len(batch.readings), READINGS_CHUNK):
                insert_readings(session, batch.readings[i : i + READINGS_CHUNK])
            written[name] = len(batch.readings)
            continue
        if name == "shipment_state" and batch.open_states:
            excursions = _table("excursion").c
            found = session.execute(
                select_columns(excursions.id, excursions.shipment_id, excursions.started_ms).where(
                    excursions.status == "open",
                    excursions.shipment_id.in_(sorted({k[0] for k in batch.open_states})),
                )
            )
            for excursion_id, shipment_id, started_ms in found:
                state = batch.open_states.get((shipment_id, started_ms))
                if state is not None:
                    state["open_excursion_id"] = excursion_id
        rows = batch.rows.get(name, [])
        if rows:
            session.execute(insert(_table(name)), rows)
            written[name] = len(rows)
    return written


def insert_readings(session: Session, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    connection = session.connection()
    driver: Any = connection.connection.driver_connection
    columns = ", ".join(READING_COLUMNS)
    if connection.dialect.name == "postgresql":
        with driver.cursor() as cursor, cursor.copy(f"COPY reading ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in READING_COLUMNS)
    cursor = driver.cursor()
    try:
        cursor.executemany(f"INSERT INTO reading ({columns}) VALUES ({marks})", rows)  # noqa: S608
    finally:
        cursor.close()


def has_cases(db: Database) -> bool:
    with db.session() as session:
        return session.exec(select(Case.id).limit(1)).first() is not None


def generate(
    db: Database,
    *,
    cases: int,
    seed: int,
    now: datetime,
    readings: bool = True,
    progress: Progress | None = None,
    settings: Settings | None = None,
    config: DemoConfig | None = None,
) -> DemoReport:
    """Generate and store a demo cohort of ``cases`` cases; the same arguments, the same rows."""
    settings = settings or get_settings()
    if settings.env == "production":
        raise DemoRefused(
            "the demo cohort is synthetic patient data: refused with V2V_ENV=production"
        )
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now needs a UTC offset")
    if cases < 0:
        raise ValueError("cases must not be negative")
    now = now.astimezone(UTC)
    config = config or DemoConfig.load()
    report = DemoReport(seed=seed, now=now)
    rng = random.Random(seed)
    with db.session() as session:
        world = World.load(session, config)
    cohort = Cohort(
        rng, world, config, now=now, settings=settings, readings=readings, report=report
    )
    starts = cohort.planner.starts(cases, now)
    for begin in range(0, len(starts), BATCH):
        chunk = starts[begin : begin + BATCH]
        with db.transaction() as session:
            batch = cohort.build(session, chunk)
            if begin == 0:
                _refuse_reload(session, batch)
            if progress is not None:
                progress("generated", begin + len(chunk), len(starts))
            report.rows.update(write(session, batch, cohort.fleet))
        if progress is not None:
            progress("written", begin + len(chunk), len(starts))
    with db.transaction() as session:
        audit.append(
            session,
            actor="demo",
            action="demo.generated",
            entity="demo",
            entity_id=f"seed-{seed}",
            at=now,
            after={**report.counts(), "readings": readings, "medians": report.medians()},
        )
    return report


def _refuse_reload(session: Session, batch: Batch) -> None:
    ids = [row["id"] for row in batch.rows["cases"]]
    if session.exec(select(Case.id).where(col(Case.id).in_(ids)).limit(1)).first() is not None:
        raise DemoRefused("this seed's cohort is already in the database; choose another --seed")


STAGES = ("generated", "written")


def summary(report: DemoReport) -> RenderableType:
    """Cases by route and status, rows written, and the turnaround observed at ``now``."""
    statuses = sorted(report.by_status, key=lambda s: list(CaseStatus).index(CaseStatus(s)))
    routes = sorted({route for route, _ in report.by_route})
    table = RichTable(title=f"demo cohort: {report.cases} cases, seed {report.seed}")
    table.add_column("status")
    for route in routes:
        table.add_column(route, justify="right")
    for status in statuses:
        table.add_row(status, *(str(report.by_route[(route, status)]) for route in routes))
    rows = report.rows
    lines = [
        f"readings {rows['reading']:,}, shipments {rows['shipment']:,}, "
        f"excursions {rows['excursion']:,}, alerts {rows['alert']:,}, "
        f"in flight at {report.now:%Y-%m-%d %H:%M}Z: {report.in_flight}"
    ]
    for kind, m in report.medians().items():
        lines.append(
            f"{kind}: median V2V {m['v2v_d']} d, collection -> at hospital "
            f"{m['collection_to_site_d']} d, attrition {m['attrition']}"
        )
    return Group(table, *lines)
