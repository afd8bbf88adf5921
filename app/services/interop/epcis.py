"""EPCIS 2.0 capture and export: the journey's rules applied to GS1 events.

Capture runs in one transaction, in this order, so that readings find the assignments made
by the same document: AssociationEvents and custody ObjectEvents in event-time order, then
every sensor report's reading through the HTTP ingest service (same attachment, ownership,
duplicate and excursion rules), then sensor alarms as alerts. A fault in one event or report
is a ``rejected`` entry with its JSON pointer; the rest is stored.

- Custody: bizStep ``shipping`` → picked_up (handoff when the shipment is already in
  transit, an onward leg), ``transporting`` → handoff, ``receiving`` → delivered. The EPCs
  must name the shipment (its container serial or one of its devices, as given or in
  canonical form) and carry the case's COI (bare, ``&/`` barcode form or
  ``urn:v2v:coi:<COI>``), which is checked exactly as an HTTP scan: a wrong label is refused
  with ``coi-mismatch``, a critical alert and an audit entry. A step already recorded (same
  shipment, action and instant) is a duplicate. Parties are the ``possessing_party`` source
  and destination; a ``geo:`` read point gives the position.
- AssociationEvent (action ADD/DELETE, any bizStep): the parentID names the shipment (its
  container or a device), childEPCs are sensors, paired with (or removed from) the shipment;
  in transit they ride from the event time.
- Alarms: ``ALARM_CONDITION`` (major) and ``ERROR_CONDITION`` (warning) open an alert on the
  shipment the device rides in at the report's time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from app.errors import AppError, Invalid
from app.services.access.principals import register_device
from app.services.access.scope import shipment_scope
from app.services.audit import chain as audit
from app.services.coldchain import ingest as readings
from app.services.identity.coi import CoiFormatError, parse_scan
from app.services.identity.scan import require_coi
from app.services.shipments import lifecycle as shipments
from integrations import epcis
from integrations.epcis import pointer, term
from models.case import Case
from models.principal import Principal, Role
from models.shipment import CustodyAction, CustodyEvent, DeviceAssignment, Shipment
from models.shipment import ShipmentStatus as St

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


def parse(body: bytes) -> epcis.Document:
    """The validated document, or 422 with JSON pointers to the faults (nothing stored)."""
    try:
        return epcis.parse_document(body)
    except epcis.DocumentInvalid as exc:
        first = exc.errors[0] if exc.errors else {"loc": "", "msg": "invalid"}
        raise Invalid(
            f"not a valid EPCIS 2.0 document: {first['loc'] or '/'}: {first['msg']}",
            errors=exc.errors,
        ) from None


def capture(
    session: Session,
    *,
    actor: Principal,
    document: epcis.Document,
    now: datetime,
    future_tolerance_s: int,
) -> epcis.CaptureResult:
    """Apply a validated EPCIS document (flushes; the caller commits)."""
    data = epcis.sensor_data(document)
    if len(data.temperatures) > readings.MAX_BATCH:
        raise Invalid(
            f"at most {readings.MAX_BATCH} readings per document",
            errors=[{"loc": "/epcisBody/eventList", "msg": f"{len(data.temperatures)} readings"}],
        )
    events = document.epcis_body.event_list
    result = epcis.CaptureResult(events=len(events), ignored=data.ignored)
    for loc, reason in data.problems:
        result.reject(loc, reason)
    for i, event in sorted(enumerate(events), key=lambda e: (e[1].event_time, e[0])):
        loc = pointer("epcisBody", "eventList", i)
        step = term(event.biz_step, "BizStep") if event.biz_step else ""
        if event.type == "AssociationEvent":
            _pair(session, actor=actor, event=event, loc=loc, now=now, result=result)
        elif event.type == "ObjectEvent" and step in CUSTODY_STEPS:
            _custody(
                session,
                actor=actor,
                event=event,
                step=step,
                loc=loc,
                now=now,
                future_tolerance_s=future_tolerance_s,
                result=result,
            )
    devices = epcis.Devices(session, actor, data)
    epcis.store_readings(session, actor, devices, data, now, future_tolerance_s, result)
    epcis.raise_alarms(session, devices, data.alarms, now, result)
    return result


def export(session: Session, *, case: Case, now: datetime) -> dict[str, Any]:
    """The case's custody steps and sensor data as an EPCIS 2.0 document (JSON-LD)."""
    return epcis.export_case(session, case=case, now=now)


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


def _custody(
    session: Session,
    *,
    actor: Principal,
    event: epcis.Event,
    step: str,
    loc: str,
    now: datetime,
    future_tolerance_s: int,
    result: epcis.CaptureResult,
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


def _pair(
    session: Session,
    *,
    actor: Principal,
    event: epcis.Event,
    loc: str,
    now: datetime,
    result: epcis.CaptureResult,
) -> None:
    if actor.role not in (Role.admin, Role.courier):
        result.reject(loc, f"role {actor.role} may not pair devices", "forbidden")
        return
    if event.action == "OBSERVE" or not event.child_epcs:
        result.ignored += 1  # an observation of a pairing, or pairs by class: nothing to do
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
        device = epcis.canonical_id(epc)
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
        if any(ride.shipment_id != shipment.id for ride in open_rides):
            result.reject(f"{loc}/childEPCs/{k}", "the device rides in another shipment")
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
