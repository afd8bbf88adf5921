"""Webhook subscriptions (admin): subscribe, change, rotate the secret, delete, retry.

Every change is audited; no secret and no credential ever enters the audit log. URLs are
checked here (credentials, non-public destinations) and again at every connection.
"""

from __future__ import annotations

import secrets as tokens
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.errors import Conflict, Invalid, NotFound
from app.services.audit import chain as audit
from integrations.webhooks import UnsafeTarget, check_url
from models.principal import Principal
from models.reference import Site
from models.webhook import DeliveryStatus, Webhook, WebhookDelivery, WebhookKind


def _check_target(url: str, *, allow_private: bool) -> None:
    try:
        check_url(url, allow_private=allow_private)
    except UnsafeTarget as exc:
        raise Invalid(
            f"webhook URL refused: {exc}",
            code="webhook-url-refused",
            errors=[{"loc": "body/url", "msg": str(exc)}],
        ) from None


def _known_sites(session: Session, sites: Sequence[str]) -> list[str]:
    wanted = sorted(set(sites))
    if wanted:
        found = set(session.exec(select(Site.code).where(col(Site.code).in_(wanted))).all())
        unknown = [s for s in wanted if s not in found]
        if unknown:
            raise Invalid(
                f"unknown site {unknown[0]!r}", errors=[{"loc": "body/sites", "msg": "unknown"}]
            )
    return wanted


def _view(hook: Webhook) -> dict[str, Any]:
    """What the audit log keeps of a subscription: never its secret."""
    return {"url": hook.url, "kinds": hook.kinds, "sites": hook.sites, "active": hook.active}


def subscribe(
    session: Session,
    *,
    actor: Principal,
    url: str,
    kinds: Sequence[WebhookKind],
    sites: Sequence[str],
    secret: str,
    allow_private: bool,
    now: datetime,
) -> Webhook:
    """Register a subscriber for alert and case events (an empty ``kinds`` means all, empty
    ``sites`` every site)."""
    _check_target(url, allow_private=allow_private)
    webhook = Webhook(
        url=url,
        kinds=sorted({WebhookKind(k).value for k in kinds}),
        sites=_known_sites(session, sites),
        secret=secret,
        active=True,
        created_at=now,
        created_by=actor.name,
    )
    session.add(webhook)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="webhook.created",
        entity="webhook",
        entity_id=webhook.id,
        at=now,
        after=_view(webhook),
    )
    return webhook


def _live(session: Session, webhook_id: str) -> Webhook:
    hook = session.exec(
        select(Webhook).where(Webhook.id == webhook_id).with_for_update(key_share=True)
    ).first()
    if hook is None or hook.deleted_at is not None:
        raise NotFound("no such webhook")
    return hook


def update(
    session: Session,
    *,
    actor: Principal,
    webhook_id: str,
    active: bool | None,
    kinds: Sequence[WebhookKind] | None,
    sites: Sequence[str] | None,
    now: datetime,
) -> Webhook:
    """Pause or resume a subscription, or replace its kinds or sites."""
    hook = _live(session, webhook_id)
    before = _view(hook)
    if active is not None:
        hook.active = active
    if kinds is not None:
        hook.kinds = sorted({WebhookKind(k).value for k in kinds})
    if sites is not None:
        hook.sites = _known_sites(session, sites)
    session.add(hook)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="webhook.updated",
        entity="webhook",
        entity_id=hook.id,
        at=now,
        before=before,
        after=_view(hook),
    )
    return hook


def rotate_secret(
    session: Session, *, actor: Principal, webhook_id: str, secret: str | None, now: datetime
) -> tuple[Webhook, str]:
    """Replace the signing secret (a generated one unless given); the caller shows it once.

    Pending deliveries are signed with the new secret: signing happens at each attempt.
    """
    hook = _live(session, webhook_id)
    hook.secret = secret if secret is not None else tokens.token_urlsafe(32)
    session.add(hook)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="webhook.secret_rotated",
        entity="webhook",
        entity_id=hook.id,
        at=now,
        after={"generated": secret is None},
    )
    return hook, hook.secret


def delete(session: Session, *, actor: Principal, webhook_id: str, now: datetime) -> None:
    """Stop a subscription for good: inactive, its secret wiped, its pending deliveries dead.

    The row stays (soft delete): its deliveries say what was sent where, and they are kept
    for the audit trail; a hard delete would have to delete them too.
    """
    hook = _live(session, webhook_id)
    before = _view(hook)
    hook.active = False
    hook.secret = ""
    hook.deleted_at = now
    session.add(hook)
    pending = session.exec(
        select(WebhookDelivery).where(
            WebhookDelivery.webhook_id == hook.id,
            WebhookDelivery.status == DeliveryStatus.pending,
        )
    ).all()
    for delivery in pending:
        delivery.status = DeliveryStatus.dead.value
        delivery.last_error = "webhook deleted"
        session.add(delivery)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="webhook.deleted",
        entity="webhook",
        entity_id=hook.id,
        at=now,
        before=before,
        after={**_view(hook), "pending_cancelled": len(pending)},
    )


def retry_dead(
    session: Session, *, actor: Principal, delivery_id: str, now: datetime
) -> WebhookDelivery:
    """Put a dead delivery back in the outbox with a fresh set of attempts."""
    delivery = session.exec(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .with_for_update(key_share=True)
    ).first()
    if delivery is None:
        raise NotFound("no such delivery")
    if delivery.status != DeliveryStatus.dead:
        raise Conflict(
            f"only a dead delivery can be retried; this one is {delivery.status}",
            code="delivery-not-dead",
        )
    before = {
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
    }
    delivery.status = DeliveryStatus.pending.value
    delivery.attempts = 0
    delivery.next_attempt_at = now
    session.add(delivery)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="webhook.delivery_retried",
        entity="webhook_delivery",
        entity_id=delivery.id,
        at=now,
        before=before,
        after={"status": delivery.status, "attempts": delivery.attempts},
        reason="dead letter put back in the outbox by an admin",
    )
    return delivery
