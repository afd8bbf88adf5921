"""The route model: expected leg times, predicted milestones and shipment ETAs.

A case's next milestones are predicted from its latest actual milestone: transit from the
route's legs (geodesic distance, mode speed, handling, customs — integrations/geo.py), the
route's typical non-transit times (seeds/routes.yaml ``expected``), the reserved slot at the
factory, and for a shipment in transit its last known position.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, func
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app.times import as_utc, from_ms
from integrations.geo import distance_km, travel_hours
from models.case import Case, Milestone
from models.coldchain import ShipmentState
from models.reference import Product, Route, RouteLeg, Site
from models.shipment import Shipment

# The physical journey in order; thawing is folded into site_to_infusion.
SEQUENCE = (
    "collected",
    "shipped_to_manufacturing",
    "received_at_manufacturing",
    "manufacturing_started",
    "qc_released",
    "shipped_to_site",
    "received_at_site",
    "infused",
)


@dataclass(frozen=True)
class Leg:
    direction: str
    from_site: str
    to_site: str
    mode: str
    customs_h: float
    expected_h: float
    a: tuple[float, float]
    b: tuple[float, float]


@dataclass
class RouteModel:
    code: str
    kind: str
    manufacturing_site: str
    expected: dict[str, Any]
    targets: dict[str, Any]
    cost_per_case: float | None
    currency: str | None
    legs: list[Leg] = field(default_factory=list)

    def transit_h(self, direction: str) -> float:
        return sum(leg.expected_h for leg in self.legs if leg.direction == direction)

    def hours(self, key: str, default_h: float) -> timedelta:
        """A typical duration from ``expected`` (``_h`` or ``_d`` keys), as a timedelta."""
        if f"{key}_h" in self.expected:
            return timedelta(hours=float(self.expected[f"{key}_h"]))
        if f"{key}_d" in self.expected:
            return timedelta(days=float(self.expected[f"{key}_d"]))
        return timedelta(hours=default_h)

    def target(self, name: str) -> timedelta | None:
        value = self.targets.get(name)
        if value is None:
            return None
        return (
            timedelta(days=float(value)) if name.endswith("_d") else timedelta(hours=float(value))
        )


def load_model(session: Session, code: str) -> RouteModel:
    """One route's model (a case's view): its legs and their sites, nothing else read."""
    return load_models(session, code=code)[code]


def load_models(session: Session, *, code: str | None = None) -> dict[str, RouteModel]:
    """Every route's model, or only route ``code``'s (one case's view, read in its write
    transaction: the other routes, their legs and sites are not read)."""
    routes_q = select(Route)
    legs_q = select(RouteLeg).order_by(col(RouteLeg.direction), col(RouteLeg.seq), col(RouteLeg.id))
    if code is not None:
        routes_q = routes_q.where(Route.code == code)
        legs_q = legs_q.where(RouteLeg.route_code == code)
    models = {
        r.code: RouteModel(
            r.code,
            r.kind,
            r.manufacturing_site,
            dict(r.expected or {}),
            dict(r.targets or {}),
            r.cost_per_case,
            r.currency,
        )
        for r in session.exec(routes_q)
    }
    legs = list(session.exec(legs_q))
    codes = {leg.from_site for leg in legs} | {leg.to_site for leg in legs}
    sites_q = select(Site) if code is None else select(Site).where(col(Site.code).in_(codes))
    sites = {s.code: s for s in session.exec(sites_q)} if codes else {}
    for leg in legs:
        a, b = sites[leg.from_site], sites[leg.to_site]
        models[leg.route_code].legs.append(
            Leg(
                leg.direction,
                leg.from_site,
                leg.to_site,
                leg.mode,
                leg.customs_h,
                leg.expected_h,
                (a.lat, a.lon),
                (b.lat, b.lon),
            )
        )
    return models


def remaining_transit(
    model: RouteModel, direction: str, *, position: tuple[float, float] | None
) -> timedelta | None:
    """Time left in transit from a position: the rest of its leg, then the later legs."""
    legs = [leg for leg in model.legs if leg.direction == direction]
    if not legs or position is None:
        return None

    def off_route(leg: Leg) -> float:
        # How far the position is from lying on the leg (0 when on the great circle).
        return (
            distance_km(leg.a, position) + distance_km(position, leg.b) - distance_km(leg.a, leg.b)
        )

    index = min(range(len(legs)), key=lambda i: off_route(legs[i]))
    current = legs[index]
    hours = travel_hours(distance_km(position, current.b), current.mode) + current.customs_h
    hours += sum(leg.expected_h for leg in legs[index + 1 :])
    return timedelta(hours=hours)


def step_times(model: RouteModel, process_h: float) -> dict[str, timedelta]:
    """Expected time from each milestone in SEQUENCE to the next (collected: zero)."""
    return {
        "collected": timedelta(0),
        "shipped_to_manufacturing": model.hours("collection_to_pickup", 1.0),
        "received_at_manufacturing": timedelta(hours=model.transit_h("inbound")),
        "manufacturing_started": model.hours("receipt_to_start", 12.0),
        "qc_released": model.hours("start_to_release", process_h),
        "shipped_to_site": model.hours("release_to_pickup", 6.0),
        "received_at_site": timedelta(hours=model.transit_h("outbound")),
        "infused": model.hours("site_to_infusion", 48.0),
    }


def predict(
    model: RouteModel,
    actual: dict[str, datetime],
    *,
    now: datetime,
    apheresis_at: datetime | None,
    slot_start_at: datetime | None = None,
    process_h: float = 168.0,
    eta: dict[str, datetime] | None = None,
) -> dict[str, datetime]:
    """Predicted time of every milestone (actual ones as they happened).

    ``eta`` may give a live estimate for ``received_at_manufacturing`` or
    ``received_at_site`` from a shipment in transit.
    """
    eta = eta or {}
    steps = step_times(model, process_h)
    out: dict[str, datetime] = {}
    previous: datetime | None = None
    pending_seen = False
    for name in SEQUENCE:
        if name in actual:
            out[name] = previous = actual[name]
            continue
        if previous is None:
            start = apheresis_at or now
            when = start
        else:
            when = previous + steps[name]
        if name in eta:
            when = eta[name]
        if name == "manufacturing_started" and slot_start_at is not None:
            when = max(when, slot_start_at)
        if not pending_seen:
            when = max(when, now)  # what has not happened yet cannot be predicted in the past
            pending_seen = True
        out[name] = previous = when
    return out


def milestone_times(session: Session, case_ids: Iterable[str]) -> dict[str, dict[str, datetime]]:
    """Latest time of each milestone type in each case's current collection cycle (voided
    milestones count for nothing; amended ones count at their corrected time)."""
    ids = list(case_ids)
    out: dict[str, dict[str, datetime]] = defaultdict(dict)
    for chunk_start in range(0, len(ids), 900):
        chunk = ids[chunk_start : chunk_start + 900]
        rows = session.exec(
            select(Milestone.case_id, Milestone.type, func.max(Milestone.occurred_at))
            .join(Case, col(Case.id) == col(Milestone.case_id))
            .where(
                col(Milestone.case_id).in_(chunk),
                col(Milestone.cycle) == col(Case.cycle),
                col(Milestone.status) != "voided",
            )
            .group_by(col(Milestone.case_id), col(Milestone.type))
        )
        for case_id, kind, at in rows:
            out[case_id][kind] = as_utc(at)
    return out


def process_hours(session: Session) -> dict[str, float]:
    return {p.code: p.process_h for p in session.exec(select(Product))}


# The milestone a shipment's delivery leads to, by direction.
ARRIVAL = {"to_manufacturing": "received_at_manufacturing", "to_site": "received_at_site"}


def transit_eta(
    model: RouteModel,
    *,
    direction: str,
    picked_up_at: datetime,
    position: tuple[float, float] | None,
    newest_ms: int | None,
) -> datetime:
    """When a shipment in transit should arrive (possibly already past): from its last known
    position and newest reading, else from pickup plus the legs' expected times.

    The one estimate behind the shipment's ``eta`` and the delay sweep's prediction of the
    arrival milestone, so the two always agree.
    """
    legs = "inbound" if direction == "to_manufacturing" else "outbound"
    left = remaining_transit(model, legs, position=position)
    if left is not None and newest_ms is not None:
        return from_ms(newest_ms) + left
    return picked_up_at + timedelta(hours=model.transit_h(legs))


def predicted_arrival(session: Session, *, shipment: Any, model: RouteModel) -> datetime | None:
    """When a shipment in transit should have arrived or will, from its last position, else
    from pickup; in the past when it is late."""
    if shipment.status != "in_transit" or shipment.picked_up_at is None:
        return None
    state = session.get(ShipmentState, shipment.id)
    return transit_eta(
        model,
        direction=shipment.direction,
        picked_up_at=shipment.picked_up_at,
        position=_position(state.last_lat, state.last_lon) if state is not None else None,
        newest_ms=state.newest_ts_ms if state is not None else None,
    )


def shipment_eta(
    session: Session, *, shipment: Any, model: RouteModel, now: datetime
) -> datetime | None:
    """When a shipment in transit should arrive, never before now (the API's ``eta``)."""
    eta = predicted_arrival(session, shipment=shipment, model=model)
    return None if eta is None else max(eta, now)


def live_etas(session: Session, cases: dict[str, RouteModel]) -> dict[str, dict[str, datetime]]:
    """Per case with a shipment in transit, its arrival milestone's ETA (transit_eta), from
    one query on the shipments' case index."""
    ship: Table = Shipment.__table__  # type: ignore[attr-defined]
    state: Table = ShipmentState.__table__  # type: ignore[attr-defined]
    out: dict[str, dict[str, datetime]] = defaultdict(dict)
    ids = list(cases)
    for start in range(0, len(ids), 900):
        rows = session.execute(
            select_columns(
                ship.c.case_id,
                ship.c.direction,
                ship.c.picked_up_at,
                state.c.last_lat,
                state.c.last_lon,
                state.c.newest_ts_ms,
            )
            .select_from(ship.outerjoin(state, state.c.shipment_id == ship.c.id))
            .where(
                ship.c.case_id.in_(ids[start : start + 900]),
                ship.c.status == "in_transit",
                ship.c.picked_up_at.is_not(None),
            )
        )
        for case_id, direction, picked_up_at, lat, lon, newest_ms in rows:
            out[case_id][ARRIVAL[direction]] = transit_eta(
                cases[case_id],
                direction=direction,
                picked_up_at=as_utc(picked_up_at),
                position=_position(lat, lon),
                newest_ms=newest_ms,
            )
    return out


def _position(lat: float | None, lon: float | None) -> tuple[float, float] | None:
    return (lat, lon) if lat is not None and lon is not None else None
