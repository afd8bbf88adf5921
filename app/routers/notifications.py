"""Notifications: a person's contact points and subscriptions, the outbox (admin) and
who was told about an alert."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.deps import (
    CurrentPrincipal,
    NowDep,
    SessionDep,
    SettingsDep,
    committing,
    require_roles,
)
from app.pagination import CursorQuery, IntId, LimitQuery, page_of, time_cursor
from app.services.access.scope import ALERT_WATCHERS
from app.services.notifications import preferences, reads
from models.base import Page
from models.notification import (
    NotificationPublic,
    NotificationSettingsIn,
    NotificationSettingsPublic,
    NotificationStatus,
)
from models.principal import Principal, Role

router = APIRouter(tags=["notifications"])
Admin = Annotated[Principal, require_roles(Role.admin)]
Watcher = Annotated[Principal, require_roles(*ALERT_WATCHERS)]
PrincipalId = Annotated[str, Path(max_length=32)]


@router.get("/me/notifications", response_model=NotificationSettingsPublic)
def my_notifications(session: SessionDep, me: CurrentPrincipal) -> NotificationSettingsPublic:
    """The caller's contact points (masked), subscriptions, quiet hours, language, digest."""
    return preferences.read(session, principal_id=me.id)


@router.put("/me/notifications", response_model=NotificationSettingsPublic)
def set_my_notifications(
    body: NotificationSettingsIn,
    session: SessionDep,
    me: CurrentPrincipal,
    settings: SettingsDep,
    now: NowDep,
) -> NotificationSettingsPublic:
    """Replace the caller's notification settings; alerts reach them only within their scope."""
    with committing(session):
        out = preferences.update(
            session,
            actor=me,
            principal_id=me.id,
            body=body,
            allow_private=settings.notify_allow_private,
            now=now,
        )
    return out


@router.get("/principals/{principal_id}/notifications", response_model=NotificationSettingsPublic)
def principal_notifications(
    principal_id: PrincipalId, session: SessionDep, _admin: Admin
) -> NotificationSettingsPublic:
    """Anyone's notification settings (admin; contacts masked)."""
    return preferences.read(session, principal_id=principal_id)


@router.put("/principals/{principal_id}/notifications", response_model=NotificationSettingsPublic)
def set_principal_notifications(
    principal_id: PrincipalId,
    body: NotificationSettingsIn,
    session: SessionDep,
    admin: Admin,
    settings: SettingsDep,
    now: NowDep,
) -> NotificationSettingsPublic:
    """Replace anyone's notification settings (admin)."""
    with committing(session):
        out = preferences.update(
            session,
            actor=admin,
            principal_id=principal_id,
            body=body,
            allow_private=settings.notify_allow_private,
            now=now,
        )
    return out


@router.get("/notifications/deliveries", response_model=Page[NotificationPublic])
def list_deliveries(
    session: SessionDep,
    _admin: Admin,
    status: NotificationStatus | None = None,
    alert_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    principal_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[NotificationPublic]:
    """The notification outbox, newest first; `status=dead` lists the dead letters."""
    rows = reads.list_deliveries(
        session,
        status=status,
        alert_id=alert_id,
        principal_id=principal_id,
        after=time_cursor(cursor),
        limit=limit,
    )
    items, next_cursor = page_of(rows, limit, lambda n: (n.created_at.isoformat(), n.id))
    return Page(items=[reads.public(n) for n in items], next_cursor=next_cursor)


@router.get("/alerts/{alert_id}/notifications", response_model=Page[NotificationPublic])
def alert_notifications(
    alert_id: IntId, session: SessionDep, watcher: Watcher
) -> Page[NotificationPublic]:
    """Who was told about an alert in the caller's scope, by subscription or escalation."""
    return Page(items=reads.of_alert(session, actor=watcher, alert_id=alert_id))
