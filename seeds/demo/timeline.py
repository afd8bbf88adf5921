"""Each case's whole timeline, sampled; knows nothing of the database."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.services.audit import chain as audit
from app.times import to_ms
from seeds.demo.config import DemoConfig, Dist
from seeds.demo.world import Ev, RouteInfo, Ship, Start, World

HOUR = timedelta(hours=1)


def after(t: datetime, hours: float) -> datetime:
    return t + timedelta(seconds=round(hours * 3600))


def hex_id(rng: random.Random) -> str:
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
        return after(start, self.rng.random() * hours_left).astimezone(UTC)

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
        aphereses = [after(start.collected_at, -rng.uniform(3, 5))]
        collected, cycle = start.collected_at, 1
        while True:
            events.append(Ev(collected, "collected", start.site, cycle))
            pickup = after(collected, dur["collection_to_pickup_h"].draw(rng))
            inbound = self.ship(route, "inbound", start.site, collected, pickup)
            ships.append(inbound)
            events.append(Ev(pickup, "shipped_to_manufacturing", inbound.origin, cycle))
            received = after(
                inbound.delivered_at, cfg.dists["receipt_after_delivery_min"].draw(rng) / 60
            )
            events.append(Ev(received, "received_at_manufacturing", route.factory, cycle))
            started = after(received, dur["receipt_to_start_h"].draw(rng))
            events.append(Ev(started, "manufacturing_started", route.factory, cycle))
            making_d = dur["start_to_release_d"].draw(rng) + extra_d
            if rng.random() < prob["manufacturing_failure"]:
                failed = after(started, 24 * making_d * cfg.dists["failure_at_fraction"].draw(rng))
                events.append(
                    Ev(
                        failed,
                        "manufacturing_failed",
                        route.factory,
                        cycle,
                        note="out of specification at release testing",
                    )
                )
                decided = after(failed, 24 * cfg.dists["failure_decision_d"].draw(rng))
                if (
                    cycle < cfg.raw["max_cycles"]
                    and rng.random() < prob["recollection_after_failure"]
                ):
                    lead = cfg.dists["recollection_lead_d"].draw(rng)
                    collected = self.daytime(
                        after(decided, 24 * lead),
                        start.site,
                        cfg.raw["collection_hours"],
                        weekday=True,
                    )
                    aphereses.append(after(collected, -rng.uniform(3, 5)))
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
            released = after(started, 24 * making_d)
            events.append(Ev(released, "qc_released", route.factory, cycle))
            pickup = after(released, 24 * dur["release_to_pickup_d"].draw(rng))
            outbound = self.ship(route, "outbound", route.factory, released, pickup)
            ships.append(outbound)
            events.append(Ev(pickup, "shipped_to_site", outbound.origin, cycle))
            at_site = after(
                outbound.delivered_at, cfg.dists["receipt_after_delivery_min"].draw(rng) / 60
            )
            events.append(Ev(at_site, "received_at_site", start.site, cycle))
            thawed = self.daytime(
                after(at_site, 24 * dur["site_to_thaw_d"].draw(rng)),
                start.site,
                cfg.raw["infusion_hours"],
                weekday=False,
            )
            events.append(Ev(thawed, "thawed", start.site, cycle))
            infused = after(thawed, dur["thaw_to_infusion_min"].draw(rng) / 60)
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
        at = after(first, (last - first) / HOUR * rng.random())
        k = max(i for i, e in enumerate(events) if e.at <= at)
        # Material in transit is received first; a thawed product is infused, not dropped.
        if events[k].type.startswith("shipped_"):
            k += 1
            at = after(
                events[k].at, (events[k + 1].at - events[k].at) / HOUR * rng.uniform(0.2, 0.8)
            )
        elif events[k].type in ("thawed", "infused"):
            k = next(i for i, e in enumerate(events) if e.type == "thawed") - 1
            at = after(
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
        delivered = after(pickup, factor * sum(leg.expected_h for leg in legs))
        container = kind.containers[profile]
        excursion = None
        if rng.random() < kind.probabilities["excursion_per_shipment"]:
            spec = cfg.raw["excursions"][profile]
            length_ms = round(Dist.parse(spec["duration_min"]).draw(rng) * 60_000)
            peak = Dist.parse(spec["peak_c"]).draw(rng)
            # In range at pickup and at delivery: a short trip shortens the episode.
            trip_ms = to_ms(delivered) - to_ms(pickup) - 20 * 60_000
            length_ms = min(length_ms, trip_ms)
            room = trip_ms - length_ms
            if length_ms >= 15 * 60_000:
                excursion = (
                    to_ms(pickup) + 10 * 60_000 + round(rng.random() * room),
                    length_ms,
                    peak,
                )
        return Ship(
            id=hex_id(rng),
            direction="to_manufacturing" if direction == "inbound" else "to_site",
            origin=origin,
            destination=legs[-1].to_site,
            profile=profile,
            courier=kind.courier,
            container_kind=container["kind"],
            container_serial=f"{container['prefix']}-{rng.getrandbits(32):08X}",
            hold_time_h=container.get("hold_time_h"),
            created_at=after(ready, (pickup - ready) / HOUR * rng.uniform(0.1, 0.5)),
            pickup_at=pickup,
            delivered_at=delivered,
            legs=legs,
            leg_factor=factor,
            excursion=excursion,
            readings_seed=rng.getrandbits(64),
        )
