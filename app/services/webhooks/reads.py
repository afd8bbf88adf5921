"""Reading the webhook subscriptions and the delivery outbox back (admin)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, and_, col, or_, select

from models.webhook import DeliveryStatus, Webhook, WebhookDelivery


def list_webhooks(session: Session) -> list[Webhook]:
    """Every subscription but deleted ones, oldest first."""
    order = (col(Webhook.created_at), col(Webhook.id))
    live = select(Webhook).where(col(Webhook.deleted_at).is_(None))
    return list(session.exec(live.order_by(*order)))


def list_deliveries(
    session: Session,
    *,
    status: DeliveryStatus | None,
    webhook_id: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[WebhookDelivery]:
    """Outbox deliveries, newest first, after a keyset; one row beyond ``limit`` tells the
    caller that another page follows."""
    stmt = select(WebhookDelivery)
    if status:
        stmt = stmt.where(WebhookDelivery.status == status.value)
    if webhook_id:
        stmt = stmt.where(WebhookDelivery.webhook_id == webhook_id)
    if after is not None:
        created_at, delivery_id = after
        stmt = stmt.where(
            or_(
                col(WebhookDelivery.created_at) < created_at,
                and_(
                    col(WebhookDelivery.created_at) == created_at,
                    col(WebhookDelivery.id) < delivery_id,
                ),
            )
        )
    order = (col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id).desc())
    return list(session.exec(stmt.order_by(*order).limit(limit + 1)))
