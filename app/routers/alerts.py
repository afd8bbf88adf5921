"""Alerts: list within scope, acknowledge."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import NowDep, SessionDep, committing, require_roles
from app.pagination import CursorQuery, IntId, LimitQuery
from app.services import alerts
from app.services.access.scope import ALERT_WATCHERS
from models.alert import AlertAck, AlertKind, AlertPublic, AlertStatus, Severity
from models.base import Page
from models.principal import Principal

router = APIRouter(prefix="/alerts", tags=["alerts"])
Watcher = Annotated[Principal, require_roles(*ALERT_WATCHERS)]


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
) -> Page[AlertPublic]:
    """Alerts on the cases and shipments the caller may see, newest first."""
    return alerts.list_for(
        session,
        actor=principal,
        status=status,
        kind=kind,
        severity=severity,
        case_id=case_id,
        limit=limit,
        cursor=cursor,
    )


@router.post("/{alert_id}/ack", response_model=AlertPublic)
def acknowledge(
    alert_id: IntId,
    body: AlertAck,
    session: SessionDep,
    principal: Watcher,
    now: NowDep,
) -> AlertPublic:
    """Acknowledge an open alert (it stays visible until its cause is resolved)."""
    with committing(session):
        out = alerts.acknowledge(
            session, actor=principal, alert_id=alert_id, note=body.note, now=now
        )
    return out
