"""The overview's data: open alerts, shipments in transit, cases by stage, V2V this month."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, true
from sqlmodel import Session, col, select

from app.routers import alerts as alerts_api
from app.routers import metrics as metrics_api
from app.services.access.scope import shipment_scope
from app.services.coldchain import engine as coldchain
from app.services.delays import routes
from app.services.identity.coi import display
from app.services.metrics import turnaround as metrics
from app.web.roles import Can, aggregate_scope
from models.alert import Alert, AlertStatus, Severity
from models.case import Case, CaseStatus
from models.principal import Principal, Role
from models.reference import Profile
from models.shipment import Shipment, ShipmentStatus

SEVERITIES = [s.value for s in (Severity.critical, Severity.major, Severity.warning, Severity.info)]
ALERT_LIST = 25
SERIOUS = frozenset({Severity.critical.value, Severity.major.value})


def alert_counts(session: Session, principal: Principal) -> dict[str, int]:
    """Open alerts per severity, within the principal's alert scope."""
    rows = session.exec(
        select(Alert.severity, func.count())
        .where(alerts_api._scope(principal), Alert.status == AlertStatus.open.value)
        .group_by(col(Alert.severity))
    ).all()
    counts = dict.fromkeys(SEVERITIES, 0)
    counts.update({severity: int(n) for severity, n in rows})
    return counts


def alerts(session: Session, principal: Principal, status: str, limit: int) -> list[Alert]:
    """Alerts in scope with this status, the most severe and newest first."""
    rank = case({s: i for i, s in enumerate(SEVERITIES)}, value=col(Alert.severity), else_=9)
    return list(
        session.exec(
            select(Alert)
            .where(alerts_api._scope(principal), Alert.status == status)
            .order_by(rank, col(Alert.id).desc())
            .limit(limit)
        )
    )


@dataclass
class InTransit:
    shipment: Shipment
    coi: str | None
    route: str
    profile: Profile
    last_t: datetime | None
    last_c: float | None
    since: timedelta
    eta: datetime | None
    signal: str  # ok | watch | alarm
    reasons: list[str]


def _signal(
    summary: dict[str, Any],
    unresolved: list[str],
    since: timedelta,
    profile: Profile,
) -> tuple[str, list[str]]:
    """Status colour from what the cold-chain services and alerts already say."""
    reasons: list[str] = []
    if summary["open"]:
        reasons.append("open_excursion")
    if any(s in SERIOUS for s in unresolved):
        reasons.append("serious_alert")
    if reasons:
        return "alarm", reasons
    if since > timedelta(minutes=profile.max_gap_min):
        reasons.append("no_recent_reading")
    if unresolved:
        reasons.append("alert")
    if summary["count"]:
        reasons.append("past_excursion")
    return ("watch" if reasons else "ok"), reasons


def in_transit(session: Session, principal: Principal, now: datetime) -> list[InTransit]:
    """Shipments in transit within scope: latest temperature, its age, ETA and a colour."""
    scope = true() if principal.role == Role.viewer else shipment_scope(principal)
    shipments = list(
        session.exec(
            select(Shipment)
            .where(Shipment.status == ShipmentStatus.in_transit.value, scope)
            .order_by(col(Shipment.picked_up_at))
        )
    )
    if not shipments:
        return []
    ids = [s.id for s in shipments]
    case_ids = {s.case_id for s in shipments}
    cases = {c.id: c for c in session.exec(select(Case).where(col(Case.id).in_(case_ids)))}
    profiles = {p.code: p for p in session.exec(select(Profile))}
    models = routes.load_models(session)
    unresolved: dict[str, list[str]] = defaultdict(list)
    for shipment_id, severity in session.exec(
        select(Alert.shipment_id, Alert.severity).where(
            col(Alert.shipment_id).in_(ids), col(Alert.status) != AlertStatus.resolved.value
        )
    ):
        if shipment_id is not None:
            unresolved[shipment_id].append(severity)
    out = []
    for s in shipments:
        case = cases[s.case_id]
        profile = profiles[s.profile]
        last = coldchain.last_reading(session, shipment_id=s.id)
        last_t = last["t"] if last and isinstance(last["t"], datetime) else None
        since = now - (last_t or s.picked_up_at or now)
        summary = coldchain.summary(session, shipment=s, profile=profile)
        signal, reasons = _signal(summary, unresolved[s.id], since, profile)
        last_c = last["temp_c"] if last else None
        out.append(
            InTransit(
                shipment=s,
                coi=display(case.coi) if principal.role != Role.viewer else None,
                route=case.route,
                profile=profile,
                last_t=last_t,
                last_c=float(last_c) if isinstance(last_c, int | float) else None,
                since=since,
                eta=routes.shipment_eta(session, shipment=s, model=models[case.route], now=now),
                signal=signal,
                reasons=reasons,
            )
        )
    order = {"alarm": 0, "watch": 1, "ok": 2}
    out.sort(key=lambda row: order[row.signal])
    return out


def stages(session: Session, principal: Principal) -> list[tuple[str, int]]:
    """Cases per journey stage, in the journey's order (aggregates only)."""
    counts = dict(
        session.exec(
            select(Case.status, func.count())
            .where(aggregate_scope(principal))
            .group_by(col(Case.status))
        ).all()
    )
    return [(s.value, int(counts.get(s.value, 0))) for s in CaseStatus]


def month_v2v(
    session: Session, principal: Principal, month_start: datetime
) -> list[dict[str, Any]]:
    """Per route: cases infused since the month began and their V2V median."""
    # V2V never exceeds a few months, so older collections cannot end this month.
    rows = metrics.fetch(session, collected_from=month_start - timedelta(days=180))
    rows = [
        r
        for r in metrics_api._scoped(principal, rows)
        if "infused" in r.times and r.times["infused"] >= month_start
    ]
    targets = metrics.targets(session)
    by_route: dict[str, list[metrics.CaseRow]] = defaultdict(list)
    for r in rows:
        by_route[r.route].append(r)
    models = routes.load_models(session)
    out = []
    for code in sorted(models, key=lambda c: (models[c].kind != "local", c)):
        summary = metrics.summarise(by_route.get(code, []), targets)
        v2v = summary["vein_to_vein_d"]
        out.append(
            {
                "route": code,
                "kind": models[code].kind,
                "n": summary["n_infused"],
                "p50": v2v["p50"] if v2v else None,
                "target": targets.get(code),
                "on_time_rate": summary["on_time_rate"],
            }
        )
    return out


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
        data["alert_counts"] = alert_counts(session, principal)
        data["open_alerts"] = alerts(session, principal, AlertStatus.open.value, ALERT_LIST)
        data["acknowledged"] = alerts(session, principal, AlertStatus.acknowledged.value, 10)
    if wanted("shipments"):
        data["shipments"] = in_transit(session, principal, now)
    if (can.cases or can.metrics) and wanted("stages"):
        data["stages"] = stages(session, principal)
    if can.metrics and part is None:
        data["month"] = month_v2v(session, principal, month_start)
    return data
