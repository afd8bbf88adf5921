"""Webhook delivery: drain the due part of the outbox."""

from __future__ import annotations

import logging
from datetime import datetime

import httpx

from app.db import Database
from app.services.webhooks import outbox as webhooks

log = logging.getLogger("v2v.jobs.webhooks")


def deliver_webhooks(db: Database, *, now: datetime, client: httpx.Client) -> int:
    """Send the deliveries due at ``now``; returns how many were attempted.

    Idempotent: a second run at the same instant finds every row it could take already
    delivered, dead, or rescheduled into the future. Safe to run in several processes.
    """
    run = webhooks.deliver_due(db, client=client, now=now)
    if run.attempted:
        log.info(
            "webhooks: %d attempted, %d delivered, %d to retry, %d dead",
            run.attempted,
            run.delivered,
            run.retrying,
            run.dead,
        )
    return run.attempted
