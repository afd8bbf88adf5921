"""The navigation's badge: how many open alerts need the signed-in person."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, select

from app.services.tasks.awaiting import alert_condition
from app.services.tasks.rules import KINDS
from models.alert import Alert
from models.principal import Principal
from models.tasks import TaskKind


def open_alert_count(session: Session, *, actor: Principal) -> int:
    """Open, unacknowledged alerts in the actor's scope that its task list shows (0 for a
    role that is given no alert tasks)."""
    if TaskKind.alert not in KINDS.get(actor.role, frozenset()):
        return 0
    return int(
        session.exec(select(func.count()).select_from(Alert).where(alert_condition(actor))).one()
    )
