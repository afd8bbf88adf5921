"""The overview's data: open alerts, shipments in transit, cases by stage, V2V this month."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.services.alerts import queries as alert_queries
from app.services.journey import pages as case_pages
from app.services.metrics import reports
from app.services.shipments import pages as shipment_pages
from app.web.roles import Can
from models.alert import AlertStatus
from models.principal import Principal

ALERT_LIST = 25


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
    data: dict[str, Any] = {"month_start": month_start, "stages": None, "month": None}
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
