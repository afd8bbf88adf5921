"""Reading the outbox back: admins' delivery list (dead letters), an alert's notices."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, and_, col, or_, select

from app.errors import NotFound
from app.services.alerts.queries import visible
from integrations.notify import mask
from models.alert import Alert
from models.notification import Notification, NotificationPublic, NotificationStatus
from models.principal import Principal


def public(row: Notification) -> NotificationPublic:
    data = row.model_dump()
    data["target"] = mask(row.target)
    return NotificationPublic.model_validate(data)


def list_deliveries(
    session: Session,
    *,
    status: NotificationStatus | None,
    alert_id: int | None,
    principal_id: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Notification]:
    """Outbox rows, newest first, after a keyset; one row beyond ``limit`` means more."""
    stmt = select(Notification)
    if status:
        stmt = stmt.where(Notification.status == status.value)
    if alert_id is not None:
        stmt = stmt.where(Notification.alert_id == alert_id)
    if principal_id:
        stmt = stmt.where(Notification.principal_id == principal_id)
    if after is not None:
        created_at, row_id = after
        stmt = stmt.where(
            or_(
                col(Notification.created_at) < created_at,
                and_(col(Notification.created_at) == created_at, col(Notification.id) < row_id),
            )
        )
    order = (col(Notification.created_at).desc(), col(Notification.id).desc())
    return list(session.exec(stmt.order_by(*order).limit(limit + 1)))


def of_alert(session: Session, *, actor: Principal, alert_id: int) -> list[NotificationPublic]:
    """Who was told about an alert the actor may see, and how it went (oldest first)."""
    if session.exec(select(Alert.id).where(Alert.id == alert_id, visible(actor))).first() is None:
        raise NotFound("no such alert")
    rows = session.exec(
        select(Notification)
        .where(Notification.alert_id == alert_id)
        .order_by(col(Notification.created_at), col(Notification.id))
    )
    return [public(r) for r in rows]
