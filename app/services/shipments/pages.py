"""Read models of shipments for the workspace pages: one shipment, a case's, those in transit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import true
from sqlmodel import Session, col, select

from app.errors import NotFound
from app.services.access.scope import shipment_scope
from app.services.alerts import queries as alert_queries
from app.services.coldchain import engine as coldchain
from app.services.delays import routes
from app.services.identity.coi import display
from models.alert import Severity
from models.case import Case
from models.principal import Principal, Role
from models.reference import Profile
from models.shipment import Shipment, ShipmentStatus

SERIOUS = frozenset({Severity.critical.value, Severity.major.value})


def visible_shipment(session: Session, *, actor: Principal, shipment_id: str) -> Shipment:
    """The shipment if it is in the actor's scope; 404 otherwise, as in the API."""
    shipment = session.exec(
        select(Shipment).where(Shipment.id == shipment_id, shipment_scope(actor))
    ).first()
    if shipment is None:
        raise NotFound("no such shipment")
    return shipment


def profile_of(session: Session, *, shipment: Shipment) -> Profile:
    """The temperature profile a shipment travels under."""
    profile = session.get(Profile, shipment.profile)
    if profile is None:  # a foreign key guarantees it
        raise RuntimeError(f"inconsistent data: profile {shipment.profile} missing")
    return profile


def of_case(session: Session, *, case_id: str, in_transit: bool = False) -> list[Shipment]:
    """A case's shipments in the order they were created (only those moving, if asked)."""
    stmt = select(Shipment).where(Shipment.case_id == case_id)
    if in_transit:
        stmt = stmt.where(Shipment.status == ShipmentStatus.in_transit.value)
    return list(session.exec(stmt.order_by(col(Shipment.created_at))))


@dataclass
class InTransit:
    shipment: Shipment
    coi: str | None
    route: str
    profile: Profile
    last_t: datetime | None
    last_c: float | None
    since: timedelta
    eta: datetime | None  # the predicted arrival, in the past when the shipment is late
    signal: str  # ok | watch | alarm
    reasons: list[str]
    on_hold: bool = False  # the case's product is on hold: do not infuse


def _signal(
    summary: dict[str, Any],
    unresolved: list[str],
    since: timedelta,
    profile: Profile,
) -> tuple[str, list[str]]:
    """Status colour from what the cold-chain services and alerts already say."""
    reasons: list[str] = []
    if summary["open"]:
        reasons.append("open_excursion")
    if any(s in SERIOUS for s in unresolved):
        reasons.append("serious_alert")
    if reasons:
        return "alarm", reasons
    if since > timedelta(minutes=profile.max_gap_min):
        reasons.append("no_recent_reading")
    if unresolved:
        reasons.append("alert")
    if summary["count"]:
        reasons.append("past_excursion")
    return ("watch" if reasons else "ok"), reasons


def in_transit(session: Session, *, actor: Principal, now: datetime) -> list[InTransit]:
    """Shipments in transit within scope: latest temperature, its age, ETA and a colour."""
    # A viewer sees every shipment's signal, never a COI (counts only on its page).
    scope = true() if actor.role == Role.viewer else shipment_scope(actor)
    shipments = list(
        session.exec(
            select(Shipment)
            .where(Shipment.status == ShipmentStatus.in_transit.value, scope)
            .order_by(col(Shipment.picked_up_at))
        )
    )
    if not shipments:
        return []
    case_ids = {s.case_id for s in shipments}
    cases = {c.id: c for c in session.exec(select(Case).where(col(Case.id).in_(case_ids)))}
    profiles = {p.code: p for p in session.exec(select(Profile))}
    models = routes.load_models(session)
    unresolved = alert_queries.unresolved_severities(
        session, shipment_ids=[s.id for s in shipments]
    )
    out = []
    for s in shipments:
        case = cases[s.case_id]
        profile = profiles[s.profile]
        last = coldchain.last_reading(session, shipment_id=s.id)
        last_t = last["t"] if last and isinstance(last["t"], datetime) else None
        since = now - (last_t or s.picked_up_at or now)
        summary = coldchain.summary(session, shipment=s, profile=profile)
        signal, reasons = _signal(summary, unresolved.get(s.id, []), since, profile)
        last_c = last["temp_c"] if last else None
        out.append(
            InTransit(
                shipment=s,
                coi=display(case.coi) if actor.role != Role.viewer else None,
                route=case.route,
                profile=profile,
                last_t=last_t,
                last_c=float(last_c) if isinstance(last_c, int | float) else None,
                since=since,
                eta=routes.predicted_arrival(session, shipment=s, model=models[case.route]),
                signal=signal,
                reasons=reasons,
                on_hold=case.hold_status == "on_hold",
            )
        )
    order = {"alarm": 0, "watch": 1, "ok": 2}
    out.sort(key=lambda row: order[row.signal])
    return out
