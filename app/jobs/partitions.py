"""Scheduled creation of ``reading``'s monthly partitions ahead of time (PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

from app.db import Database
from app.services.coldchain import partitions


def create_ahead(db: Database, *, now: datetime, months: int = 3) -> int:
    """Create the current month's and the next ``months`` partitions where missing (moving
    any of their rows out of DEFAULT); idempotent, so a rerun creates nothing."""
    if db.dialect != "postgresql":
        return 0
    with db.transaction() as session:
        return len(partitions.ensure_ahead(session, now=now, months=months))
