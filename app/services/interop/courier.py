"""Courier feed use cases: configuring a feed, what to poll, storing one page with its cursor.
Adding, pausing and watching feeds is ``courier_feeds``.

The contract and the HTTP client are ``integrations.courier`` (no database there).
``apply_page`` runs in the caller's transaction, which the caller commits: the page's
readings, custody scans and the feed's new cursor become durable together, so a process that
dies before the commit reads the same page again and one that dies after reads the next.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlmodel import Session, col, or_, select

from app.errors import Invalid
from app.services.audit import chain as audit
from app.services.coldchain import ingest as readings
from app.services.coldchain import rides
from app.services.interop.courier_scans import apply_scan, short
from integrations.courier import EventPage, event_type
from models.courier_feed import MAX_RECENT_REJECTIONS, CourierFeed
from models.principal import Principal, Role
from models.reference import Courier

# Never equal to an HMAC-SHA256 hex digest: no API key authenticates as a feed's principal.
NO_KEY_HASH = "!system principal: no API key"
TOKEN_RE = re.compile(r"[\x21-\x7e]{1,500}")


@dataclass(frozen=True)
class PollTarget:
    """Where and from which cursor to ask an enabled feed for its next page."""

    courier: str
    base_url: str
    token: str
    cursor: str | None


@dataclass
class PageOutcome:
    events: int = 0
    readings: int = 0
    duplicates: int = 0
    custody: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


def configure_feed(
    session: Session,
    *,
    courier: str,
    base_url: str,
    auth_token: str,
    actor: Principal | str,
    now: datetime,
    enabled: bool = True,
    reset_cursor: bool = False,
) -> CourierFeed:
    """Create or update a courier's feed (the token is stored, never audited or returned)."""
    if session.get(Courier, courier) is None:
        raise Invalid(f"unknown courier {courier!r}", errors=[{"loc": "courier", "msg": "unknown"}])
    url = base_url.strip().rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise Invalid("base_url is not a URL", errors=[{"loc": "base_url", "msg": "bad"}]) from exc
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.userinfo:
        raise Invalid(
            "base_url must be an http(s) URL without credentials",
            errors=[{"loc": "base_url", "msg": "http(s), no user:password"}],
        )
    if not TOKEN_RE.fullmatch(auth_token):
        raise Invalid(
            "auth_token: 1 to 500 printable ASCII characters, no spaces (a bearer token)",
            errors=[{"loc": "auth_token", "msg": "not a bearer token"}],
        )
    feed = session.get(CourierFeed, courier)
    before = None if feed is None else feed_state(feed)
    if feed is None:
        feed = CourierFeed(courier=courier, base_url=url, auth_token=auth_token, created_at=now)
    token_changed = feed.auth_token != auth_token
    feed.base_url, feed.auth_token, feed.enabled = url, auth_token, enabled
    if reset_cursor:
        feed.cursor = None
    feed.next_poll_at = None
    feed.updated_at = now
    session.add(feed)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="courier_feed.configured",
        entity="courier_feed",
        entity_id=courier,
        at=now,
        before=before,
        after={**feed_state(feed), "auth_token_changed": before is None or token_changed},
    )
    return feed


def due_feeds(session: Session, *, now: datetime) -> list[str]:
    """The couriers whose feed is enabled and not deferred past ``now``, in code order."""
    return list(
        session.exec(
            select(CourierFeed.courier)
            .where(
                col(CourierFeed.enabled).is_(True),
                or_(col(CourierFeed.next_poll_at).is_(None), col(CourierFeed.next_poll_at) <= now),
            )
            .order_by(col(CourierFeed.courier))
        )
    )


def poll_target(session: Session, *, courier: str) -> PollTarget | None:
    """The feed's URL, token and cursor, or None when it is gone or disabled."""
    feed = session.get(CourierFeed, courier)
    if feed is None or not feed.enabled:
        return None
    return PollTarget(
        courier=courier, base_url=feed.base_url, token=feed.auth_token, cursor=feed.cursor
    )


def _reading_item(event: dict[str, Any]) -> dict[str, Any]:
    # Couriers may add fields of their own; ingest refuses keys it does not know.
    return {k: v for k, v in event.items() if k in readings.ALLOWED_KEYS}


def feed_state(feed: CourierFeed) -> dict[str, Any]:
    """What the audit trail records of a feed (never its token)."""
    return {"base_url": feed.base_url, "enabled": feed.enabled, "cursor": feed.cursor}


def _feed_principal(session: Session, *, feed: CourierFeed, now: datetime) -> Principal:
    """The courier-role principal this feed records as, created on first use (no API key)."""
    if feed.principal_id is not None:
        principal = session.get(Principal, feed.principal_id)
        if principal is not None:
            return principal
    principal = Principal(
        name=f"courier feed {feed.courier}",
        role=Role.courier.value,
        courier=feed.courier,
        key_prefix="feed" + secrets.token_hex(6),
        key_hash=NO_KEY_HASH,
        created_at=now,
    )
    session.add(principal)
    session.flush()
    feed.principal_id = principal.id
    return principal


def apply_page(
    session: Session,
    *,
    courier: str,
    sent_cursor: str | None,
    page: EventPage,
    now: datetime,
    future_tolerance_s: int,
    bounds: rides.LateBounds = rides.DEFAULT_BOUNDS,
) -> PageOutcome | None:
    """Store a page's events in order and move the cursor (flushes; the caller commits).

    None when the feed's cursor is no longer the one the page was asked with (another poller
    stored it meanwhile): nothing is written and the page is dropped.
    """
    feed = session.exec(
        select(CourierFeed).where(CourierFeed.courier == courier).with_for_update()
    ).first()
    if feed is None or feed.cursor != sent_cursor:
        return None
    actor = _feed_principal(session, feed=feed, now=now)
    out = PageOutcome(events=len(page.events))
    batch: list[tuple[int, dict[str, Any]]] = []

    def ingest_batch() -> None:
        # Consecutive readings go in one bulk call; a scan between them is applied in order,
        # so readings after a pickup find the logger assigned to the shipment.
        if not batch:
            return
        result = readings.ingest(
            session,
            actor=actor,
            items=[_reading_item(event) for _, event in batch],
            now=now,
            future_tolerance_s=future_tolerance_s,
            bounds=bounds,
        )
        out.readings += result.accepted
        out.duplicates += result.duplicates
        for rejected in result.rejected:
            index = batch[int(rejected["index"])][0]
            out.rejected.append({"index": index, "type": "reading", "reason": rejected["reason"]})
        batch.clear()

    for index, event in enumerate(page.events):
        kind = event_type(event)
        if kind == "reading":
            batch.append((index, event))
            continue
        ingest_batch()
        if kind == "scan":
            reason = apply_scan(
                session,
                courier=courier,
                actor=actor,
                event=event,
                now=now,
                future_tolerance_s=future_tolerance_s,
            )
            if reason is None:
                out.custody += 1
            else:
                out.rejected.append({"index": index, "type": "scan", "reason": reason})
        else:
            out.rejected.append(
                {"index": index, "type": kind, "reason": "unknown event type (reading or scan)"}
            )
    ingest_batch()
    _advance(feed, page=page, sent_cursor=sent_cursor, out=out, now=now)
    session.add(feed)
    session.flush()
    return out


def _advance(
    feed: CourierFeed, *, page: EventPage, sent_cursor: str | None, out: PageOutcome, now: datetime
) -> None:
    if page.next_cursor is not None:
        feed.cursor = page.next_cursor
    feed.last_polled_at = feed.last_success_at = feed.updated_at = now
    feed.last_error = None
    feed.next_poll_at = None
    feed.events_processed += out.events
    feed.events_rejected += len(out.rejected)
    if out.rejected:
        stamp = now.isoformat()
        recent = [{"cursor": sent_cursor, "at": stamp, **r} for r in out.rejected]
        # A new list, so the JSON column is seen as changed.
        feed.recent_rejections = [*feed.recent_rejections, *recent][-MAX_RECENT_REJECTIONS:]


def record_failure(
    session: Session,
    *,
    courier: str,
    error: str,
    now: datetime,
    retry_after_s: float | None = None,
) -> None:
    """Note a failed poll on the feed; its cursor is left where it is."""
    feed = session.exec(
        select(CourierFeed).where(CourierFeed.courier == courier).with_for_update()
    ).first()
    if feed is None:
        return
    feed.last_polled_at = feed.updated_at = now
    feed.last_error = short(error)
    if retry_after_s is not None:
        feed.next_poll_at = now + timedelta(seconds=retry_after_s)
    session.add(feed)
