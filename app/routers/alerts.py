"""Alerts: list within scope, acknowledge."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlmodel import col, or_, select

from app.deps import NowDep, SessionDep, committing, require_roles
from app.errors import Conflict, NotFound
from app.routers.pagination import CursorQuery, IntId, LimitQuery, cursor_int, encode_cursor
from app.services.access.scope import case_scope, shipment_scope
from app.services.alerts import lifecycle as alerts
from app.services.audit import chain as audit
from models.alert import Alert, AlertAck, AlertKind, AlertPublic, AlertStatus, Severity
from models.base import Page
from models.case import Case
from models.principal import Principal, Role
from models.shipment import Shipment

router = APIRouter(prefix="/alerts", tags=["alerts"])
ALERT_ROLES = (Role.admin, Role.qa, Role.coordinator, Role.manufacturer, Role.courier)
Watcher = Annotated[Principal, require_roles(*ALERT_ROLES)]


def _scope(principal: Principal) -> Any:
    cases = select(Case.id).where(case_scope(principal))
    shipments = select(Shipment.id).where(shipment_scope(principal))
    if principal.role == Role.courier:
        return col(Alert.shipment_id).in_(shipments)
    return or_(col(Alert.case_id).in_(cases), col(Alert.shipment_id).in_(shipments))


@router.get("", response_model=Page[AlertPublic])
def list_alerts(
    session: SessionDep,
    principal: Watcher,
    status: AlertStatus | None = None,
    kind: AlertKind | None = None,
    severity: Severity | None = None,
    case_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Any:
    """Alerts on the cases and shipments the caller may see, newest first."""
    stmt = select(Alert).where(_scope(principal))
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
    return {"items": rows[:limit], "next_cursor": next_cursor}


@router.post("/{alert_id}/ack", response_model=AlertPublic)
def acknowledge(
    alert_id: IntId,
    body: AlertAck,
    session: SessionDep,
    principal: Watcher,
    now: NowDep,
) -> Any:
    """Acknowledge an open alert (it stays visible until its cause is resolved)."""
    with committing(session):
        alert = session.exec(
            select(Alert)
            .where(Alert.id == alert_id, _scope(principal))
            .with_for_update(key_share=True)
        ).first()
        if alert is None:
            raise NotFound("no such alert")
        if alert.status != AlertStatus.open:
            raise Conflict(f"the alert is already {alert.status}", code="alert-not-open")
        alert.status = AlertStatus.acknowledged.value
        alert.acknowledged_at = now
        alert.acknowledged_by = principal.name
        alert.ack_note = body.note
        alert.updated_at = now
        session.add(alert)
        session.flush()
        alerts.acknowledged(session, alert=alert, now=now)
        audit.append(
            session,
            actor=principal,
            action="alert.acknowledged",
            entity="alert",
            entity_id=str(alert.id),
            at=now,
            before={"status": AlertStatus.open.value},
            after={"status": alert.status},
            reason=body.note,
        )
        out = AlertPublic.model_validate(alert)
    return out
