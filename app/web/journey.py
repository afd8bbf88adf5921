"""The case page: the journey against its targets, the label, the slot, custody and alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from app.services.alerts import queries as alert_queries
from app.services.capacity import slots as capacity
from app.services.delays import routes
from app.services.delays.targets import TARGETS
from app.services.identity.coi import display
from app.services.journey import cases, corrections, holds
from app.services.shipments import lifecycle as shipments
from app.services.shipments import pages as shipment_pages
from models.alert import Alert
from models.case import Case, CaseStatus
from models.principal import Principal
from models.reference import Product, Site

STOPPED = frozenset({CaseStatus.cancelled.value, CaseStatus.failed.value})
ARRIVAL = {"to_manufacturing": "received_at_manufacturing", "to_site": "received_at_site"}


@dataclass
class Step:
    name: str
    actual: datetime | None
    predicted: datetime | None
    target: datetime | None
    target_name: str | None
    state: str  # done | done_late | predicted | at_risk | late | not_reached


def _targets(
    model: routes.RouteModel, times: dict[str, datetime]
) -> dict[str, tuple[datetime, str]]:
    """The earliest target instant of each milestone, from when its start happened or will."""
    out: dict[str, tuple[datetime, str]] = {}
    for name, start, end, _ in TARGETS:
        limit = model.target(name)
        if limit is None or start not in times:
            continue
        at = times[start] + limit
        if end not in out or at < out[end][0]:
            out[end] = (at, name)
    return out


def timeline(
    session: Session, case: Case, *, now: datetime, slot_start: datetime | None
) -> list[Step]:
    """Every milestone of the route: done (on time or late), predicted, at risk or late."""
    model = routes.load_model(session, case.route)
    actual = routes.milestone_times(session, [case.id]).get(case.id, {})
    product = session.get(Product, case.product)
    eta: dict[str, datetime] = {}
    for shipment in shipment_pages.of_case(session, case_id=case.id, in_transit=True):
        when = routes.shipment_eta(session, shipment=shipment, model=model, now=now)
        if when is not None:
            eta[ARRIVAL[shipment.direction]] = when
    stopped = case.status in STOPPED
    predicted = (
        {}
        if stopped
        else routes.predict(
            model,
            actual,
            now=now,
            apheresis_at=case.apheresis_at,
            slot_start_at=slot_start,
            process_h=product.process_h if product else 168.0,
            eta=eta,
        )
    )
    targets = _targets(model, {**predicted, **actual})
    names = list(routes.SEQUENCE)
    if "thawed" in actual:
        names.insert(names.index("infused"), "thawed")
    steps = []
    for name in names:
        done = actual.get(name)
        guess = None if done else predicted.get(name)
        target_at, target_name = targets.get(name, (None, None))
        if done is not None:
            state = "done_late" if target_at and done > target_at else "done"
        elif guess is None:
            state = "not_reached"
        elif target_at and now > target_at:
            state = "late"
        elif target_at and guess > target_at:
            state = "at_risk"
        else:
            state = "predicted"
        steps.append(Step(name, done, guess, target_at, target_name, state))
    return steps


def build(
    session: Session, principal: Principal, case: Case, *, now: datetime, alerts_too: bool
) -> dict[str, Any]:
    milestones = cases.milestones(session, case_id=case.id)
    slot = capacity.current_slot(session, case_id=case.id)
    rows = shipment_pages.of_case(session, case_id=case.id)
    custody = {s.id: shipments.custody_chain(session, shipment_id=s.id) for s in rows}
    alerts: list[Alert] = []
    if alerts_too:
        alerts = alert_queries.of_case(session, actor=principal, case_id=case.id)
    steps = timeline(session, case, now=now, slot_start=slot.start_at if slot else None)
    infused = next((s for s in steps if s.name == "infused"), None)
    coi_code, coi_check = display(case.coi).rsplit(" ", 1)
    history = corrections.history_of(session, case_id=case.id)
    records = [corrections.public(m, history) for m in milestones]
    return {
        "case": case,
        "site": session.get(Site, case.site),
        "coi_code": coi_code,
        "coi_check": coi_check,
        "steps": steps,
        "eta_infusion": infused.actual or infused.predicted if infused else None,
        "milestones": milestones,
        "durations": cases.durations(milestones, now=now),
        "slot": slot,
        "shipments": rows,
        "custody": custody,
        "alerts": alerts,
        "day": timedelta(days=1),
        "hold": holds.state(session, case=case),
        "can_hold": principal.role in holds.HOLD_SIGNERS,
        "records": records,
        # The service's rule: who corrects which step (custody pickups are not corrected here).
        "correctable": {m.id for m in milestones if corrections.may_correct(principal, m)},
    }
