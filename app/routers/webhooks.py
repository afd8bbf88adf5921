"""Webhooks (admin): subscriptions, the delivery outbox and its dead letters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse

from app.deps import IdempotencyDep, NowDep, SessionDep, committing, created_once, require_roles
from app.pagination import CursorQuery, LimitQuery, page_of, time_cursor
from app.services.webhooks import outbox as webhooks
from app.services.webhooks import reads
from models.base import Page
from models.principal import Principal, Role
from models.webhook import DeliveryPublic, DeliveryStatus, WebhookCreate, WebhookPublic

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
Admin = Annotated[Principal, require_roles(Role.admin)]
DeliveryId = Annotated[str, Path(min_length=1, max_length=32)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookPublic)
def create_webhook(
    body: WebhookCreate, session: SessionDep, admin: Admin, now: NowDep, idem: IdempotencyDep
) -> WebhookPublic | JSONResponse:
    """Subscribe a URL to alert events; each delivery is signed with the given secret."""

    def subscribe() -> WebhookPublic:
        webhook = webhooks.subscribe(
            session,
            actor=admin,
            url=str(body.url),
            kinds=body.kinds,
            secret=body.secret,
            now=now,
        )
        return WebhookPublic.model_validate(webhook)

    return created_once(session, idem, subscribe)


@router.get("", response_model=Page[WebhookPublic])
def list_webhooks(session: SessionDep, _admin: Admin) -> Page[WebhookPublic]:
    """All webhook subscriptions (secrets are never shown)."""
    rows = reads.list_webhooks(session)
    return Page(items=[WebhookPublic.model_validate(w) for w in rows], next_cursor=None)


@router.get("/deliveries", response_model=Page[DeliveryPublic])
def list_deliveries(
    session: SessionDep,
    _admin: Admin,
    status: DeliveryStatus | None = None,
    webhook_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[DeliveryPublic]:
    """Outbox deliveries, newest first; `status=dead` lists the dead letters."""
    rows = reads.list_deliveries(
        session, status=status, webhook_id=webhook_id, after=time_cursor(cursor), limit=limit
    )
    items, next_cursor = page_of(rows, limit, lambda d: (d.created_at.isoformat(), d.id))
    return Page(items=[DeliveryPublic.model_validate(d) for d in items], next_cursor=next_cursor)


@router.post("/deliveries/{delivery_id}/retry", response_model=DeliveryPublic)
def retry_delivery(
    delivery_id: DeliveryId, session: SessionDep, admin: Admin, now: NowDep
) -> DeliveryPublic:
    """Move a dead delivery back to pending, with a fresh set of attempts."""
    with committing(session):
        delivery = webhooks.retry_dead(session, actor=admin, delivery_id=delivery_id, now=now)
        out = DeliveryPublic.model_validate(delivery)
    return out
