"""The notification outbox: one row per message, person and contact point, written in the
transaction that caused it (an alert raised or worsened, an escalation step, a digest), so a
message is never lost and never sent for a change that rolled back. Each row is audited."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.services.audit import chain as audit
from app.services.notifications import recipients
from integrations.notify import fingerprint, mask
from models.alert import Alert, Severity
from models.notification import Notification, NotificationKind, NotificationPrefs
from models.principal import Principal

ACTOR = "system:notifications"


def subscribed(prefs: NotificationPrefs, alert: Alert) -> bool:
    """Whether one of the person's subscriptions covers this alert's kind and severity."""
    for sub in prefs.subscriptions:
        kinds = sub.get("kinds") or []
        if kinds and alert.kind not in kinds:
            continue
        if recipients.rank(alert.severity) >= recipients.rank(sub.get("min_severity", "info")):
            return True
    return False


def queue(
    session: Session,
    *,
    principal: Principal,
    prefs: NotificationPrefs | None,
    kind: NotificationKind,
    reason: str,
    now: datetime,
    alert: Alert | None = None,
    urgent: bool = False,
    key: str | None = None,
    payload: dict[str, Any] | None = None,
) -> list[Notification]:
    """One pending row per contact point of the person (none if they have none, or if this
    message was queued before); quiet hours delay all but ``urgent`` ones. Audited."""
    if prefs is None or not prefs.contacts:
        return []
    zone = recipients.zone_of(session, principal, prefs)
    due = now if urgent else (recipients.quiet_until(prefs, zone, now) or now)
    subject = f"alert:{alert.id}" if alert is not None else kind.value
    rows = []
    for target in prefs.contacts:
        dedupe = f"{subject}:{key or reason}:{principal.id}:{fingerprint(target)}"
        if session.exec(select(Notification.id).where(Notification.dedupe_key == dedupe)).first():
            continue
        row = Notification(
            principal_id=principal.id,
            kind=kind.value,
            alert_id=alert.id if alert is not None else None,
            reason=reason,
            dedupe_key=dedupe,
            target=target,
            payload=payload,
            next_attempt_at=due,
            created_at=now,
        )
        session.add(row)
        rows.append(row)
    if not rows:
        return rows
    session.flush()
    after = {
        "notifications": [r.id for r in rows],
        "to": principal.name,
        "principal_id": principal.id,
        "kind": kind.value,
        "reason": reason,
        "targets": [mask(r.target) for r in rows],
        "due_at": due,
    }
    if alert is not None:
        audit.append(
            session,
            actor=ACTOR,
            action="alert.notification_queued",
            entity="alert",
            entity_id=str(alert.id),
            at=now,
            after=after,
        )
    else:
        audit.append(
            session,
            actor=ACTOR,
            action="notification.queued",
            entity="principal",
            entity_id=principal.id,
            at=now,
            after=after,
        )
    return rows


def for_alert(session: Session, *, alert: Alert, reason: str, now: datetime) -> int:
    """Queue the alert for every subscribed person who may see it; returns rows queued."""
    if alert.id is None:
        return 0
    queued = 0
    prefs_rows = session.exec(
        select(NotificationPrefs).order_by(col(NotificationPrefs.principal_id))
    ).all()
    for prefs in prefs_rows:
        if not prefs.contacts or not subscribed(prefs, alert):
            continue
        principal = session.get(Principal, prefs.principal_id)
        if principal is None or not recipients.reachable(principal):
            continue
        if not recipients.sees_alert(session, principal, alert.id):
            continue
        queued += len(
            queue(
                session,
                principal=principal,
                prefs=prefs,
                kind=NotificationKind.alert,
                reason=reason,
                now=now,
                alert=alert,
                urgent=alert.severity == Severity.critical,
            )
        )
    return queued


def already_told(session: Session, *, alert_id: int, principal_id: str) -> bool:
    """Whether this person has a message about this alert queued or sent already."""
    stmt = select(Notification.id).where(
        Notification.alert_id == alert_id, Notification.principal_id == principal_id
    )
    return session.exec(stmt.limit(1)).first() is not None


def queued_before(session: Session, *, key_prefix: str) -> bool:
    """Whether any row's dedupe key starts with this prefix (a digest already queued)."""
    stmt = select(Notification.id).where(col(Notification.dedupe_key).startswith(key_prefix))
    return session.exec(stmt.limit(1)).first() is not None
