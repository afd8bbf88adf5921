"""EPCIS custody ObjectEvents and AssociationEvents applied to the journey (see
``epcis_capture`` for the mapping): the shipment an event names, the COI check, pairings."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from app.errors import AppError, Conflict, Invalid
from app.services.access.principals import register_device
from app.services.access.scope import shipment_scope
from app.services.audit import chain as audit
from app.services.identity.coi import CoiFormatError, parse_scan
from app.services.identity.scan import require_coi
from app.services.shipments import lifecycle as shipments
from app.services.shipments.device_ids import canonical
from app.services.shipments.devices import ensure_free
from integrations import epcis
from integrations.epcis import term
from models.case import Case
from models.principal import Principal, Role
from models.shipment import CustodyAction, CustodyEvent, DeviceAssignment, Shipment
from models.shipment import ShipmentStatus as St

if TYPE_CHECKING:
    from app.services.interop.epcis_capture import CaptureResult

A = CustodyAction
# As for devices named at shipment creation (models.shipment.ShipmentCreate).
MAX_DEVICES, MAX_DEVICE_ID = 16, 200
DEVICE_LIMITS = f"a shipment carries at most {MAX_DEVICES} devices, ids of at most 200 characters"
CUSTODY_STEPS = {
    "shipping": (A.picked_up, A.handoff),
    "transporting": (A.handoff,),
    "receiving": (A.delivered,),
}
_PREFERENCE = {
    "shipping": (St.created, St.in_transit, St.delivered),
    "transporting": (St.in_transit, St.delivered, St.created),
    "receiving": (St.in_transit, St.delivered, St.created),
    "pairing": (St.in_transit, St.created, St.delivered),
}


def _shipment_for(
    session: Session, actor: Principal, epcs: Iterable[str], prefer: tuple[St, ...]
) -> Shipment | None:
    """The shipment of the caller named by a container serial or a device among the EPCs."""
    given = list(epcs)
    ids = set(given) | {epcis.canonical_id(epc) for epc in given}
    scope = shipment_scope(actor)
    riding = select(DeviceAssignment.shipment_id).where(col(DeviceAssignment.device_id).in_(ids))
    found = {
        s.id: s
        for s in session.exec(
            select(Shipment).where(
                scope, col(Shipment.container_serial).in_(ids) | col(Shipment.id).in_(riding)
            )
        )
    }
    for s in session.exec(select(Shipment).where(scope, Shipment.status == St.created)):
        if ids & set(s.device_ids):
            found[s.id] = s
    if not found:
        return None
    rank = {status.value: i for i, status in enumerate(prefer)}
    best = min(found.values(), key=lambda s: (rank.get(s.status, 9), -s.created_at.timestamp()))
    return session.exec(
        select(Shipment).where(Shipment.id == best.id).with_for_update(key_share=True)
    ).one()


def _labels(epcs: Iterable[str]) -> list[tuple[str, str]]:
    """(scanned text, COI) for each EPC that is a chain-of-identity label."""
    out = []
    for epc in epcs:
        text = epcis.coi_candidate(epc)
        try:
            out.append((text, parse_scan(text).coi))
        except CoiFormatError:
            continue
    return out


def record(
    session: Session,
    *,
    actor: Principal,
    event: epcis.Event,
    step: str,
    loc: str,
    now: datetime,
    future_tolerance_s: int,
    result: CaptureResult,
) -> None:
    if Role(actor.role) not in shipments.CUSTODY_ROLES:
        result.reject(loc, f"role {actor.role} may not record custody", "forbidden")
        return
    shipment = _shipment_for(session, actor, event.epc_list, _PREFERENCE[step])
    if shipment is None:
        result.reject(
            loc + "/epcList", "no shipment of yours has a container or device among these EPCs"
        )
        return
    case = session.exec(
        select(Case).where(Case.id == shipment.case_id).with_for_update(key_share=True)
    ).one()
    labels = _labels(event.epc_list)
    if not labels:
        result.reject(
            loc + "/epcList",
            "custody is identity-bearing: put the chain-of-identity label (COI) among the EPCs",
            "coi-required",
        )
        return
    # Any label that is not this case's must be refused, even beside the right one.
    scanned = next((text for text, coi in labels if coi != case.coi), labels[0][0])
    at = event.event_time.astimezone(UTC)
    actions = CUSTODY_STEPS[step]
    try:
        if session.exec(
            select(CustodyEvent.id).where(
                CustodyEvent.shipment_id == shipment.id,
                col(CustodyEvent.action).in_([a.value for a in actions]),
                CustodyEvent.occurred_at == at,
            )
        ).first():
            require_coi(
                case=case,
                scanned=scanned,
                step=f"custody {step}",
                actor=actor,
                now=now,
                shipment_id=shipment.id,
            )
            result.custody_duplicates += 1
            return
        action = actions[0] if shipment.status == St.created or len(actions) == 1 else actions[1]
        geo = epcis.parse_geo(event.read_point.id) if event.read_point else None
        shipments.record_custody(
            session,
            shipment=shipment,
            case=case,
            actor=actor,
            action=action,
            occurred_at=at,
            from_party=_party(
                [s.source for s in event.source_list if _possessing(s.type)]
                or [s.source for s in event.source_list]
            ),
            to_party=_party(
                [d.destination for d in event.destination_list if _possessing(d.type)]
                or [d.destination for d in event.destination_list]
            ),
            coi=scanned,
            lat=geo[0] if geo else None,
            lon=geo[1] if geo else None,
            now=now,
            future_tolerance_s=future_tolerance_s,
        )
        result.custody += 1
    except AppError as exc:
        if exc.on_refusal is not None:  # checks precede writes: nothing to roll back
            exc.on_refusal(session)
        result.reject(loc, exc.detail, exc.code)


def _possessing(kind: str) -> bool:
    return term(kind, "SDT") == "possessing_party"


def _party(uris: list[str]) -> str:
    return (epcis.party_name(uris[0])[:200] or "unnamed") if uris else "not stated (EPCIS)"


def pair(
    session: Session,
    *,
    actor: Principal,
    event: epcis.Event,
    loc: str,
    now: datetime,
    result: CaptureResult,
) -> None:
    if actor.role not in (Role.admin, Role.courier):
        result.reject(loc, f"role {actor.role} may not pair devices", "forbidden")
        return
    if event.action == "OBSERVE" or not event.child_epcs:
        reason = "an OBSERVE or class-level pairing: nothing to pair"
        result.ignore([(loc, reason)])
        return
    shipment = _shipment_for(session, actor, [event.parent_id or ""], _PREFERENCE["pairing"])
    if shipment is None:
        result.reject(loc + "/parentID", "not the container or a device of a shipment of yours")
        return
    at = event.event_time.astimezone(UTC)
    before = list(shipment.device_ids)
    devices = list(before)
    changed = False
    for k, epc in enumerate(event.child_epcs):
        try:
            device = canonical(epc.strip(), loc=f"{loc}/childEPCs/{k}")
        except Invalid as exc:
            result.reject(f"{loc}/childEPCs/{k}", exc.detail, exc.code)
            continue
        open_rides = list(
            session.exec(
                select(DeviceAssignment).where(
                    DeviceAssignment.device_id == device,
                    col(DeviceAssignment.assigned_until).is_(None),
                )
            )
        )
        if event.action == "DELETE":
            devices = [d for d in devices if d != device]
            for ride in open_rides:
                if ride.shipment_id == shipment.id:
                    ride.assigned_until = max(at, ride.assigned_from)
                    session.add(ride)
                    changed = True
            continue
        if len(device) > MAX_DEVICE_ID or (device not in devices and len(devices) >= MAX_DEVICES):
            result.reject(f"{loc}/childEPCs/{k}", DEVICE_LIMITS)
            continue
        try:
            register_device(session, device_id=device, courier=shipment.courier)
        except Invalid as exc:
            result.reject(f"{loc}/childEPCs/{k}", exc.detail)
            continue
        try:
            ensure_free(session, actor=actor, device_ids=[device], shipment_id=shipment.id)
        except Conflict as exc:
            result.reject(f"{loc}/childEPCs/{k}", exc.detail, exc.code)
            continue
        if device not in devices:
            devices.append(device)
        if shipment.status == St.in_transit and not open_rides:
            start = max(at, shipment.picked_up_at or at)
            session.add(
                DeviceAssignment(device_id=device, shipment_id=shipment.id, assigned_from=start)
            )
            changed = True
    result.associations += 1
    if devices == before and not changed:
        return
    shipment.device_ids = devices
    session.add(shipment)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action=f"shipment.devices_{'removed' if event.action == 'DELETE' else 'added'}",
        entity="shipment",
        entity_id=shipment.id,
        at=now,
        before={"device_ids": before},
        after={"device_ids": devices, "event_time": at},
        reason="EPCIS AssociationEvent",
    )
