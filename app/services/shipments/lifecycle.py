"""Shipments and their chain of custody, linked to the journey.

Picking up the inbound shipment moves the case into transit to manufacturing; picking up the
outbound one moves it into transit to the treatment site. Every scan presents the COI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.db import hold_row_lock, row_for_write
from app.errors import Conflict, Forbidden, IllegalTransition, Invalid
from app.raw import Raw, TableInsert
from app.services.access.scope import scoped_case
from app.services.audit import chain as audit
from app.services.identity.scan import require_coi
from app.services.journey.events import check_instant, check_physical_order
from app.services.metrics import turnaround_rows
from app.services.shipments import delivery, devices
from app.services.shipments.device_ids import canonical_list
from models.case import Case, CaseStatus, Milestone
from models.principal import Principal, Role
from models.shipment import (
    CustodyAction,
    CustodyEvent,
    DeviceAssignment,
    Direction,
    Shipment,
    ShipmentCreate,
    ShipmentStatus,
)

S = CaseStatus
# direction -> (case states in which it may be created, state required at pickup,
#               state after pickup, roles that create it)
_RULES: dict[Direction, tuple[frozenset[CaseStatus], CaseStatus, CaseStatus, frozenset[Role]]] = {
    Direction.to_manufacturing: (
        frozenset({S.apheresis_scheduled, S.collected}),
        S.collected,
        S.in_transit_to_manufacturing,
        frozenset({Role.admin, Role.coordinator}),
    ),
    Direction.to_site: (
        frozenset({S.in_manufacturing, S.released}),
        S.released,
        S.in_transit_to_site,
        frozenset({Role.admin, Role.manufacturer}),
    ),
}
# Who sends (creates and may cancel) a shipment of each direction.
SENDERS = {direction: rule[3] for direction, rule in _RULES.items()}
CUSTODY_ROLES = frozenset({Role.admin, Role.courier, Role.coordinator, Role.manufacturer})
ACTIVE = (ShipmentStatus.created.value, ShipmentStatus.in_transit.value)


def create(
    session: Session,
    *,
    case_id: str,
    actor: Principal,
    direction: Direction,
    origin: str,
    destination: str,
    profile: str,
    courier: str,
    container_serial: str,
    container_kind: str,
    hold_time_h: float | None,
    device_ids: list[str],
    coi: str,
    now: datetime,
) -> Shipment:
    """Create a shipment for a case in the actor's scope, after checking its label and state."""
    case = scoped_case(session, principal=actor, case_id=case_id, lock=True)
    states, _, _, roles = _RULES[direction]
    if Role(actor.role) not in roles:
        raise Forbidden(f"role {actor.role} may not create a {direction} shipment")
    device_ids = canonical_list(device_ids, loc="body/device_ids")
    active = _check_reference(
        session,
        case=case,
        direction=direction,
        legs=(origin, destination, profile),
        courier=courier,
    )
    if CaseStatus(case.status) not in states:
        raise IllegalTransition(
            f"a {direction} shipment cannot be created while the case is {case.status}",
            extra={"current_status": case.status},
        )
    require_coi(case=case, scanned=coi, step=f"shipment {direction}", actor=actor, now=now)
    devices.require_registered(session, actor=actor, device_ids=device_ids, courier=courier)
    if active is not None:
        raise Conflict(
            f"the case already has an open {direction} shipment",
            code="shipment-exists",
            extra={"shipment_id": active},
        )
    devices.ensure_free(session, actor=actor, device_ids=device_ids)
    shipment = Shipment(
        case_id=case.id,
        direction=direction.value,
        origin=origin,
        destination=destination,
        profile=profile,
        courier=courier,
        container_serial=container_serial,
        container_kind=container_kind,
        hold_time_h=hold_time_h,
        device_ids=device_ids,
        created_at=now,
        created_by=actor.id,
    )
    session.add(shipment)
    session.flush()
    turnaround_rows.refresh(session, case_id=case.id)
    audit.append(
        session,
        actor=actor,
        action="shipment.created",
        entity="shipment",
        entity_id=shipment.id,
        at=now,
        after={
            "case_id": case.id,
            "direction": direction.value,
            "origin": origin,
            "destination": destination,
            "profile": profile,
            "courier": courier,
            "container_serial": container_serial,
            "device_ids": device_ids,
        },
    )
    return shipment


# The sites, profile and courier a shipment names, the route its case follows and the case's
# open shipment of that direction, in one statement (six round trips on PostgreSQL before).
_REFERENCE = """
SELECT route.code, route.manufacturing_site, route.inbound_profile, route.outbound_profile,
    EXISTS (SELECT 1 FROM site WHERE code = ?), EXISTS (SELECT 1 FROM site WHERE code = ?),
    EXISTS (SELECT 1 FROM profile WHERE code = ?), EXISTS (SELECT 1 FROM courier WHERE code = ?),
    (SELECT id FROM shipment WHERE case_id = ? AND direction = ? AND status IN (?, ?) LIMIT 1)
FROM route WHERE route.code = ?
"""


def _check_reference(
    session: Session,
    *,
    case: Case,
    direction: Direction,
    legs: tuple[str, str, str],
    courier: str,
) -> str | None:
    """The shipment names known sites, profile and courier, and follows its case's route:
    its sites and temperature profile. The id of the case's open shipment of this direction,
    if it has one (the caller refuses it after its other checks)."""
    origin, destination, profile = legs
    params = (origin, destination, profile, courier, case.id, direction.value, *ACTIVE)
    row = Raw.of(session).one(_REFERENCE, (*params, case.route))
    if row is None:  # guaranteed by foreign keys
        raise RuntimeError(f"inconsistent data: route {case.route} missing")
    route, factory, inbound, outbound, *known, active = row
    origin_known, destination_known, profile_known, courier_known = (bool(k) for k in known)
    for loc, code, found in (
        ("origin", origin, origin_known),
        ("destination", destination, destination_known),
    ):
        if not found:
            raise Invalid(
                f"unknown site {code!r}", errors=[{"loc": f"body/{loc}", "msg": "unknown"}]
            )
    if origin == destination:
        raise Invalid(
            "origin and destination are the same site",
            errors=[{"loc": "body/destination", "msg": "same as origin"}],
        )
    if not profile_known:
        raise Invalid(
            f"unknown profile {profile!r}", errors=[{"loc": "body/profile", "msg": "unknown"}]
        )
    if not courier_known:
        raise Invalid(
            f"unknown courier {courier!r}", errors=[{"loc": "body/courier", "msg": "unknown"}]
        )
    if direction == Direction.to_manufacturing:
        expected = (case.site, factory, inbound)
    else:
        expected = (factory, case.site, outbound)
    fields = ("origin", "destination", "profile")
    errors = [
        {"loc": f"body/{field}", "msg": f"expected {want} (route {route})"}
        for field, got, want in zip(fields, legs, expected, strict=True)
        if got != want
    ]
    if errors:
        raise Invalid(
            f"a {direction} shipment of this case goes {expected[0]} -> {expected[1]} "
            f"under profile {expected[2]} (route {route})",
            code="route-mismatch",
            errors=errors,
            extra={"expected": dict(zip(fields, expected, strict=True))},
        )
    return None if active is None else str(active)


def create_requested(
    session: Session, *, actor: Principal, request: ShipmentCreate, now: datetime
) -> Shipment:
    """``create`` from the API's request body (the workspace form passes fields itself)."""
    return create(
        session,
        case_id=request.case_id,
        actor=actor,
        direction=request.direction,
        origin=request.origin,
        destination=request.destination,
        profile=request.profile,
        courier=request.courier,
        container_serial=request.container.serial,
        container_kind=request.container.kind,
        hold_time_h=request.container.hold_time_h,
        device_ids=request.device_ids,
        coi=request.coi,
        now=now,
    )


def record_custody(
    session: Session,
    *,
    shipment: Shipment,
    actor: Principal,
    action: CustodyAction,
    occurred_at: datetime,
    from_party: str,
    to_party: str,
    coi: str,
    lat: float | None,
    lon: float | None,
    now: datetime,
    future_tolerance_s: int,
    case: Case | None = None,
) -> CustodyEvent:
    """Record a custody scan; pickup and delivery move the shipment (and the case)."""
    if case is None:  # feeds that hold the case already pass it; otherwise it is locked here
        case = row_for_write(session, Case, shipment.case_id)
        if case is None:  # a shipment's case exists (foreign key)
            raise RuntimeError(f"inconsistent data: shipment {shipment.id} has no case")
        hold_row_lock(session, "cases", case.id)
    if Role(actor.role) not in CUSTODY_ROLES:
        raise Forbidden(f"role {actor.role} may not record custody")
    direction = Direction(shipment.direction)
    _, pickup_state, transit_state, _ = _RULES[direction]
    before: dict[str, Any] = {"shipment_status": shipment.status, "case_status": case.status}
    if action == CustodyAction.picked_up:
        if shipment.status != ShipmentStatus.created:
            raise IllegalTransition(f"cannot pick up a shipment that is {shipment.status}")
        if case.status != pickup_state:
            raise IllegalTransition(
                f"the case is {case.status}; pickup needs it {pickup_state.value}",
                extra={"current_status": case.status},
            )
    elif shipment.status != ShipmentStatus.in_transit:
        raise IllegalTransition(
            f"cannot record {action.value} on a shipment that is {shipment.status}"
        )
    check_instant(occurred_at=occurred_at, now=now, future_tolerance_s=future_tolerance_s)
    require_coi(
        case=case,
        scanned=coi,
        step=f"custody {action.value}",
        actor=actor,
        now=now,
        shipment_id=shipment.id,
    )
    check_physical_order(session, case=case, occurred_at=occurred_at)
    if action == CustodyAction.picked_up:
        devices.ensure_free(
            session, actor=actor, device_ids=shipment.device_ids, shipment_id=shipment.id
        )

    if action == CustodyAction.picked_up:
        shipment.status = ShipmentStatus.in_transit.value
        shipment.picked_up_at = occurred_at
        for device_id in shipment.device_ids:
            session.add(
                DeviceAssignment(
                    device_id=device_id, shipment_id=shipment.id, assigned_from=occurred_at
                )
            )
        case.status = transit_state.value
        case.updated_at = now
        session.add(case)
        session.add(
            Milestone(
                case_id=case.id,
                type=f"shipped_{direction.value}",
                cycle=case.cycle,
                occurred_at=occurred_at,
                recorded_at=now,
                site=shipment.origin,
                actor=actor.name,
                actor_id=actor.id,
            )
        )
    elif action == CustodyAction.delivered:
        shipment.status = ShipmentStatus.delivered.value
        shipment.delivered_at = occurred_at
        delivery.end_transit(session, shipment=shipment, at=occurred_at, now=now)
    session.add(shipment)
    event = CustodyEvent(
        shipment_id=shipment.id,
        action=action.value,
        occurred_at=occurred_at,
        recorded_at=now,
        from_party=from_party,
        to_party=to_party,
        lat=lat,
        lon=lon,
        actor=actor.name,
        actor_id=actor.id,
    )
    _insert_custody(session, event)
    audit.append(
        session,
        actor=actor,
        action=f"shipment.{action.value}",
        entity="shipment",
        entity_id=shipment.id,
        at=now,
        before=before,
        after={
            "shipment_status": shipment.status,
            "case_status": case.status,
            "occurred_at": occurred_at,
            "from_party": from_party,
            "to_party": to_party,
        },
    )
    return event


def custody_chain(session: Session, *, shipment_id: str) -> list[CustodyEvent]:
    """The shipment's custody scans in the order they happened."""
    return list(
        session.exec(
            select(CustodyEvent)
            .where(CustodyEvent.shipment_id == shipment_id)
            .order_by(col(CustodyEvent.occurred_at), col(CustodyEvent.id))
        )
    )


_INSERT_CUSTODY = TableInsert(CustodyEvent.__table__, skip=("id",), returning="id")  # type: ignore[attr-defined]


def _insert_custody(session: Session, event: CustodyEvent) -> None:
    """Store a custody event by the driver's own statement, after whatever the step changed
    through the ORM (the ORM's flush of the one row was a tenth of a handoff's CPU); the
    event gets its id and stays out of the session."""
    session.flush()
    raw = Raw.of(session)
    (row,) = raw.all(_INSERT_CUSTODY.sql, _INSERT_CUSTODY.values_of(raw, event))
    event.id = int(row[0])
