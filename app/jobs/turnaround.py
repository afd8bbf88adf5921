"""Scheduled folding of the turnaround cells: the cells whose rows changed since their stored
totals were written are rewritten, so readers recompute fewer of them."""

from __future__ import annotations

from datetime import datetime

from app.db import Database
from app.services.metrics import cells


def fold_cells(db: Database, *, now: datetime) -> int:
    """Rewrite the cells logged as changed (``cells.fold``); the number rewritten. Skips its
    turn (0) while another folder is at work on PostgreSQL; idempotent."""
    del now  # what is folded does not depend on the time
    with db.transaction() as session:
        return cells.fold(session)
