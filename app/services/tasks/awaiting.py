"""Tasks that wait for a person: open alerts, unsigned excursions, products on hold.

Their ``due_at`` is the instant they started waiting, so the oldest come first.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func
from sqlmodel import Session, col, select

from app.services.access.scope import case_scope, shipment_scope
from app.services.alerts.queries import visible
from app.services.identity.coi import display
from app.services.journey.holds import ON_HOLD
from app.services.tasks.rules import QA_ALERT_SEVERITIES, Draft, held, titled
from app.times import as_utc, from_ms, to_ms
from models.alert import Alert, AlertStatus
from models.case import Case, ProductHold
from models.coldchain import Excursion
from models.principal import Principal, Role
from models.shipment import Shipment
from models.tasks import TaskKind

K = TaskKind


def alert_condition(actor: Principal) -> ColumnElement[bool]:
    """SQL condition on ``Alert``: open, unacknowledged alerts that need this actor.

    The same scope as ``GET /alerts``; QA is asked only about critical ones.
    """
    condition = and_(visible(actor), col(Alert.status) == AlertStatus.open.value)
    if actor.role == Role.qa:
        condition = and_(condition, col(Alert.severity).in_(QA_ALERT_SEVERITIES))
    return condition


def _cases(session: Session, case_ids: set[str]) -> dict[str, tuple[str, str | None]]:
    """Each case's COI and hold status."""
    if not case_ids:
        return {}
    rows = session.exec(
        select(Case.id, Case.coi, Case.hold_status).where(col(Case.id).in_(sorted(case_ids)))
    )
    return {case_id: (coi, hold) for case_id, coi, hold in rows}


def alerts(session: Session, *, actor: Principal, before: datetime, limit: int) -> Iterable[Draft]:
    """The oldest ``limit`` alerts needing the actor, raised before ``before``."""
    rows = session.exec(
        select(Alert, Shipment.case_id)
        .outerjoin(Shipment, col(Shipment.id) == col(Alert.shipment_id))
        .where(alert_condition(actor), col(Alert.created_at) < before)
        .order_by(col(Alert.created_at), col(Alert.id))
        .limit(limit)
    ).all()
    cases = _cases(session, {a.case_id or s for a, s in rows if a.case_id or s})
    for alert, shipment_case in rows:
        case_id = alert.case_id or shipment_case
        coi, hold = cases.get(case_id, (None, None)) if case_id else (None, None)
        words = alert.kind.replace("_", " ")
        subject = f" on {display(coi)}" if coi else ""
        yield Draft(
            K.alert,
            alert.created_at,
            titled(f"{alert.severity.capitalize()} alert{subject}: {words}", hold),
            case_id=case_id,
            shipment_id=alert.shipment_id,
            coi=coi,
            params={
                "alert_id": alert.id,
                "alert_kind": alert.kind,
                "severity": alert.severity,
                "code": alert.code,
                **held(hold),
            },
        )


def dispositions(
    session: Session, *, actor: Principal, before: datetime, limit: int
) -> Iterable[Draft]:
    """Closed excursions in scope that no QA signature has dispositioned yet."""
    rows = session.exec(
        select(Excursion, Shipment.case_id, Case.coi, Case.hold_status)
        .join(Shipment, col(Shipment.id) == col(Excursion.shipment_id))
        .join(Case, col(Case.id) == col(Shipment.case_id))
        .where(
            shipment_scope(actor),
            col(Excursion.status) == "closed",
            col(Excursion.disposition).is_(None),
            col(Excursion.ended_ms) < to_ms(before),
        )
        .order_by(col(Excursion.ended_ms), col(Excursion.id))
        .limit(limit)
    ).all()
    for exc, case_id, coi, hold in rows:
        title = f"Sign a disposition for the {exc.severity} excursion of {display(coi)}"
        yield Draft(
            K.disposition,
            from_ms(exc.ended_ms if exc.ended_ms is not None else exc.last_ms),
            titled(title, hold),
            case_id=case_id,
            shipment_id=exc.shipment_id,
            coi=coi,
            params={"excursion_id": exc.id, "severity": exc.severity, **held(hold)},
        )


def holds(session: Session, *, actor: Principal, before: datetime, limit: int) -> Iterable[Draft]:
    """Products on hold in scope, since their latest hold was placed."""
    placed = (
        select(ProductHold.case_id, func.max(ProductHold.at).label("since"))
        .where(ProductHold.action == "place")
        .group_by(col(ProductHold.case_id))
        .subquery()
    )
    rows = session.exec(
        select(Case.id, Case.coi, placed.c.since)
        .join(placed, placed.c.case_id == col(Case.id))
        .where(case_scope(actor), col(Case.hold_status) == ON_HOLD)
        .order_by(placed.c.since, col(Case.id))
        .limit(limit)
    ).all()
    for case_id, coi, since in rows:
        # An aggregate skips the column type: SQLite gives naive text back.
        if as_utc(since) >= before:
            continue
        yield Draft(
            K.hold_review,
            as_utc(since),
            f"Assess the product of {display(coi)} on hold",
            case_id=case_id,
            coi=coi,
        )
