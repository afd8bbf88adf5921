"""The cold chain's scheduled rules: replaying marked shipments, loss of signal, dry-shipper
hold time and fresh stability, the thaw clock.

Alerts carry dedupe keys (raising twice refreshes, never duplicates) and are resolved when
their cause is gone, so each rule may run any number of times, on any instance. Functions
take the caller's session and ``now`` and flush; the job adapter commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Table, or_
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app.services.alerts import lifecycle as alerts
from app.services.coldchain import alarms
from app.services.coldchain import engine as coldchain
from app.services.coldchain.alarms import AlertSpec
from app.times import from_ms, to_ms
from models.alert import Alert, AlertKind, AlertStatus
from models.case import Case, CaseStatus, Milestone
from models.coldchain import ShipmentState
from models.reference import Product, Profile, RouteLeg
from models.shipment import Shipment, ShipmentStatus

SHIPMENTS: Table = Shipment.__table__  # type: ignore[attr-defined]
STATES: Table = ShipmentState.__table__  # type: ignore[attr-defined]
PROFILES: Table = Profile.__table__  # type: ignore[attr-defined]


def resolve(session: Session, *, dedupe_key: str, now: datetime) -> None:
    """Resolve the unresolved alerts raised under this dedupe key (their cause is gone)."""
    for alert in session.exec(
        select(Alert).where(
            Alert.dedupe_key == dedupe_key, col(Alert.status) != AlertStatus.resolved
        )
    ):
        alerts.resolve(session, alert=alert, now=now)


# ---- replay -------------------------------------------------------------------------------


def marked_for_replay(session: Session, *, limit: int) -> list[str]:
    """Shipments that received late or simultaneous readings, up to ``limit``."""
    return list(
        session.exec(
            select(ShipmentState.shipment_id).where(col(ShipmentState.needs_reeval)).limit(limit)
        )
    )


def replay(session: Session, *, shipment_id: str, now: datetime) -> None:
    """Replay one shipment's stored readings and reconcile its excursions and alerts."""
    shipment = session.get(Shipment, shipment_id)
    if shipment is None:  # guaranteed by foreign keys and state
        raise RuntimeError("inconsistent data: shipment missing")
    profile = session.get(Profile, shipment.profile)
    if profile is None:  # guaranteed by foreign keys and state
        raise RuntimeError("inconsistent data: profile missing")
    coldchain.reevaluate(session, shipment=shipment, profile=profile, now=now)


# ---- loss of signal -----------------------------------------------------------------------


@dataclass
class SignalCheck:
    """What the loss-of-signal rule would change: alerts to raise, alert keys to resolve."""

    overdue: list[AlertSpec] = field(default_factory=list)
    quiet: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.overdue or self.quiet)


def check_signal(session: Session, *, now: datetime) -> SignalCheck:
    """Find in-transit shipments silent for longer than their profile's gap (reads only).

    The comparison runs in the database, on the detector state's newest timestamp, so a
    sweep over thousands of healthy shipments returns nothing to Python.
    """
    s, st, p = SHIPMENTS.c, STATES.c, PROFILES.c
    silent = session.execute(
        select_columns(s.id, s.case_id, s.picked_up_at, st.newest_ts_ms, p.max_gap_min)
        .select_from(
            SHIPMENTS.join(PROFILES, p.code == s.profile).outerjoin(STATES, st.shipment_id == s.id)
        )
        .where(
            s.status == ShipmentStatus.in_transit.value,
            or_(st.newest_ts_ms.is_(None), st.newest_ts_ms < to_ms(now) - p.max_gap_min * 60_000),
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
    check = SignalCheck()
    for shipment_id, case_id, picked_up_at, newest_ms, max_gap_min in silent:
        spec = alarms.loss_of_signal(
            shipment_id=shipment_id,
            case_id=case_id,
            last_at=from_ms(newest_ms) if newest_ms is not None else picked_up_at,
            max_gap_min=max_gap_min,
            now=now,
        )
        if spec is not None:
            check.overdue.append(spec)
    check.quiet = open_keys - {spec.dedupe_key for spec in check.overdue}
    return check


def apply_signal(session: Session, *, check: SignalCheck, now: datetime) -> int:
    """Raise the overdue shipments' alerts, resolve the others'; the number raised."""
    for spec in check.overdue:
        alarms.raise_spec(session, spec, now=now)
    # Signal back, or the shipment delivered: those alerts are over.
    for key in check.quiet:
        resolve(session, dedupe_key=key, now=now)
    return len(check.overdue)


# ---- hold time and fresh stability --------------------------------------------------------


def _expected_transit_h(session: Session, shipment: Shipment, case: Case) -> float:
    direction = "inbound" if shipment.direction == "to_manufacturing" else "outbound"
    legs = session.exec(
        select(RouteLeg.expected_h).where(
            RouteLeg.route_code == case.route, RouteLeg.direction == direction
        )
    ).all()
    return float(sum(legs))


def _latest_milestone(session: Session, case_id: str, type_: str) -> datetime | None:
    return session.exec(
        select(Milestone.occurred_at)
        .where(Milestone.case_id == case_id, Milestone.type == type_, Milestone.status != "voided")
        .order_by(col(Milestone.occurred_at).desc())
    ).first()


def hold_time(session: Session, *, now: datetime) -> int:
    """Dry-shipper hold time and fresh-material stability at risk, for shipments in transit."""
    raised = 0
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
            spec = alarms.hold_time(
                shipment_id=shipment.id,
                case_id=case.id,
                elapsed_h=elapsed_h,
                remaining_h=remaining_h,
                hold_h=hold_h,
            )
            if spec is not None:
                alarms.raise_spec(session, spec, now=now)
                raised += 1
        limit_h = profile.max_trip_h or product.fresh_max_h
        if not profile.cryogenic and limit_h and shipment.direction == "to_manufacturing":
            collected = _latest_milestone(session, case.id, "collected")
            if collected is None:
                continue
            spec = alarms.fresh_stability(
                shipment_id=shipment.id,
                case_id=case.id,
                coi=case.coi,
                age_h=(now - collected).total_seconds() / 3600,
                remaining_h=remaining_h,
                limit_h=limit_h,
            )
            if spec is not None:
                alarms.raise_spec(session, spec, now=now)
                raised += 1
    return raised


# ---- thaw clock ---------------------------------------------------------------------------


def thaw_clock(session: Session, *, now: datetime) -> int:
    """Thawed but not infused within the product's window: start late, then expired."""
    raised = 0
    rows = session.exec(
        select(Case, Product)
        .join(Product, col(Product.code) == col(Case.product))
        .where(Case.status == CaseStatus.thawed)
    ).all()
    thawed_ids = set()
    for case, product in rows:
        thawed_ids.add(case.id)
        thawed_at = _latest_milestone(session, case.id, "thawed")
        if thawed_at is None:
            continue
        spec = alarms.thaw_window(
            case_id=case.id,
            coi=case.coi,
            minutes=(now - thawed_at).total_seconds() / 60,
            start_min=product.thaw_to_infusion_start_min,
            expiry_min=product.thaw_expiry_min,
        )
        if spec is not None:
            alarms.raise_spec(session, spec, now=now)
            raised += 1
    for alert in session.exec(
        select(Alert).where(
            Alert.kind == AlertKind.thaw_window, col(Alert.status) != AlertStatus.resolved
        )
    ):
        if alert.case_id not in thawed_ids:
            # Infused (or cancelled): the product's clock has stopped.
            stopped = session.get(Case, alert.case_id) if alert.case_id else None
            why = f"case {stopped.status}" if stopped is not None else "case no longer thawed"
            alerts.resolve(session, alert=alert, now=now, reason=why)
    return raised
