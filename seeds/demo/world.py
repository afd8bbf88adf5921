"""The seeded world the demo samples from (sites, routes, profiles, products) and the
records of a sampled plan (events, shipments, first collections)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from models.reference import Product, Profile, Route, RouteLeg, Site
from seeds.demo.config import DemoConfig, DemoRefused


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
