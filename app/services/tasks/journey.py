"""Tasks of the journey itself: booked, planned and predicted steps of cases and shipments.

Predictions are the delay model's (``delays.routes.predict``), so a task's time agrees
with the delay alerts. That model never predicts the next step in the past (it clamps it to
now); a task list must show a missed step as missed, so the next step of each case is
taken unclamped, and later steps follow the clamped chain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app.services.access.scope import case_scope, shipment_scope
from app.services.delays import routes
from app.services.delays.checks import FAR_PAST
from app.services.identity.coi import display
from app.services.journey.pages import NEXT_MILESTONE
from app.services.tasks.rules import ARRIVALS, PICKUPS, Draft, held, titled
from models.case import Case, CaseStatus, Slot
from models.principal import Principal
from models.reference import Product, Site
from models.shipment import Direction, Shipment, ShipmentStatus
from models.tasks import TaskKind

S, K = CaseStatus, TaskKind
CHUNK = 900  # SQLite's bound-parameter limit, with room to spare
BEFORE_START = (
    S.apheresis_scheduled,
    S.collected,
    S.in_transit_to_manufacturing,
    S.at_manufacturing,
)
BEFORE_RELEASE = (*BEFORE_START, S.in_manufacturing)
BEFORE_THAW = (S.released, S.in_transit_to_site, S.at_site)
OPEN_SHIPMENT = (ShipmentStatus.created.value, ShipmentStatus.in_transit.value)
# The step a shipment's pickup and arrival are, by direction.
PICKED_UP = {"to_manufacturing": "shipped_to_manufacturing", "to_site": "shipped_to_site"}
# A case waiting for a shipment that nobody has created yet: the pickup is still owed.
AWAITING_SHIPMENT = {S.collected: Direction.to_manufacturing, S.released: Direction.to_site}


# The case states in which each kind of task can arise.
ARISES: dict[TaskKind, tuple[CaseStatus, ...]] = {
    K.apheresis: (S.apheresis_scheduled,),
    K.manufacturing_start: BEFORE_START,
    K.qc_release: BEFORE_RELEASE,
    K.thaw: BEFORE_THAW,
    K.infusion: (*BEFORE_THAW, S.thawed),
    K.pickup: tuple(AWAITING_SHIPMENT),
}


@dataclass(frozen=True)
class CaseRow:
    """The columns of a case a task needs (never its patient hash or token)."""

    id: str
    coi: str
    site: str
    route: str
    product: str
    status: str
    apheresis_at: datetime | None
    planned_infusion_at: datetime | None
    hold_status: str | None

    @property
    def held(self) -> dict[str, Any]:
        return held(self.hold_status)

    def titled(self, title: str) -> str:
        return titled(title, self.hold_status)


CASE_COLUMNS = tuple(
    col(c)
    for c in (
        Case.id,
        Case.coi,
        Case.site,
        Case.route,
        Case.product,
        Case.status,
        Case.apheresis_at,
        Case.planned_infusion_at,
        Case.hold_status,
    )
)


@dataclass(frozen=True)
class Plan:
    """One case's predicted steps: the next one unclamped, the rest as the model says."""

    factory: str
    next_step: str | None
    raw: dict[str, datetime]
    clamped: dict[str, datetime]
    actual: dict[str, datetime]

    def due(self, step: str) -> datetime:
        return self.raw[step] if step == self.next_step else self.clamped[step]


def _plans(session: Session, cases: dict[str, CaseRow], now: datetime) -> dict[str, Plan]:
    models = routes.load_models(session)
    process = routes.process_hours(session)
    ids = list(cases)
    times = routes.milestone_times(session, ids)
    etas = routes.live_etas(session, {i: models[c.route] for i, c in cases.items()})
    slots: dict[str, datetime] = {}
    for start in range(0, len(ids), CHUNK):
        slots.update(
            session.exec(
                select(Slot.case_id, Slot.start_at).where(
                    Slot.status == "reserved", col(Slot.case_id).in_(ids[start : start + CHUNK])
                )
            ).all()
        )
    out: dict[str, Plan] = {}
    for case_id, case in cases.items():
        actual = times.get(case_id, {})
        model = models[case.route]
        kw: dict[str, Any] = {
            "apheresis_at": case.apheresis_at,
            "slot_start_at": slots.get(case_id),
            "process_h": process.get(case.product, 168.0),
            "eta": etas.get(case_id),
        }
        raw = routes.predict(model, actual, now=FAR_PAST, **kw)
        # The model only ever moves a past prediction up to now; when none is past, the
        # clamped chain is the same one.
        late = any(at < now for step, at in raw.items() if step not in actual)
        clamped = routes.predict(model, actual, now=now, **kw) if late else raw
        out[case_id] = Plan(
            model.manufacturing_site, NEXT_MILESTONE.get(case.status), raw, clamped, actual
        )
    return out


def _open_shipments(session: Session, ids: list[str]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for start in range(0, len(ids), CHUNK):
        found.update(
            session.exec(
                select(Shipment.case_id, Shipment.direction).where(
                    col(Shipment.case_id).in_(ids[start : start + CHUNK]),
                    col(Shipment.status).in_(OPEN_SHIPMENT),
                )
            ).all()
        )
    return found


def derive(
    session: Session, *, actor: Principal, kinds: frozenset[TaskKind], now: datetime
) -> list[Draft]:
    """Every journey task of the actor's kinds in its scope, whatever its time."""
    cases: dict[str, CaseRow] = {}
    statuses = sorted({s.value for kind in kinds for s in ARISES.get(kind, ())})
    if statuses:
        for row in session.execute(
            select_columns(*CASE_COLUMNS).where(case_scope(actor), col(Case.status).in_(statuses))
        ):
            cases[row[0]] = CaseRow(*row)
    shipments: list[tuple[Shipment, CaseRow]] = []
    if kinds & {K.pickup, K.arrival}:
        for shipment, *columns in session.execute(
            select_columns(Shipment, *CASE_COLUMNS)
            .join(Case, col(Case.id) == col(Shipment.case_id))
            .where(shipment_scope(actor), col(Shipment.status).in_(OPEN_SHIPMENT))
        ):
            shipments.append((shipment, CaseRow(*columns)))
    if not cases and not shipments:
        return []
    every = {**cases, **{case.id: case for _, case in shipments}}
    plans = _plans(session, every, now)
    names = {s.code: s.name for s in session.exec(select(Site))}
    products = {p.code: p for p in session.exec(select(Product))}
    out: list[Draft] = []
    for case in cases.values():
        out.extend(_case_tasks(case, plans[case.id], kinds, products.get(case.product), names))
    if K.pickup in kinds and actor.role in PICKUPS:
        open_pairs = _open_shipments(session, list(cases))
        for case in cases.values():
            direction = AWAITING_SHIPMENT.get(S(case.status))
            if direction is None or direction.value not in PICKUPS[actor.role]:
                continue
            if (case.id, direction.value) not in open_pairs:
                out.append(_unbooked_pickup(case, direction.value, plans[case.id]))
    for shipment, case in shipments:
        out.extend(_shipment_tasks(actor, shipment, case, plans[case.id], kinds, names))
    return out


def _case_tasks(
    case: CaseRow,
    plan: Plan,
    kinds: frozenset[TaskKind],
    product: Product | None,
    names: dict[str, str],
) -> Iterable[Draft]:
    coi = display(case.coi)
    base = {"case_id": case.id, "coi": case.coi}
    status = S(case.status)
    site = {"site": case.site, **case.held}
    if K.apheresis in kinds and status == S.apheresis_scheduled and case.apheresis_at:
        title = f"Apheresis of {coi} at {names.get(case.site, case.site)}"
        yield Draft(K.apheresis, case.apheresis_at, case.titled(title), params=site, **base)
    factory = {"site": plan.factory, **case.held}
    where = names.get(plan.factory, plan.factory)
    if K.manufacturing_start in kinds and status in BEFORE_START:
        title = f"Start manufacturing {coi} at {where}"
        start_at = plan.due("manufacturing_started")
        yield Draft(K.manufacturing_start, start_at, case.titled(title), params=factory, **base)
    if K.qc_release in kinds and status in BEFORE_RELEASE:
        title = f"QC release of {coi} due at {where}"
        due = plan.due("qc_released")
        yield Draft(K.qc_release, due, case.titled(title), params=factory, **base)
    planned = case.planned_infusion_at
    if K.thaw in kinds and status in BEFORE_THAW and planned is not None:
        lead = timedelta(minutes=product.thaw_to_infusion_start_min if product else 30)
        title = f"Thaw {coi} for its planned infusion"
        yield Draft(K.thaw, planned - lead, case.titled(title), params=site, **base)
    if K.infusion in kinds and status in (*BEFORE_THAW, S.thawed):
        infuse_at = planned
        thawed_at = plan.actual.get("thawed")
        if status == S.thawed and thawed_at is not None and product is not None:
            # The thawed product's own clock: infusion must start within its window.
            window_end = thawed_at + timedelta(minutes=product.thaw_to_infusion_start_min)
            infuse_at = min(infuse_at, window_end) if infuse_at is not None else window_end
        if infuse_at is not None:
            title = case.titled(f"Infuse {coi}")
            yield Draft(K.infusion, infuse_at, title, params=site, **base)


def _unbooked_pickup(case: CaseRow, direction: str, plan: Plan) -> Draft:
    """A case ready to leave with no shipment created yet: the pickup is still owed."""
    coi = display(case.coi)
    title = case.titled(f"Create the shipment of {coi} for its pickup")
    return Draft(
        K.pickup,
        plan.due(PICKED_UP[direction]),
        title,
        case_id=case.id,
        coi=case.coi,
        params={"direction": direction, "unbooked": True, **case.held},
    )


def _shipment_tasks(
    actor: Principal,
    shipment: Shipment,
    case: CaseRow,
    plan: Plan,
    kinds: frozenset[TaskKind],
    names: dict[str, str],
) -> Iterable[Draft]:
    coi = display(case.coi)
    origin = names.get(shipment.origin, shipment.origin)
    destination = names.get(shipment.destination, shipment.destination)
    base = {"case_id": case.id, "shipment_id": shipment.id, "coi": case.coi}
    params = {
        "direction": shipment.direction,
        "origin": shipment.origin,
        "destination": shipment.destination,
        **case.held,
    }
    direction = shipment.direction
    if shipment.status == ShipmentStatus.created:
        if K.pickup in kinds and direction in PICKUPS.get(actor.role, ()):
            title = f"Pickup of {coi} at {origin} for {destination}"
            due = plan.due(PICKED_UP[direction])
            yield Draft(K.pickup, due, case.titled(title), params=params, **base)
    elif K.arrival in kinds and direction in ARRIVALS.get(actor.role, ()):
        title = f"{coi} expected at {destination} from {origin}"
        due = plan.due(routes.ARRIVAL[direction])
        yield Draft(K.arrival, due, case.titled(title), params=params, **base)
