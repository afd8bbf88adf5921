"""What the alert lifecycle tells this package, in the alert's own transaction."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from app.services.notifications import escalation, outbox, recipients
from models.alert import Alert, Severity


def alert_raised(session: Session, *, alert: Alert, now: datetime) -> None:
    """A new alert: its subscribers hear of it; a critical one pages the site's on-call."""
    outbox.for_alert(session, alert=alert, reason="raised", now=now)
    if alert.severity == Severity.critical:
        escalation.start(session, alert=alert, now=now)


def alert_changed(session: Session, *, alert: Alert, before_severity: str, now: datetime) -> None:
    """An open alert changed; only a worse severity is news (a refresh is not)."""
    if recipients.rank(alert.severity) <= recipients.rank(before_severity):
        return
    outbox.for_alert(session, alert=alert, reason=f"escalated:{alert.severity}", now=now)
    if alert.severity == Severity.critical:
        escalation.start(session, alert=alert, now=now)


def alert_settled(session: Session, *, alert: Alert, now: datetime) -> None:
    """Acknowledged or resolved: its escalation stops."""
    escalation.stop(session, alert=alert, now=now, reason=alert.status)
