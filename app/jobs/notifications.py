"""Notification jobs: send the due outbox, escalate unacknowledged critical alerts, queue
the daily digests. Each opens its own sessions, calls one service and is idempotent."""

from __future__ import annotations

import logging
from datetime import datetime

from app.db import Database
from app.services.notifications import delivery, digest, escalation
from integrations.notify import Notifier

log = logging.getLogger("v2v.jobs.notifications")


def deliver_notifications(db: Database, *, now: datetime, notifier: Notifier, base_url: str) -> int:
    """Send the messages due at ``now``; returns how many were attempted. A second run at
    the same instant finds every row it could take sent, dead or due later."""
    run = delivery.deliver_due(db, notifier=notifier, now=now, base_url=base_url)
    if run.attempted:
        log.info(
            "notifications: %d attempted, %d sent, %d to retry, %d dead",
            run.attempted,
            run.sent,
            run.retrying,
            run.dead,
        )
    return run.attempted


def escalate(db: Database, *, now: datetime) -> int:
    """Tell the next on-call step about critical alerts nobody acknowledged in time."""
    with db.transaction() as session:
        return escalation.sweep(session, now=now)


def queue_digests(db: Database, *, now: datetime) -> int:
    """Queue today's digest for each opted-in person once their local day reaches 07:00."""
    with db.transaction() as session:
        return digest.enqueue_due(session, now=now)
