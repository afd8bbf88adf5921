"""Webhooks (admin): subscriptions, the delivery outbox and its dead letters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import JSONResponse

from app.deps import (
    IdempotencyDep,
    NowDep,
    SessionDep,
    SettingsDep,
    committing,
    created_once,
    require_roles,
)
from app.pagination import CursorQuery, LimitQuery, page_of, time_cursor
from app.services.webhooks import manage, reads
from models.base import Page
from models.principal import Principal, Role
from models.webhook import (
    DeliveryPublic,
    DeliveryStatus,
    SecretRotation,
    WebhookCreate,
    WebhookPublic,
    WebhookSecret,
    WebhookUpdate,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
Admin = Annotated[Principal, require_roles(Role.admin)]
DeliveryId = Annotated[str, Path(min_length=1, max_length=32)]
WebhookId = Annotated[str, Path(min_length=1, max_length=32)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookPublic)
def create_webhook(
    body: WebhookCreate,
    session: SessionDep,
    admin: Admin,
    now: NowDep,
    idem: IdempotencyDep,
    settings: SettingsDep,
) -> WebhookPublic | JSONResponse:
    """Subscribe a public URL to alert and case events; each delivery is signed with the
    given secret. A webhook scoped to sites receives only their cases."""

    def subscribe() -> WebhookPublic:
        webhook = manage.subscribe(
            session,
            actor=admin,
            url=str(body.url),
            kinds=body.kinds,
            sites=body.sites,
            secret=body.secret,
            allow_private=settings.webhook_allow_private,
            now=now,
        )
        return WebhookPublic.model_validate(webhook)

    return created_once(session, idem, subscribe)


@router.get("", response_model=Page[WebhookPublic])
def list_webhooks(session: SessionDep, _admin: Admin) -> Page[WebhookPublic]:
    """All webhook subscriptions but deleted ones (secrets are never shown)."""
    rows = reads.list_webhooks(session)
    return Page(items=[WebhookPublic.model_validate(w) for w in rows], next_cursor=None)


@router.patch("/{webhook_id}", response_model=WebhookPublic)
def update_webhook(
    webhook_id: WebhookId, body: WebhookUpdate, session: SessionDep, admin: Admin, now: NowDep
) -> WebhookPublic:
    """Pause or resume a webhook, or replace its kinds or sites."""
    with committing(session):
        hook = manage.update(
            session,
            actor=admin,
            webhook_id=webhook_id,
            active=body.active,
            kinds=body.kinds,
            sites=body.sites,
            now=now,
        )
        out = WebhookPublic.model_validate(hook)
    return out


@router.post("/{webhook_id}/rotate-secret", response_model=WebhookSecret)
def rotate_secret(
    webhook_id: WebhookId, body: SecretRotation, session: SessionDep, admin: Admin, now: NowDep
) -> WebhookSecret:
    """Replace the signing secret; the new one (given, or generated) is shown this once."""
    with committing(session):
        hook, secret = manage.rotate_secret(
            session, actor=admin, webhook_id=webhook_id, secret=body.secret, now=now
        )
    return WebhookSecret(id=hook.id, secret=secret)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(
    webhook_id: WebhookId, session: SessionDep, admin: Admin, now: NowDep
) -> Response:
    """Delete a webhook: it stops at once; its deliveries stay on record."""
    with committing(session):
        manage.delete(session, actor=admin, webhook_id=webhook_id, now=now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


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
        delivery = manage.retry_dead(session, actor=admin, delivery_id=delivery_id, now=now)
        out = DeliveryPublic.model_validate(delivery)
    return out
