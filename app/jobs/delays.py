"""Delay sweep: find the cases a delay rule may act on, then apply the rules to those only."""

from __future__ import annotations

from datetime import datetime

from app.db import Database
from app.services.delays import sweep


def delay_sweep(db: Database, *, now: datetime) -> int:
    """Raise delay_at_risk / delay_breached / slot_conflict; resolve them once done."""
    # Most sweeps find nothing: the write transaction opens only when a case needs one.
    with db.session() as session:
        case_ids = sweep.candidates(session, now=now)
    if not case_ids:
        return 0
    with db.transaction() as session:
        return sweep.run(session, case_ids=case_ids, now=now)
