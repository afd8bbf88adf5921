"""The alerts a caller may see: the scope, the paged list, and the overview's counts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection

from sqlalchemy import ColumnElement, case, func
from sqlmodel import Session, col, or_, select

from app.pagination import cursor_int, encode_cursor
from app.services.access.scope import case_scope, shipment_scope
from models.alert import Alert, AlertKind, AlertPublic, AlertStatus, Severity
from models.base import Page
from models.case import Case
from models.principal import Principal, Role
from models.shipment import Shipment

# Most severe first: the order of the overview's counts and lists.
SEVERITIES = [s.value for s in (Severity.critical, Severity.major, Severity.warning, Severity.info)]


def visible(actor: Principal) -> ColumnElement[bool]:
    """SQL condition on ``Alert``: alerts on the cases and shipments the actor may see."""
    cases = select(Case.id).where(case_scope(actor))
    shipments = select(Shipment.id).where(shipment_scope(actor))
    if actor.role == Role.courier:
        return col(Alert.shipment_id).in_(shipments)
    return or_(col(Alert.case_id).in_(cases), col(Alert.shipment_id).in_(shipments))


def list_for(
    session: Session,
    *,
    actor: Principal,
    status: AlertStatus | None,
    kind: AlertKind | None,
    severity: Severity | None,
    case_id: str | None,
    limit: int,
    cursor: str | None,
) -> Page[AlertPublic]:
    """Alerts on the cases and shipments the actor may see, newest first, one page."""
    stmt = select(Alert).where(visible(actor))
    if status:
        stmt = stmt.where(Alert.status == status.value)
    if kind:
        stmt = stmt.where(Alert.kind == kind.value)
    if severity:
        stmt = stmt.where(Alert.severity == severity.value)
    if case_id:
        stmt = stmt.where(Alert.case_id == case_id)
    if cursor:
        stmt = stmt.where(col(Alert.id) < cursor_int(cursor))
    rows = list(session.exec(stmt.order_by(col(Alert.id).desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return Page[AlertPublic](
        items=[AlertPublic.model_validate(a) for a in rows[:limit]], next_cursor=next_cursor
    )


def open_counts(session: Session, *, actor: Principal) -> dict[str, int]:
    """Open alerts per severity within the actor's scope, most severe first."""
    rows = session.exec(
        select(Alert.severity, func.count())
        .where(visible(actor), Alert.status == AlertStatus.open.value)
        .group_by(col(Alert.severity))
    ).all()
    counts = dict.fromkeys(SEVERITIES, 0)
    counts.update({severity: int(n) for severity, n in rows})
    return counts


def most_severe(session: Session, *, actor: Principal, status: str, limit: int) -> list[Alert]:
    """Alerts in the actor's scope with this status, the most severe and newest first."""
    rank = case({s: i for i, s in enumerate(SEVERITIES)}, value=col(Alert.severity), else_=9)
    return list(
        session.exec(
            select(Alert)
            .where(visible(actor), Alert.status == status)
            .order_by(rank, col(Alert.id).desc())
            .limit(limit)
        )
    )


def of_case(session: Session, *, actor: Principal, case_id: str) -> list[Alert]:
    """Every alert of one case the actor may see, newest first."""
    return list(
        session.exec(
            select(Alert)
            .where(Alert.case_id == case_id, visible(actor))
            .order_by(col(Alert.id).desc())
        )
    )


def unresolved_severities(
    session: Session, *, shipment_ids: Collection[str]
) -> dict[str, list[str]]:
    """The severities of the unresolved alerts of each shipment."""
    out: dict[str, list[str]] = defaultdict(list)
    for shipment_id, severity in session.exec(
        select(Alert.shipment_id, Alert.severity).where(
            col(Alert.shipment_id).in_(shipment_ids),
            col(Alert.status) != AlertStatus.resolved.value,
        )
    ):
        if shipment_id is not None:
            out[shipment_id].append(severity)
    return out
