"""APScheduler wiring and the leader lock.

In-process by default; ``v2v scheduler`` runs it alone. With several instances on PostgreSQL,
a session-level ``pg_try_advisory_lock`` held on a dedicated connection elects one leader:
the others keep trying at every tick and take over within one interval if the leader dies
(its connection closes, releasing the lock). On SQLite there is one host, and every job is
idempotent anyway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Connection, text

from app import telemetry
from app.clock import Clock
from app.config import Settings
from app.db import Database
from app.jobs import delays, sweeps

log = logging.getLogger("v2v.scheduler")
LEADER_LOCK_KEY = 0x5632_5653_4348  # "V2VSCH"

Job = Callable[[Database, datetime], Any]


def notification_jobs(settings: Settings) -> dict[str, tuple[Job, float]]:
    """The notification outbox, on-call escalation and daily digests."""
    from app.jobs import notifications
    from integrations.notify import Notifier

    smtp_url = settings.smtp_url.get_secret_value() if settings.smtp_url else None
    notifier = Notifier(smtp_url=smtp_url, smtp_from=settings.smtp_from)
    base_url = settings.public_url
    return {
        "notifications": (
            lambda db, now: notifications.deliver_notifications(
                db, now=now, notifier=notifier, base_url=base_url
            ),
            15,
        ),
        "escalations": (lambda db, now: notifications.escalate(db, now=now), 60),
        "digests": (lambda db, now: notifications.queue_digests(db, now=now), 300),
    }


def default_jobs(
    client: httpx.Client,
    settings: Settings | None = None,
    *,
    webhook_client: httpx.Client | None = None,
) -> dict[str, tuple[Job, float]]:
    """Job name -> (function, interval in seconds).

    Webhooks get their own client: one that connects to public addresses only (unless
    ``V2V_WEBHOOK_ALLOW_PRIVATE``), since admins choose their URLs.
    """
    from app.config import get_settings
    from app.jobs.audit import write_checkpoint
    from app.jobs.courier import poll_couriers
    from app.jobs.partitions import create_ahead
    from app.jobs.turnaround import fold_cells
    from app.jobs.webhooks import deliver_webhooks
    from integrations.webhooks import default_client

    settings = settings or get_settings()
    hooks = webhook_client or default_client(allow_private=settings.webhook_allow_private)
    jobs: dict[str, tuple[Job, float]] = {
        "reevaluate": (lambda db, now: sweeps.reevaluate_marked(db, now=now), 10),
        "loss_of_signal": (lambda db, now: sweeps.loss_of_signal(db, now=now), 60),
        "hold_time": (lambda db, now: sweeps.hold_time(db, now=now), 300),
        "thaw_clock": (lambda db, now: sweeps.thaw_clock(db, now=now), 60),
        "delays": (lambda db, now: delays.delay_sweep(db, now=now), 300),
        "webhooks": (lambda db, now: deliver_webhooks(db, now=now, client=hooks), 15),
        # Months are made three ahead; hourly, not daily, because an interval job first runs
        # one interval after start (a scheduler restarted daily would never run a daily one)
        # and a run with nothing to create is one catalogue query.
        "partitions": (lambda db, now: create_ahead(db, now=now), 3_600),
        "couriers": (lambda db, now: poll_couriers(db, now=now, client=client), 60),
        # Readers recompute the cells changed since the last fold from their rows (about
        # 10 ms per 1,000 cases a cell holds): folding often keeps that to the few cells
        # written in the last seconds; a run with nothing logged is one query.
        "turnaround_cells": (lambda db, now: fold_cells(db, now=now), 10),
        **notification_jobs(settings),
    }
    if settings.audit_checkpoint_file is not None:
        jobs["audit_checkpoint"] = (
            lambda db, now: write_checkpoint(db, now=now),
            settings.audit_checkpoint_interval_s,
        )
    return jobs


class LeaderLock:
    """Exactly one holder among instances sharing a PostgreSQL database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: Connection | None = None
        self._mutex = threading.Lock()

    def held(self) -> bool:
        if self.db.dialect != "postgresql":
            return True
        with self._mutex:
            if self._conn is not None:
                try:
                    self._conn.execute(text("SELECT 1"))
                    # The lock is the session's, not the transaction's: ending the check's
                    # transaction keeps it, and the connection is not left "idle in
                    # transaction" between ticks (which a server-side timeout would end).
                    self._conn.rollback()
                    return True
                except Exception:  # noqa: BLE001 - a dead connection means the lock is gone
                    self._drop()
            conn = self.db.engine.connect()
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK_KEY}
            ).scalar()
            conn.commit()
            if got:
                self._conn = conn
                log.info("scheduler leadership acquired")
                return True
            conn.close()
            return False

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
            finally:
                self._conn = None

    def release(self) -> None:
        with self._mutex:
            if self._conn is not None:
                try:
                    self._conn.execute(
                        text("SELECT pg_advisory_unlock(:k)"), {"k": LEADER_LOCK_KEY}
                    )
                    self._conn.commit()
                finally:
                    self._conn.close()
                    self._conn = None


class Scheduler:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        jobs: dict[str, tuple[Job, float]] | None = None,
        client: httpx.Client | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.client = client or httpx.Client(timeout=10.0)
        self.jobs = jobs if jobs is not None else default_jobs(self.client, settings)
        self.lock = LeaderLock(db)
        self._aps = BackgroundScheduler(timezone="UTC")

    def run_job(self, name: str) -> bool:
        """Run one job now if this instance leads; False when another instance does."""
        if not self.lock.held():
            return False
        fn, _ = self.jobs[name]
        try:
            fn(self.db, self.clock())
        except Exception:
            telemetry.JOB_RUNS.labels(name, "error").inc()
            log.exception("job %s failed", name)
            return True
        telemetry.JOB_RUNS.labels(name, "ok").inc()
        return True

    def start(self) -> None:
        for name, (_, interval) in self.jobs.items():
            self._aps.add_job(
                self.run_job,
                "interval",
                seconds=interval,
                args=[name],
                id=name,
                max_instances=1,
                coalesce=True,
            )
        self._aps.start()

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=True)
        self.lock.release()
        self.client.close()
