"""Webhooks (admin): subscriptions, the delivery outbox and its dead letters."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from sqlmodel import and_, col, or_, select

from app.deps import IdempotencyDep, NowDep, SessionDep, committing, replay_response, require_roles
from app.errors import Invalid
from app.routers.pagination import CursorQuery, LimitQuery, decode_cursor, encode_cursor
from app.services.webhooks import outbox as webhooks
from models.base import Page
from models.principal import Principal, Role
from models.webhook import (
    DeliveryPublic,
    DeliveryStatus,
    Webhook,
    WebhookCreate,
    WebhookDelivery,
    WebhookPublic,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
Admin = Annotated[Principal, require_roles(Role.admin)]
DeliveryId = Annotated[str, Path(min_length=1, max_length=32)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookPublic)
def create_webhook(
    body: WebhookCreate, session: SessionDep, admin: Admin, now: NowDep, idem: IdempotencyDep
) -> Any:
    """Subscribe a URL to alert events; each delivery is signed with the given secret."""
    with committing(session):
        if (stored := idem.begin(session)) is not None:
            return replay_response(stored)
        webhook = webhooks.subscribe(
            session,
            actor=admin,
            url=str(body.url),
            kinds=body.kinds,
            secret=body.secret,
            now=now,
        )
        out = WebhookPublic.model_validate(webhook)
        idem.finish(session, status_code=201, body=out.model_dump(mode="json"))
    return out


@router.get("", response_model=Page[WebhookPublic])
def list_webhooks(session: SessionDep, _admin: Admin) -> Any:
    """All webhook subscriptions (secrets are never shown)."""
    rows = session.exec(select(Webhook).order_by(col(Webhook.created_at), col(Webhook.id))).all()
    return {"items": rows, "next_cursor": None}


@router.get("/deliveries", response_model=Page[DeliveryPublic])
def list_deliveries(
    session: SessionDep,
    _admin: Admin,
    status: DeliveryStatus | None = None,
    webhook_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Any:
    """Outbox deliveries, newest first; `status=dead` lists the dead letters."""
    stmt = select(WebhookDelivery)
    if status:
        stmt = stmt.where(WebhookDelivery.status == status.value)
    if webhook_id:
        stmt = stmt.where(WebhookDelivery.webhook_id == webhook_id)
    if cursor:
        created_at, delivery_id = _after(cursor)
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
    rows = list(session.exec(stmt.order_by(*order).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(last.created_at.isoformat(), last.id)
    return {"items": rows[:limit], "next_cursor": next_cursor}


@router.post("/deliveries/{delivery_id}/retry", response_model=DeliveryPublic)
def retry_delivery(delivery_id: DeliveryId, session: SessionDep, admin: Admin, now: NowDep) -> Any:
    """Move a dead delivery back to pending, with a fresh set of attempts."""
    with committing(session):
        delivery = webhooks.retry_dead(session, actor=admin, delivery_id=delivery_id, now=now)
        out = DeliveryPublic.model_validate(delivery)
    return out


def _after(cursor: str) -> tuple[datetime, str]:
    created_at, delivery_id = decode_cursor(cursor, 2)
    try:
        at = datetime.fromisoformat(str(created_at))
    except ValueError:
        at = None
    if at is None or at.tzinfo is None or not isinstance(delivery_id, str):
        raise Invalid("malformed cursor", errors=[{"loc": "query/cursor", "msg": "malformed"}])
    return at, delivery_id
