"""Sending the outbox: claimed with a lease, sent with no transaction open, the result
recorded after; retried with backoff, then dead (listed to admins). At-least-once like the
webhooks: a worker dying mid-send leaves the row to be claimed again when its lease ends.
Two workers never hold the same row (SKIP LOCKED on PostgreSQL, SQLite's single writer).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from app.db import Database
from app.services.audit import chain as audit
from app.services.notifications import outbox, recipients, render
from integrations.notify import Notifier, SendResult, mask
from models.alert import Alert, AlertStatus
from models.case import Case
from models.notification import (
    Notification,
    NotificationKind,
    NotificationPrefs,
    NotificationStatus,
)
from models.principal import Principal
from models.shipment import Shipment

log = logging.getLogger("v2v.notifications")

# 1, 2, 4, 8 min … after failed attempts; dead after the 6th.
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=1)
MAX_ATTEMPTS = 6
# Longer than one send (SMTP's socket timeout is 15 s) plus the run budget below.
LEASE = timedelta(minutes=5)
RUN_BUDGET_S = 120.0


def backoff(attempts: int) -> timedelta:
    wait: timedelta = BACKOFF_BASE * 2 ** max(attempts - 1, 0)
    return min(wait, BACKOFF_CAP)


@dataclass(frozen=True)
class Claim:
    """One attempt: the worded message, so the send runs with no session open."""

    notification_id: str
    attempt: int
    target: str
    subject: str
    body: str


def _audit(session: Session, row: Notification, action: str, now: datetime) -> None:
    after = {
        "notification": row.id,
        "principal_id": row.principal_id,
        "kind": row.kind,
        "reason": row.reason,
        "target": mask(row.target),
        "status": row.status,
        "attempts": row.attempts,
        "error": row.last_error,
    }
    if row.alert_id is not None:
        entity, entity_id, action = "alert", str(row.alert_id), f"alert.{action}"
    else:
        entity, entity_id = "principal", row.principal_id
    audit.append(
        session,
        actor=outbox.ACTOR,
        action=action,
        entity=entity,
        entity_id=entity_id,
        at=now,
        after=after,
    )


def _settle(
    session: Session, row: Notification, status: NotificationStatus, error: str, now: datetime
) -> None:
    row.status = status.value
    row.last_error = error[:500]
    session.add(row)
    session.flush()
    _audit(session, row, f"notification_{status.value}", now)


def _word(session: Session, row: Notification, base_url: str) -> tuple[str, str] | str:
    """(subject, body), or why the row is no longer worth sending."""
    principal = session.get(Principal, row.principal_id)
    if principal is None or not recipients.reachable(principal):
        return "the recipient's key was revoked"
    prefs = session.get(NotificationPrefs, row.principal_id)
    zone = recipients.zone_of(session, principal, prefs)
    lang = recipients.language_of(prefs, zone)
    if row.kind == NotificationKind.digest:
        if not row.payload:
            return "the digest has no content"
        return render.digest_message(row.payload, lang=lang, zone=zone, base_url=base_url)
    alert = session.get(Alert, row.alert_id) if row.alert_id is not None else None
    if alert is None or alert.status == AlertStatus.resolved:
        return "the alert was resolved before its turn came"
    if row.kind == NotificationKind.escalation and alert.status != AlertStatus.open:
        return "the alert was acknowledged before its turn came"
    case_id = alert.case_id
    if case_id is None and alert.shipment_id is not None:
        shipment = session.get(Shipment, alert.shipment_id)
        case_id = shipment.case_id if shipment is not None else None
    case = session.get(Case, case_id) if case_id else None
    return render.alert_message(
        alert,
        coi=case.coi if case is not None else None,
        case_id=case_id,
        escalation=row.kind == NotificationKind.escalation,
        lang=lang,
        zone=zone,
        base_url=base_url,
    )


def claim_next(session: Session, *, now: datetime, base_url: str) -> Claim | None:
    """Lease the oldest due row and word it (inside a write transaction), or None."""
    while True:
        row = session.exec(
            select(Notification)
            .where(
                Notification.status == NotificationStatus.pending,
                col(Notification.next_attempt_at) <= now,
            )
            .order_by(col(Notification.next_attempt_at), col(Notification.id))
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        if row.attempts >= MAX_ATTEMPTS:
            _settle(session, row, NotificationStatus.dead, "no result from the last attempt", now)
            continue
        worded = _word(session, row, base_url)
        if isinstance(worded, str):
            _settle(session, row, NotificationStatus.skipped, worded, now)
            continue
        row.attempts += 1
        row.next_attempt_at = now + LEASE
        session.add(row)
        session.flush()
        subject, body = worded
        return Claim(row.id, row.attempts, row.target, subject, body)


def record_result(
    session: Session, *, claim: Claim, result: SendResult, now: datetime
) -> NotificationStatus | None:
    """Store an attempt's outcome; None when the row was re-claimed since (stale)."""
    row = session.exec(
        select(Notification)
        .where(Notification.id == claim.notification_id)
        .with_for_update(key_share=True)
    ).first()
    if row is None or row.status != NotificationStatus.pending or row.attempts != claim.attempt:
        return None
    if result.ok:
        row.status = NotificationStatus.sent.value
        row.sent_at = now
        row.last_error = None
        session.add(row)
        session.flush()
        _audit(session, row, "notification_sent", now)
    elif row.attempts >= MAX_ATTEMPTS:
        _settle(session, row, NotificationStatus.dead, result.error or "failed", now)
    else:
        row.next_attempt_at = now + backoff(row.attempts)
        row.last_error = (result.error or "failed")[:500]
        session.add(row)
        session.flush()
    return NotificationStatus(row.status)


@dataclass
class DeliveryRun:
    attempted: int = 0
    sent: int = 0
    retrying: int = 0
    dead: int = 0


def deliver_due(
    db: Database,
    *,
    notifier: Notifier,
    now: datetime,
    base_url: str,
    batch: int = 50,
    budget_s: float = RUN_BUDGET_S,
) -> DeliveryRun:
    """Send up to ``batch`` due messages, one claim at a time, each in its own transactions
    (job-level: the outbox protocol commits before and after each send)."""
    run = DeliveryRun()
    deadline = time.monotonic() + budget_s
    while run.attempted < batch and time.monotonic() < deadline:
        with db.transaction() as session:
            claim = claim_next(session, now=now, base_url=base_url)
        if claim is None:
            break
        result = notifier.send(target=claim.target, subject=claim.subject, body=claim.body)
        run.attempted += 1
        with db.transaction() as session:
            outcome = record_result(session, claim=claim, result=result, now=now)
        if outcome == NotificationStatus.sent:
            run.sent += 1
            continue
        if outcome == NotificationStatus.dead:
            run.dead += 1
        elif outcome == NotificationStatus.pending:
            run.retrying += 1
        log.warning(
            "notification %s attempt %d to %s failed: %s",
            claim.notification_id,
            claim.attempt,
            mask(claim.target),
            result.error,
        )
    return run
