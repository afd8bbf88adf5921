"""Turns sampled timelines into case rows (cases, milestones, slots), cut at ``now``."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from app.config import Settings
from app.services.identity.coi import Keyring, check_char, next_coi
from app.services.journey.cases import patient_hash
from app.services.journey.events import TRANSITIONS
from models.case import CaseStatus
from seeds.demo.config import DemoConfig
from seeds.demo.readings import Fleet
from seeds.demo.report import CLOSED, DemoReport
from seeds.demo.shipping import Shipping
from seeds.demo.timeline import Planner, after, hex_id
from seeds.demo.world import Ev, RouteInfo, Start, World
from seeds.demo.write import Batch

# State after each milestone: the journey's transitions plus the shipment pickups.
AFTER = {
    **{event: target.value for event, (_, target) in TRANSITIONS.items()},
    "shipped_to_manufacturing": CaseStatus.in_transit_to_manufacturing.value,
    "shipped_to_site": CaseStatus.in_transit_to_site.value,
}
MANUFACTURING = frozenset(
    {"received_at_manufacturing", "manufacturing_started", "qc_released", "manufacturing_failed"}
)


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
        self.planner = Planner(rng, world, config)
        self.keyring = Keyring(
            settings.coi_signing_keys.get_secret_value(), settings.coi_verify_keys
        )
        self.patient_key = settings.patient_hash_key.get_secret_value()
        self.default_fin = settings.coi_fin
        self.fleet = Fleet(f"{rng.getrandbits(16):04x}", now)
        self.shipping = Shipping(
            world, config, now=now, fleet=self.fleet, readings=readings, recorded=self.recorded
        )
        self.report = report

    def recorded(self, at: datetime) -> datetime:
        delay = self.config.dists["recorded_delay_min"].draw(self.rng)
        return min(after(at, delay / 60), self.now)

    def build(self, session: Session, starts: Sequence[Start]) -> Batch:
        batch = Batch()
        for start in starts:
            self.case(session, start, batch)
        return batch

    def case(self, session: Session, start: Start, batch: Batch) -> None:
        rng, cfg, now = self.rng, self.config, self.now
        case_id, mrn = hex_id(rng), f"{start.site[:3]}{rng.getrandbits(40):013d}"
        route = self.world.routes[start.route]
        events, ships, aphereses = self.planner.timeline(start)
        created = self.planner.daytime(
            after(aphereses[0], -24 * cfg.dists["registration_lead_d"].draw(rng)),
            start.site,
            (9, 17),
            weekday=True,
        )
        created = min(created, aphereses[0] - timedelta(hours=20))
        if created > now:  # booked for the coming days: registered recently
            created = after(now, -rng.uniform(1, 48))
        scheduled = after(created, cfg.dists["scheduling_after_registration_h"].draw(rng))
        scheduled = max(
            created + timedelta(minutes=5), min(scheduled, aphereses[0] - timedelta(hours=2))
        )

        stored = [e for e in events if e.at <= now]
        custody_recorded = self.shipping.shipments(case_id, ships, events[-1], batch)
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
                "planned_infusion_at": after(aphereses[0], 24 * route.v2v_target_d),
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
            begin = after(apheresis, inbound_h)
            ended = len(ends) >= cycle and ends[cycle - 1] <= self.now
            batch.rows["slot"].append(
                {
                    "case_id": case_id,
                    "site": route.factory,
                    "start_at": begin,
                    "end_at": after(begin, process_h),
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
