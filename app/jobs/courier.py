"""Courier polling: read each enabled courier feed from its cursor, page by page.

Idempotent and restartable: the HTTP request runs with no transaction open; each page's data
and its cursor then commit together, after re-checking that the cursor is still the one the
page was asked with, so two pollers never store a page twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial

import httpx

from app.clock import Clock, system_clock
from app.config import Settings, get_settings
from app.db import Database
from app.services.coldchain import rides, writer
from app.services.interop import courier as feeds
from integrations import courier as couriers

log = logging.getLogger("v2v.jobs.courier")


def poll_couriers(
    db: Database,
    *,
    now: datetime,
    client: httpx.Client,
    settings: Settings | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Clock = system_clock,
) -> int:
    """Poll every enabled, due courier feed; returns how many events were processed."""
    settings = settings or get_settings()
    api = couriers.CourierClient(
        client,
        timeout_s=settings.courier_timeout_s,
        max_retries=settings.courier_max_retries,
        max_wait_s=settings.courier_max_wait_s,
        sleep=sleep,
        clock=clock,
    )
    with db.session() as session:
        due = feeds.due_feeds(session, now=now)
    return sum(_poll_feed(db, code, api=api, now=now, settings=settings) for code in due)


def _poll_feed(
    db: Database, code: str, *, api: couriers.CourierClient, now: datetime, settings: Settings
) -> int:
    processed = 0
    limit = settings.courier_page_limit
    for _ in range(settings.courier_max_pages):
        with db.session() as session:
            target = feeds.poll_target(session, courier=code)
        if target is None:
            return processed
        cursor = target.cursor
        try:
            page = api.fetch_events(
                base_url=target.base_url, token=target.token, cursor=cursor, limit=limit
            )
        except couriers.CourierError as exc:
            log.warning("courier feed %s: %s (cursor unchanged)", code, exc)
            wait = exc.retry_after_s if isinstance(exc, couriers.CourierRateLimited) else None
            with db.transaction() as session:
                feeds.record_failure(
                    session, courier=code, error=str(exc), now=now, retry_after_s=wait
                )
            return processed
        try:
            outcome = writer.run(
                db,
                partial(
                    feeds.apply_page,
                    courier=code,
                    sent_cursor=cursor,
                    page=page,
                    now=now,
                    future_tolerance_s=settings.future_tolerance_s,
                    bounds=rides.LateBounds.of(settings),
                ),
                size=limit,
            )
        except Exception as exc:  # noqa: BLE001 - one feed's failure must not stop the others
            log.exception("courier feed %s: storing a page failed (cursor unchanged)", code)
            with db.transaction() as session:
                feeds.record_failure(
                    session,
                    courier=code,
                    error=f"storing a page failed: {type(exc).__name__}",
                    now=now,
                )
            return processed
        if outcome is None:
            log.info("courier feed %s: cursor moved by another poller; page dropped", code)
            return processed
        processed += outcome.events
        if outcome.rejected:
            log.warning(
                "courier feed %s: %d of %d events rejected (first: %s)",
                code,
                len(outcome.rejected),
                outcome.events,
                outcome.rejected[0]["reason"],
            )
        if page.next_cursor is None or len(page.events) < limit:
            return processed
    return processed
