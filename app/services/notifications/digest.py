"""The daily digest: each opted-in person's day, in their zone, from 07:00 local time.

Today's tasks (apheresis, pickups awaited, arrivals expected, thaws and infusions planned),
open alerts, products on hold and cases at risk of delay, all within the person's scope.
A snapshot is taken when it is queued; the message is worded when it is sent.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from app.services.access.scope import case_scope, shipment_scope
from app.services.alerts.queries import visible
from app.services.notifications import outbox, recipients
from app.times import iso_z
from models.alert import Alert, AlertKind, AlertStatus
from models.case import Case, CaseStatus
from models.notification import NotificationKind, NotificationPrefs
from models.principal import Principal
from models.reference import Product
from models.shipment import Shipment, ShipmentStatus

DIGEST_HOUR = 7
MAX_ALERTS = 20
THAW_LEAD = timedelta(minutes=30)  # when no product says how long before infusion to thaw


def _day(zone: str, now: datetime) -> tuple[datetime, datetime, str]:
    local = now.astimezone(ZoneInfo(zone))
    start = datetime.combine(local.date(), time(0), tzinfo=ZoneInfo(zone))
    end = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=ZoneInfo(zone))
    return start.astimezone(UTC), end.astimezone(UTC), local.date().isoformat()


def _task(kind: str, at: datetime | None, case: Case, **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "at": iso_z(at) if at else None,
        "case_id": case.id,
        "coi": case.coi,
        **extra,
    }


def tasks(session: Session, *, principal: Principal, start: datetime, end: datetime) -> list[Any]:
    """The person's tasks between ``start`` and ``end``, soonest first (undated last)."""
    out: list[dict[str, Any]] = []
    cases = select(Case).where(case_scope(principal))
    for case in session.exec(
        cases.where(
            Case.status == CaseStatus.apheresis_scheduled,
            col(Case.apheresis_at) >= start,
            col(Case.apheresis_at) < end,
        )
    ):
        out.append(_task("apheresis", case.apheresis_at, case))
    planned = cases.where(
        col(Case.status).in_(
            [CaseStatus.in_transit_to_site, CaseStatus.at_site, CaseStatus.thawed]
        ),
        col(Case.planned_infusion_at) >= start,
        col(Case.planned_infusion_at) < end,
    )
    for case in session.exec(planned):
        if case.planned_infusion_at is None:  # the query asked for it; for the type checker
            continue
        if case.status != CaseStatus.thawed:
            product = session.get(Product, case.product)
            lead = (
                timedelta(minutes=product.thaw_to_infusion_start_min)
                if product is not None
                else THAW_LEAD
            )
            out.append(_task("thaw", case.planned_infusion_at - lead, case))
        out.append(_task("infusion", case.planned_infusion_at, case))
    shipments = (
        select(Shipment, Case)
        .join(Case, col(Case.id) == col(Shipment.case_id))
        .where(shipment_scope(principal), case_scope(principal))
    )
    for shipment, case in session.exec(shipments.where(Shipment.status == ShipmentStatus.created)):
        out.append(_task("pickup", None, case, shipment_id=shipment.id))
    for shipment, case in session.exec(
        shipments.where(Shipment.status == ShipmentStatus.in_transit)
    ):
        out.append(_task("arrival", None, case, shipment_id=shipment.id))
    return sorted(out, key=lambda t: (t["at"] is None, t["at"] or "", t["coi"]))


def snapshot(session: Session, *, principal: Principal, zone: str, now: datetime) -> dict[str, Any]:
    """Everything the digest says, as JSON (instants in UTC with Z)."""
    start, end, date = _day(zone, now)
    open_alerts = list(
        session.exec(
            select(Alert)
            .where(visible(principal), Alert.status == AlertStatus.open)
            .order_by(col(Alert.id).desc())
        )
    )
    ranked = sorted(open_alerts, key=lambda a: -recipients.rank(a.severity))
    scoped_cases = select(Case).where(case_scope(principal))
    holds = session.exec(scoped_cases.where(Case.hold_status == "on_hold").order_by(Case.coi))
    at_risk_ids = {a.case_id for a in open_alerts if a.kind == AlertKind.delay_at_risk}
    at_risk = session.exec(
        scoped_cases.where(col(Case.id).in_([i for i in at_risk_ids if i])).order_by(Case.coi)
    )
    return {
        "date": date,
        "tasks": tasks(session, principal=principal, start=start, end=end),
        "open_alerts_total": len(open_alerts),
        "open_alerts": [
            {
                "id": a.id,
                "severity": a.severity,
                "kind": a.kind,
                "code": a.code or "alert.text",
                "params": a.params or {"text": a.message},
            }
            for a in ranked[:MAX_ALERTS]
        ],
        "holds": [{"case_id": c.id, "coi": c.coi} for c in holds],
        "at_risk": [{"case_id": c.id, "coi": c.coi} for c in at_risk],
    }


def enqueue_due(session: Session, *, now: datetime) -> int:
    """Queue today's digest for each opted-in person whose local day has reached 07:00
    (once per person and day); returns messages queued."""
    queued = 0
    for prefs in session.exec(
        select(NotificationPrefs)
        .where(col(NotificationPrefs.digest).is_(True))
        .order_by(col(NotificationPrefs.principal_id))
    ):
        principal = session.get(Principal, prefs.principal_id)
        if not prefs.contacts or principal is None or not recipients.reachable(principal):
            continue
        zone = recipients.zone_of(session, principal, prefs)
        local = now.astimezone(ZoneInfo(zone))
        if local.hour < DIGEST_HOUR:
            continue
        day = local.date().isoformat()
        if outbox.queued_before(session, key_prefix=f"digest:{day}:{principal.id}:"):
            continue
        data = snapshot(session, principal=principal, zone=zone, now=now)
        queued += len(
            outbox.queue(
                session,
                principal=principal,
                prefs=prefs,
                kind=NotificationKind.digest,
                reason="digest",
                key=day,
                now=now,
                payload=data,
            )
        )
    return queued
