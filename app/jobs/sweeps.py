"""Scheduled cold-chain sweeps: each opens its own sessions, takes ``now`` and calls the
rule in ``app.services.coldchain.sweeps``; each is idempotent and answers a count."""

from __future__ import annotations

from datetime import datetime

from app.db import Database
from app.services.coldchain import sweeps

# app.jobs.delays resolves its alerts with it (until it takes it from the services).
resolve = sweeps.resolve


def reevaluate_marked(db: Database, *, now: datetime, limit: int = 200) -> int:
    """Replay shipments that received late readings (each in its own transaction)."""
    with db.session() as session:
        marked = sweeps.marked_for_replay(session, limit=limit)
    for shipment_id in marked:
        with db.transaction() as session:
            sweeps.replay(session, shipment_id=shipment_id, now=now)
    return len(marked)


def loss_of_signal(db: Database, *, now: datetime) -> int:
    """Alert on in-transit shipments whose newest reading is older than the profile's gap."""
    # Read first: a write transaction opens only when an alert must be raised or resolved.
    with db.session() as session:
        check = sweeps.check_signal(session, now=now)
    if not check:
        return 0
    with db.transaction() as session:
        return sweeps.apply_signal(session, check=check, now=now)


def hold_time(db: Database, *, now: datetime) -> int:
    """Dry-shipper hold time and fresh-material stability at risk for shipments in transit."""
    with db.transaction() as session:
        return sweeps.hold_time(session, now=now)


def thaw_clock(db: Database, *, now: datetime) -> int:
    """Thawed but not infused within the product's window: start late, then expired."""
    with db.transaction() as session:
        return sweeps.thaw_clock(session, now=now)
