"""Scheduled sweeps. Each is idempotent, opens its own sessions and takes ``now``.

Alerts are raised with dedupe keys (raising twice refreshes, never duplicates) and resolved
when their cause is gone, so a sweep may run any number of times, on any instance.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Table, or_
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app.db import Database
from app.services.alerts import lifecycle as alerts
from app.services.coldchain import engine as coldchain
from app.services.coldchain.engine import ms_to_dt
from models.alert import Alert, AlertKind, AlertStatus, Severity
from models.case import Case, CaseStatus, Milestone
from models.coldchain import ShipmentState
from models.reference import Product, Profile, RouteLeg
from models.shipment import Shipment, ShipmentStatus

SHIPMENTS: Table = Shipment.__table__  # type: ignore[attr-defined]
STATES: Table = ShipmentState.__table__  # type: ignore[attr-defined]
PROFILES: Table = Profile.__table__  # type: ignore[attr-defined]
HOLD_SAFETY_FACTOR = 0.7  # real dry shippers vary by up to 40 % from their rated hold time


def resolve(session: Session, *, dedupe_key: str, now: datetime) -> None:
    for alert in session.exec(
        select(Alert).where(
            Alert.dedupe_key == dedupe_key, col(Alert.status) != AlertStatus.resolved
        )
    ):
        alerts.resolve(session, alert=alert, now=now)


def reevaluate_marked(db: Database, *, now: datetime, limit: int = 200) -> int:
    """Replay shipments that received late readings (each in its own transaction)."""
    with db.session() as session:
        marked = list(
            session.exec(
                select(ShipmentState.shipment_id)
                .where(col(ShipmentState.needs_reeval))
                .limit(limit)
            )
        )
    for shipment_id in marked:
        with db.transaction() as session:
            shipment = session.get(Shipment, shipment_id)
            if shipment is None:  # guaranteed by foreign keys and state
                raise RuntimeError("inconsistent data: shipment missing")
            profile = session.get(Profile, shipment.profile)
            if profile is None:  # guaranteed by foreign keys and state
                raise RuntimeError("inconsistent data: profile missing")
            coldchain.reevaluate(session, shipment=shipment, profile=profile, now=now)
    return len(marked)


def loss_of_signal(db: Database, *, now: datetime) -> int:
    """Alert on in-transit shipments whose newest reading is older than the profile's gap.

    One read query finds the silent shipments (the comparison runs in the database, on the
    detector state's newest timestamp); a write transaction opens only when an alert must be
    raised or resolved.
    """
    now_ms = int(now.timestamp() * 1000)
    s, st, p = SHIPMENTS.c, STATES.c, PROFILES.c
    with db.session() as session:
        silent = session.execute(
            select_columns(s.id, s.case_id, s.picked_up_at, st.newest_ts_ms, p.max_gap_min)
            .select_from(
                SHIPMENTS.join(PROFILES, p.code == s.profile).outerjoin(
                    STATES, st.shipment_id == s.id
                )
            )
            .where(
                s.status == ShipmentStatus.in_transit.value,
                or_(st.newest_ts_ms.is_(None), st.newest_ts_ms < now_ms - p.max_gap_min * 60_000),
            )
        ).all()
        open_keys = {
            key
            for (key,) in session.execute(
                select_columns(col(Alert.dedupe_key)).where(
                    col(Alert.kind) == AlertKind.loss_of_signal.value,
                    col(Alert.status) != AlertStatus.resolved,
                )
            )
            if key
        }
    overdue = []
    for shipment_id, case_id, picked_up_at, newest_ms, max_gap_min in silent:
        last = ms_to_dt(newest_ms) if newest_ms is not None else picked_up_at
        if last is not None and now - last > timedelta(minutes=max_gap_min):
            overdue.append((shipment_id, case_id, last, max_gap_min))
    quiet = open_keys - {f"signal:{shipment_id}" for shipment_id, *_ in overdue}
    if not overdue and not quiet:
        return 0
    with db.transaction() as session:
        for shipment_id, case_id, last, max_gap_min in overdue:
            minutes = (now - last).total_seconds() / 60
            alerts.raise_alert(
                session,
                kind=AlertKind.loss_of_signal,
                severity=Severity.major,
                message=(
                    f"no reading from shipment {shipment_id[:8]} for {minutes:.0f} min "
                    f"(limit {max_gap_min:.0f} min)"
                ),
                now=now,
                case_id=case_id,
                shipment_id=shipment_id,
                dedupe_key=f"signal:{shipment_id}",
                data={"last_reading_at": last.isoformat()},
            )
        # Signal back, or the shipment delivered: those alerts are over.
        for key in quiet:
            resolve(session, dedupe_key=key, now=now)
    return len(overdue)


def _expected_transit_h(session: Session, shipment: Shipment, case: Case) -> float:
    direction = "inbound" if shipment.direction == "to_manufacturing" else "outbound"
    legs = session.exec(
        select(RouteLeg.expected_h).where(
            RouteLeg.route_code == case.route, RouteLeg.direction == direction
        )
    ).all()
    return float(sum(legs))


def hold_time(db: Database, *, now: datetime) -> int:
    """Dry-shipper hold time and fresh-material stability at risk for shipments in transit."""
    raised = 0
    with db.transaction() as session:
        rows = session.exec(
            select(Shipment, Profile, Case, Product)
            .join(Profile, col(Profile.code) == col(Shipment.profile))
            .join(Case, col(Case.id) == col(Shipment.case_id))
            .join(Product, col(Product.code) == col(Case.product))
            .where(Shipment.status == ShipmentStatus.in_transit)
        ).all()
        for shipment, profile, case, product in rows:
            if shipment.picked_up_at is None:
                continue
            elapsed_h = (now - shipment.picked_up_at).total_seconds() / 3600
            remaining_h = max(0.0, _expected_transit_h(session, shipment, case) - elapsed_h)
            hold_h = shipment.hold_time_h or profile.hold_time_h
            if profile.cryogenic and hold_h:
                key = f"hold:{shipment.id}"
                if elapsed_h + remaining_h > hold_h * HOLD_SAFETY_FACTOR:
                    alerts.raise_alert(
                        session,
                        kind=AlertKind.hold_time_at_risk,
                        severity=Severity.major,
                        message=(
                            f"dry shipper on shipment {shipment.id[:8]}: {elapsed_h:.0f} h elapsed "
                            f"+ {remaining_h:.0f} h to go exceeds {HOLD_SAFETY_FACTOR:.0%} of its "
                            f"{hold_h:.0f} h hold time"
                        ),
                        now=now,
                        case_id=case.id,
                        shipment_id=shipment.id,
                        dedupe_key=key,
                    )
                    raised += 1
            limit_h = profile.max_trip_h or product.fresh_max_h
            if not profile.cryogenic and limit_h and shipment.direction == "to_manufacturing":
                collected = session.exec(
                    select(Milestone.occurred_at)
                    .where(Milestone.case_id == case.id, Milestone.type == "collected")
                    .order_by(col(Milestone.occurred_at).desc())
                ).first()
                if collected is None:
                    continue
                age_h = (now - collected).total_seconds() / 3600
                if age_h + remaining_h > limit_h:
                    alerts.raise_alert(
                        session,
                        kind=AlertKind.hold_time_at_risk,
                        severity=Severity.critical if age_h > limit_h else Severity.major,
                        message=(
                            f"fresh apheresis material for case {case.coi}: {age_h:.1f} h "
                            f"since collection, {remaining_h:.1f} h to go, "
                            f"stability limit {limit_h:.0f} h"
                        ),
                        now=now,
                        case_id=case.id,
                        shipment_id=shipment.id,
                        dedupe_key=f"fresh:{shipment.id}",
                    )
                    raised += 1
    return raised


def thaw_clock(db: Database, *, now: datetime) -> int:
    """Thawed but not infused within the product's window: start late, then expired."""
    raised = 0
    with db.transaction() as session:
        rows = session.exec(
            select(Case, Product)
            .join(Product, col(Product.code) == col(Case.product))
            .where(Case.status == CaseStatus.thawed)
        ).all()
        thawed_ids = set()
        for case, product in rows:
            thawed_ids.add(case.id)
            thawed_at = session.exec(
                select(Milestone.occurred_at)
                .where(Milestone.case_id == case.id, Milestone.type == "thawed")
                .order_by(col(Milestone.occurred_at).desc())
            ).first()
            if thawed_at is None:
                continue
            minutes = (now - thawed_at).total_seconds() / 60
            if minutes > product.thaw_expiry_min:
                severity, what = Severity.critical, "has expired"
            elif minutes > product.thaw_to_infusion_start_min:
                severity, what = Severity.major, "is past its infusion start window"
            else:
                continue
            alerts.raise_alert(
                session,
                kind=AlertKind.thaw_window,
                severity=severity,
                message=(
                    f"case {case.coi}: product thawed {minutes:.0f} min ago {what} "
                    f"(start within {product.thaw_to_infusion_start_min:.0f} min, expires after "
                    f"{product.thaw_expiry_min:.0f} min)"
                ),
                now=now,
                case_id=case.id,
                dedupe_key=f"thaw:{case.id}",
            )
            raised += 1
        for alert in session.exec(
            select(Alert).where(
                Alert.kind == AlertKind.thaw_window, col(Alert.status) != AlertStatus.resolved
            )
        ):
            if alert.case_id not in thawed_ids:
                resolve(session, dedupe_key=alert.dedupe_key or "", now=now)
    return raised
