"""Webhooks: the outbox written with each alert and case event, and its delivery.

An alert change and its outbox rows commit in one transaction, so an event is never lost
and never announced for a change that rolled back. Delivery is at-least-once: a row is
claimed (its lease pushes ``next_attempt_at`` forward and counts the attempt), committed,
sent with no transaction open, and its result recorded in a second transaction. A worker
that dies mid-attempt leaves the row pending; it becomes due again when the lease ends.
Receivers de-duplicate on ``X-V2V-Delivery``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Row, Table
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app.db import Database
from app.services.audit.chain import jsonable
from integrations.webhooks import SendResult, WebhookSender
from models.alert import Alert, AlertPublic
from models.case import Case, Milestone
from models.shipment import Shipment
from models.webhook import DeliveryStatus, Webhook, WebhookDelivery, WebhookEvent

log = logging.getLogger("v2v.webhooks")

# Retry schedule: 30 s, 1, 2, 4, 8, 16, 32 min after failed attempts 1–7; dead after the 8th.
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
MAX_ATTEMPTS = 8
# A claimed row is due again after this long: it must exceed one send (timeout 10 s) plus
# the run budget below, so a live attempt's row is never claimed a second time.
LEASE = timedelta(minutes=5)
RUN_BUDGET_S = 120.0


# Every milestone and alert change asks for the subscribers: first which active webhooks
# want it, from three columns (the ORM's loading of whole rows cost several times the
# statement, and most changes have no subscriber), then those rows.
_HOOKS: Table = Webhook.__table__  # type: ignore[attr-defined]
_ACTIVE = select_columns(_HOOKS.c.id, _HOOKS.c.kinds, _HOOKS.c.sites).where(
    _HOOKS.c.active.is_(True)
)


# Whether any webhook is active: a caller that reads it with its own statement (a journey
# event, with its route's factory) spares the subscribers' read when none is.
ANY_ACTIVE = "EXISTS (SELECT 1 FROM webhook WHERE active)"


def _subscribers(
    session: Session,
    *,
    kind: str,
    site: str | None,
    active: Sequence[Row[Any]] | None = None,
) -> list[Webhook]:
    """Active webhooks wanting this kind at this site (``active``: the ``_ACTIVE`` rows, if
    read already). A site-scoped webhook never gets an event whose case is unknown (``site``
    None): it could be any site's."""
    rows = session.execute(_ACTIVE).all() if active is None else active
    wanted = [
        hook_id
        for hook_id, kinds, sites in rows
        if (not kinds or kind in kinds) and (not sites or (site is not None and site in sites))
    ]
    if not wanted:
        return []
    return list(
        session.exec(select(Webhook).where(col(Webhook.id).in_(wanted)).order_by(col(Webhook.id)))
    )


def _case_of_alert(session: Session, alert: Alert) -> Case | None:
    """The alert's case, through its shipment when the alert names only the shipment."""
    case_id = alert.case_id
    if case_id is None and alert.shipment_id is not None:
        shipment = session.get(Shipment, alert.shipment_id)
        case_id = shipment.case_id if shipment is not None else None
    return session.get(Case, case_id) if case_id is not None else None


def enqueue_for_alert(
    session: Session, *, alert: Alert, event: WebhookEvent, now: datetime
) -> list[WebhookDelivery]:
    """One pending delivery per active webhook subscribed to this alert's kind and site."""
    # The active webhooks first: with none (most deployments, and every alert that ingest
    # refreshes with each batch of an excursion), the alert's case is never looked up.
    active = session.execute(_ACTIVE).all()
    if not active:
        return []
    case = _case_of_alert(session, alert)
    hooks = _subscribers(session, kind=alert.kind, site=case.site if case else None, active=active)
    if not hooks:
        return []
    alert_body = AlertPublic.model_validate(alert).model_dump(mode="json")
    rows = [
        _deliver(session, hook=hook, event=event, now=now, alert_id=alert.id, alert=alert_body)
        for hook in hooks
    ]
    session.flush()
    return rows


def _case_body(case: Case) -> dict[str, Any]:
    # The case by id and COI only: never the patient reference, not even its hash.
    return {"id": case.id, "coi": case.coi, "site": case.site, "status": case.status}


def enqueue_for_case(
    session: Session, *, case: Case, event: WebhookEvent, body: dict[str, Any], now: datetime
) -> list[WebhookDelivery]:
    """One pending delivery per active webhook subscribed to this case event and site.

    ``body`` is what the event adds to the case (e.g. ``{"hold": ...}``).
    """
    hooks = _subscribers(session, kind=event.value, site=case.site)
    if not hooks:
        return []
    case_body = jsonable({**_case_body(case), **body})
    rows = [
        _deliver(session, hook=hook, event=event, now=now, alert_id=None, case=case_body)
        for hook in hooks
    ]
    session.flush()
    return rows


def enqueue_for_milestone(
    session: Session,
    *,
    case: Case,
    milestone: Milestone,
    now: datetime,
    any_active: bool = True,
) -> list[WebhookDelivery]:
    """``milestone.recorded`` for subscribers of the case's site: the case and the step,
    with no note, no event data and nothing about the patient. ``any_active`` False: the
    caller read in its transaction that no webhook is active (``ANY_ACTIVE``)."""
    event = WebhookEvent.milestone_recorded
    hooks = _subscribers(session, kind=event.value, site=case.site) if any_active else []
    if not hooks:
        return []
    subject = jsonable(
        {
            "case": _case_body(case),
            "milestone": {
                "id": milestone.id,
                "type": milestone.type,
                "occurred_at": milestone.occurred_at,
                "site": milestone.site,
            },
        }
    )
    rows = [
        _deliver(session, hook=hook, event=event, now=now, alert_id=None, **subject)
        for hook in hooks
    ]
    session.flush()
    return rows


def _deliver(
    session: Session,
    *,
    hook: Webhook,
    event: WebhookEvent,
    now: datetime,
    alert_id: int | None,
    **subject: Any,
) -> WebhookDelivery:
    """The outbox row of one event for one subscriber; ``subject`` is the body's topic."""
    delivery = WebhookDelivery(
        webhook_id=hook.id,
        event=event.value,
        alert_id=alert_id,
        payload="",
        next_attempt_at=now,
        created_at=now,
    )
    # The delivery id is inside the signed body too: the header alone could be replayed.
    delivery.payload = json.dumps(
        {"delivery_id": delivery.id, "event": event.value, "occurred_at": jsonable(now), **subject},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    session.add(delivery)
    return delivery


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 30 s doubling, capped at one hour."""
    wait: timedelta = BACKOFF_BASE * 2 ** max(attempts - 1, 0)
    return min(wait, BACKOFF_CAP)


@dataclass(frozen=True)
class Claim:
    """Everything one attempt needs, so the HTTP call runs with no session open."""

    delivery_id: str
    attempt: int
    url: str
    secret: str
    event: str
    body: bytes


def claim_next(session: Session, *, now: datetime) -> Claim | None:
    """Lease the oldest due delivery (call inside a write transaction), or None."""
    while True:
        # SKIP LOCKED lets concurrent workers on PostgreSQL take different rows; SQLite
        # renders no FOR UPDATE, and its BEGIN IMMEDIATE already serialises writers.
        delivery = session.exec(
            select(WebhookDelivery)
            .where(
                WebhookDelivery.status == DeliveryStatus.pending,
                col(WebhookDelivery.next_attempt_at) <= now,
            )
            .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if delivery is None:
            return None
        hook = session.get(Webhook, delivery.webhook_id)
        if hook is None or not hook.active:
            _bury(session, delivery, "webhook is inactive")
            continue
        if delivery.attempts >= MAX_ATTEMPTS:
            # Its last attempt never reported back (a crash or an expired lease).
            _bury(session, delivery, "no result from the last attempt (worker stopped?)")
            continue
        delivery.attempts += 1
        delivery.next_attempt_at = now + LEASE
        session.add(delivery)
        session.flush()
        return Claim(
            delivery_id=delivery.id,
            attempt=delivery.attempts,
            url=hook.url,
            secret=hook.secret,
            event=delivery.event,
            body=delivery.payload.encode("utf-8"),
        )


def record_result(
    session: Session, *, claim: Claim, result: SendResult, now: datetime
) -> DeliveryStatus | None:
    """Store an attempt's outcome; None when the row was re-claimed since (a stale result)."""
    delivery = session.exec(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == claim.delivery_id)
        .with_for_update(key_share=True)
    ).first()
    if (
        delivery is None
        or delivery.status != DeliveryStatus.pending
        or delivery.attempts != claim.attempt
    ):
        return None
    delivery.last_status_code = result.status_code
    if result.ok:
        delivery.status = DeliveryStatus.delivered.value
        delivery.delivered_at = now
        delivery.last_error = None
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.status = DeliveryStatus.dead.value
        delivery.last_error = result.error
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts)
        delivery.last_error = result.error
    session.add(delivery)
    session.flush()
    return DeliveryStatus(delivery.status)


@dataclass
class DeliveryRun:
    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0


def deliver_due(
    db: Database,
    *,
    client: httpx.Client,
    now: datetime,
    batch: int = 50,
    budget_s: float = RUN_BUDGET_S,
) -> DeliveryRun:
    """Send up to ``batch`` due deliveries, one claim at a time (each in its own transactions).

    This is a job-level function: the outbox protocol needs a commit before and after each
    HTTP call, so it opens its own transactions instead of flushing into the caller's.
    """
    sender = WebhookSender(client)
    run = DeliveryRun()
    # Stop claiming once the budget is spent, so no claim outlives its lease.
    deadline = time.monotonic() + budget_s
    while run.attempted < batch and time.monotonic() < deadline:
        with db.transaction() as session:
            claim = claim_next(session, now=now)
        if claim is None:
            break
        result = sender.send(
            url=claim.url,
            body=claim.body,
            secret=claim.secret,
            event=claim.event,
            delivery_id=claim.delivery_id,
        )
        run.attempted += 1
        with db.transaction() as session:
            outcome = record_result(session, claim=claim, result=result, now=now)
        if outcome == DeliveryStatus.delivered:
            run.delivered += 1
            continue
        if outcome == DeliveryStatus.dead:
            run.dead += 1
        elif outcome == DeliveryStatus.pending:
            run.retrying += 1
        log.warning(
            "webhook delivery %s attempt %d failed: %s%s",
            claim.delivery_id,
            claim.attempt,
            result.error,
            " (dead)" if outcome == DeliveryStatus.dead else "",
        )
    return run


def _bury(session: Session, delivery: WebhookDelivery, error: str) -> None:
    delivery.status = DeliveryStatus.dead.value
    delivery.last_error = error[:500]
    session.add(delivery)
    session.flush()
