"""Operating courier feeds: add one, pause or resume it, and watch each one's cursor, lag,
last success and last error. The same functions serve the API and ``v2v courier feed``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from app.errors import Conflict, NotFound
from app.services.audit import chain as audit
from app.services.interop.courier import configure_feed, feed_state
from app.times import from_ms
from models.coldchain import Device, Reading
from models.courier_feed import CourierFeed
from models.principal import Principal
from models.shipment import CustodyEvent


@dataclass(frozen=True)
class FeedStatus:
    """What an operator watches on a feed (never its token)."""

    courier: str
    base_url: str
    active: bool
    cursor: str | None
    newest_event_at: datetime | None
    lag_s: float | None  # now − the newest event seen; None before any
    last_polled_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    next_poll_at: datetime | None
    events_processed: int
    events_rejected: int
    created_at: datetime
    updated_at: datetime


def add_feed(
    session: Session,
    *,
    courier: str,
    base_url: str,
    auth_token: str,
    actor: Principal | str,
    now: datetime,
    active: bool = True,
) -> FeedStatus:
    """Create a courier's feed (one per courier organisation; 409 when it exists)."""
    if session.get(CourierFeed, courier) is not None:
        raise Conflict(f"courier {courier} already has a feed; PATCH it", code="feed-exists")
    feed = configure_feed(
        session,
        courier=courier,
        base_url=base_url,
        auth_token=auth_token,
        actor=actor,
        now=now,
        enabled=active,
    )
    return feed_status(session, feed=feed, now=now)


def set_feed_active(
    session: Session, *, courier: str, active: bool, actor: Principal | str, now: datetime
) -> FeedStatus:
    """Pause or resume a feed; its cursor stays where it is."""
    feed = session.exec(
        select(CourierFeed).where(CourierFeed.courier == courier).with_for_update()
    ).first()
    if feed is None:
        raise NotFound(f"no feed for courier {courier}")
    before = feed_state(feed)
    feed.enabled, feed.updated_at = active, now
    if active:
        feed.next_poll_at = None
    session.add(feed)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="courier_feed.resumed" if active else "courier_feed.paused",
        entity="courier_feed",
        entity_id=courier,
        at=now,
        before=before,
        after=feed_state(feed),
    )
    return feed_status(session, feed=feed, now=now)


def _newest_event_at(session: Session, feed: CourierFeed) -> datetime | None:
    # No column records it: the newest reading of the courier's loggers (whatever path
    # brought it) or custody scan recorded by the feed.
    newest_ms = session.exec(
        select(func.max(Reading.ts_ms))
        .join(Device, col(Device.id) == Reading.device_id)
        .where(Device.courier == feed.courier)
    ).one()
    scans = None
    if feed.principal_id is not None:
        scans = session.exec(
            select(func.max(CustodyEvent.occurred_at)).where(
                CustodyEvent.actor_id == feed.principal_id
            )
        ).one()
    candidates = [from_ms(newest_ms)] if newest_ms is not None else []
    if scans is not None:
        candidates.append(scans.replace(tzinfo=UTC) if scans.tzinfo is None else scans)
    return max(candidates) if candidates else None


def feed_status(session: Session, *, feed: CourierFeed, now: datetime) -> FeedStatus:
    """A feed as operators see it, with its lag."""
    newest = _newest_event_at(session, feed)
    return FeedStatus(
        courier=feed.courier,
        base_url=feed.base_url,
        active=feed.enabled,
        cursor=feed.cursor,
        newest_event_at=newest,
        lag_s=(now - newest).total_seconds() if newest else None,
        last_polled_at=feed.last_polled_at,
        last_success_at=feed.last_success_at,
        last_error=feed.last_error,
        next_poll_at=feed.next_poll_at,
        events_processed=feed.events_processed,
        events_rejected=feed.events_rejected,
        created_at=feed.created_at,
        updated_at=feed.updated_at,
    )


def list_feeds(session: Session, *, now: datetime) -> list[FeedStatus]:
    """Every courier feed, in courier code order."""
    feeds = session.exec(select(CourierFeed).order_by(col(CourierFeed.courier)))
    return [feed_status(session, feed=f, now=now) for f in feeds]
