"""Raising, acknowledging and resolving alerts: one open alert per rule and subject."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.errors import Conflict, NotFound
from app.services.alerts.queries import visible
from app.services.audit import chain as audit
from app.services.webhooks import outbox as webhooks
from models.alert import Alert, AlertKind, AlertPublic, AlertStatus, Severity
from models.principal import Principal
from models.webhook import WebhookEvent


def raise_alert(
    session: Session,
    *,
    kind: AlertKind,
    severity: Severity,
    message: str,
    now: datetime,
    case_id: str | None = None,
    shipment_id: str | None = None,
    dedupe_key: str | None = None,
    data: dict[str, Any] | None = None,
) -> Alert:
    """Open an alert, or refresh the unresolved one this rule already raised for the subject."""
    if dedupe_key is not None:
        existing = session.exec(
            select(Alert)
            .where(Alert.dedupe_key == dedupe_key, col(Alert.status) != AlertStatus.resolved)
            .with_for_update(key_share=True)
        ).first()
        if existing is not None:
            # Scheduled sweeps refresh alerts often; only a visible change is news to subscribers.
            changed = (existing.message, existing.severity) != (message, severity.value)
            existing.message = message
            existing.severity = severity.value
            existing.data = data
            existing.updated_at = now
            session.add(existing)
            session.flush()
            if changed:
                webhooks.enqueue_for_alert(
                    session, alert=existing, event=WebhookEvent.alert_updated, now=now
                )
            return existing
    alert = Alert(
        kind=kind.value,
        severity=severity.value,
        message=message,
        case_id=case_id,
        shipment_id=shipment_id,
        dedupe_key=dedupe_key,
        data=data,
        created_at=now,
        updated_at=now,
    )
    session.add(alert)
    session.flush()
    webhooks.enqueue_for_alert(session, alert=alert, event=WebhookEvent.alert_opened, now=now)
    return alert


def resolve(session: Session, *, alert: Alert, now: datetime) -> None:
    """Close an alert whose cause is gone, and tell the webhook subscribers."""
    if alert.status == AlertStatus.resolved:
        return
    alert.status = AlertStatus.resolved.value
    alert.resolved_at = now
    alert.updated_at = now
    session.add(alert)
    session.flush()
    webhooks.enqueue_for_alert(session, alert=alert, event=WebhookEvent.alert_resolved, now=now)


def resolve_key(session: Session, *, dedupe_key: str, now: datetime) -> None:
    """Close the unresolved alerts one rule raised for one subject."""
    for alert in session.exec(
        select(Alert).where(
            Alert.dedupe_key == dedupe_key, col(Alert.status) != AlertStatus.resolved
        )
    ):
        resolve(session, alert=alert, now=now)


def acknowledge(
    session: Session, *, actor: Principal, alert_id: int, note: str | None, now: datetime
) -> AlertPublic:
    """Take an open alert in hand (it stays visible until its cause is resolved); audited."""
    alert = session.exec(
        select(Alert).where(Alert.id == alert_id, visible(actor)).with_for_update(key_share=True)
    ).first()
    if alert is None:
        raise NotFound("no such alert")
    if alert.status != AlertStatus.open:
        raise Conflict(f"the alert is already {alert.status}", code="alert-not-open")
    alert.status = AlertStatus.acknowledged.value
    alert.acknowledged_at = now
    alert.acknowledged_by = actor.name
    alert.ack_note = note
    alert.updated_at = now
    session.add(alert)
    session.flush()
    webhooks.enqueue_for_alert(session, alert=alert, event=WebhookEvent.alert_acknowledged, now=now)
    audit.append(
        session,
        actor=actor,
        action="alert.acknowledged",
        entity="alert",
        entity_id=str(alert.id),
        at=now,
        before={"status": AlertStatus.open.value},
        after={"status": alert.status},
        reason=note,
    )
    return AlertPublic.model_validate(alert)
