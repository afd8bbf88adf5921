"""Alerts: list within scope, acknowledge, resolve."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlmodel import Session

from app.deps import NowDep, SessionDep, SettingsDep, committing, require_roles, scoped_record
from app.pagination import CursorQuery, IntId, LimitQuery
from app.services import alerts
from app.services.access.scope import ALERT_WATCHERS
from app.services.alerts.lifecycle import RESOLVERS, scoped_alert
from models.alert import (
    Alert,
    AlertAck,
    AlertKind,
    AlertPublic,
    AlertResolve,
    AlertStatus,
    AlertStatusFilter,
    Severity,
)
from models.base import Page
from models.principal import Principal

router = APIRouter(prefix="/alerts", tags=["alerts"])
Watcher = Annotated[Principal, require_roles(*ALERT_WATCHERS)]
Resolver = Annotated[Principal, require_roles(*RESOLVERS)]
_RESOLVERS = frozenset(RESOLVERS)


def load_alert(alert_id: IntId, request: Request, session: SessionDep) -> Alert:
    """The alert in the resolver's scope (404 otherwise), before the body is judged."""

    def load(s: Session, principal: Principal, _lock: bool) -> Alert:
        return scoped_alert(s, actor=principal, alert_id=alert_id)

    return scoped_record(request, session, _RESOLVERS, load)


ResolvableAlert = Annotated[Alert, Depends(load_alert)]


@router.get("", response_model=Page[AlertPublic])
def list_alerts(
    session: SessionDep,
    principal: Watcher,
    status: AlertStatusFilter | None = None,
    kind: AlertKind | None = None,
    severity: Severity | None = None,
    case_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[AlertPublic]:
    """Alerts on the cases and shipments the caller may see, newest first (status=all: any)."""
    return alerts.list_for(
        session,
        actor=principal,
        status=None if status in (None, AlertStatusFilter.all) else AlertStatus(status),
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


@router.post("/{alert_id}/resolve", response_model=AlertPublic)
def resolve(
    alert: ResolvableAlert,
    body: AlertResolve,
    session: SessionDep,
    principal: Resolver,
    settings: SettingsDep,
    now: NowDep,
) -> AlertPublic:
    """Resolve an alert with a reason; a coi_mismatch needs QA's signature."""
    with committing(session):
        out = alerts.close(
            session,
            actor=principal,
            alert=alert,
            reason=body.reason,
            signature=body.signature,
            secret_key=settings.secret_key.get_secret_value(),
            now=now,
        )
    return out
