"""The overview's data: the person's tasks, open alerts, shipments in transit, cases by
stage, V2V this month; and the navigation's open-alert badge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from sqlmodel import Session

from app.services import tasks as task_service
from app.services.alerts import queries as alert_queries
from app.services.identity.coi import display
from app.services.journey import pages as case_pages
from app.services.metrics import reports
from app.services.reference import catalogue
from app.services.shipments import pages as shipment_pages
from app.services.tasks.rules import TASK_READERS
from app.web.roles import Can
from models.alert import AlertStatus
from models.principal import Principal
from models.tasks import TaskItem, TaskKind

ALERT_LIST = 25
TASKS_SHOWN = 30  # per group; the rest are counted, and the worklist and alerts list them


@dataclass(frozen=True)
class TaskRow:
    """One task on the panel: the item, where it is acted on, its COI as printed."""

    item: TaskItem
    href: str | None
    coi: str  # eye-readable, the check character set apart, as on the label


def _href(item: TaskItem, can: Can) -> str | None:
    # A disposition is judged on the shipment's trace; a courier never opens case pages.
    by_shipment = item.kind == TaskKind.disposition or not can.cases
    if item.shipment_id and can.shipments and (by_shipment or not item.case_id):
        return f"/shipments/{item.shipment_id}"
    if item.case_id and can.cases:
        return f"/cases/{item.case_id}"
    return None


def task_panel(
    session: Session, principal: Principal, can: Can, now: datetime, zone: Any
) -> dict[str, Any] | None:
    """Today's tasks (with every overdue one) and the rest of the next seven days."""
    if principal.role not in TASK_READERS:
        return None
    found = task_service.tasks_for(
        session, actor=principal, window_from=None, window_to=None, now=now
    )
    local = now.astimezone(zone)
    tomorrow = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone)
    rows = [TaskRow(t, _href(t, can), display(t.coi) if t.coi else "") for t in found.items]
    today = [r for r in rows if r.item.due_at < tomorrow]
    week = [r for r in rows if r.item.due_at >= tomorrow]
    return {
        "today": today[:TASKS_SHOWN],
        "week": week[:TASKS_SHOWN],
        "today_more": len(today) - len(today[:TASKS_SHOWN]),
        "week_more": len(week) - len(week[:TASKS_SHOWN]),
        "truncated": found.truncated,
        "overdue": sum(1 for r in rows if r.item.overdue),
        "sites": {s.code: s.name for s in catalogue.list_sites(session)},
    }


def alert_badge(session: Session, principal: Principal) -> int:
    """Open, unacknowledged alerts needing the person (the count the task panel lists)."""
    return task_service.open_alert_count(session, actor=principal)


def build(
    session: Session,
    principal: Principal,
    can: Can,
    now: datetime,
    zone: Any,
    part: str | None = None,
) -> dict[str, Any]:
    """The overview's sections the principal may see; only ``part`` for a live region."""

    def wanted(name: str) -> bool:
        return part is None or part == name

    local = now.astimezone(zone)
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    data: dict[str, Any] = {
        "month_start": month_start,
        "stages": None,
        "month": None,
        "tasks": None,
    }
    if wanted("tasks"):
        data["tasks"] = task_panel(session, principal, can, now, zone)
    if can.alerts and wanted("alerts"):
        data["alert_counts"] = alert_queries.open_counts(session, actor=principal)
        data["open_alerts"] = alert_queries.most_severe(
            session, actor=principal, status=AlertStatus.open.value, limit=ALERT_LIST
        )
        data["acknowledged"] = alert_queries.most_severe(
            session, actor=principal, status=AlertStatus.acknowledged.value, limit=10
        )
    if wanted("shipments"):
        data["shipments"] = shipment_pages.in_transit(session, actor=principal, now=now)
    if (can.cases or can.metrics) and wanted("stages"):
        data["stages"] = case_pages.stage_counts(session, actor=principal)
    if can.metrics and part is None:
        data["month"] = reports.month_by_route(session, actor=principal, month_start=month_start)
    return data
