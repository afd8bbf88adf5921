"""Data loggers: who registers them, and the rule that a logger rides in one open shipment.

A logger's readings go to the shipment it is assigned to, so a device listed in two open
shipments would send one patient's box temperatures and position to another hospital. Only
the courier organisation that owns a logger (or an admin) registers it; a hospital or a
factory may only list loggers its courier has registered.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.errors import Conflict, Forbidden, Invalid
from app.raw import Raw
from app.services.access.principals import register_device
from app.services.access.scope import shipment_scope
from app.services.audit import chain as audit
from app.services.shipments.device_ids import canonical
from models.coldchain import Device
from models.principal import Principal, Role
from models.reference import Courier
from models.shipment import Shipment, ShipmentStatus

OPEN = (ShipmentStatus.created.value, ShipmentStatus.in_transit.value)
REGISTRARS = frozenset({Role.admin, Role.courier})


def register(
    session: Session, *, actor: Principal, device_id: str, courier: str | None, now: datetime
) -> tuple[Device, bool]:
    """Register a logger for the caller's courier organisation (admin: any); (row, created).

    The id is made canonical first: a logger registered as its EPC URN and again as its
    Digital Link is one device (the second call answers "already yours")."""
    if Role(actor.role) not in REGISTRARS:
        raise Forbidden(f"role {actor.role} may not register devices")
    if actor.role == Role.courier:
        if courier is not None and courier != actor.courier:
            raise Forbidden("a courier registers devices for its own organisation only")
        courier = actor.courier
    if not courier:
        raise Invalid(
            "name the courier organisation that owns the device",
            errors=[{"loc": "body/courier", "msg": "required"}],
        )
    if session.get(Courier, courier) is None:
        raise Invalid(
            f"unknown courier {courier!r}", errors=[{"loc": "body/courier", "msg": "unknown"}]
        )
    given, device_id = device_id, canonical(device_id, loc="body/device_id")
    existing = session.get(Device, device_id)
    if existing is not None:
        if existing.courier != courier:
            raise Conflict(
                f"device {device_id!r} is registered to another courier organisation",
                code="device-owned",
                extra={"device_id": device_id},
            )
        return existing, False
    device = register_device(session, device_id=device_id, courier=courier)
    audit.append(
        session,
        actor=actor,
        action="device.registered",
        entity="device",
        entity_id=device_id,
        at=now,
        after={"courier": courier, **({"as_given": given} if given != device_id else {})},
    )
    return device, True


def require_registered(
    session: Session, *, actor: Principal, device_ids: Iterable[str], courier: str
) -> None:
    """Every device listed on a shipment belongs to its courier; an admin may register one.
    The ids are canonical (``device_ids.canonical_list``)."""
    for k, device_id in enumerate(device_ids):
        device = session.get(Device, device_id)
        loc = f"body/device_ids/{k}"
        if device is None and actor.role == Role.admin:
            register_device(session, device_id=device_id, courier=courier)
        elif device is None:
            raise Invalid(
                f"device {device_id!r} is not registered: the courier {courier} must register "
                "it first (POST /api/v1/devices)",
                code="device-unknown",
                errors=[{"loc": loc, "msg": f"not registered by courier {courier}"}],
            )
        elif device.courier != courier:
            raise Invalid(
                f"device {device_id!r} belongs to another courier organisation, not {courier}",
                errors=[{"loc": loc, "msg": "owned by another courier"}],
            )


def ensure_free(
    session: Session,
    *,
    actor: Principal,
    device_ids: Iterable[str],
    shipment_id: str | None = None,
) -> None:
    """Refuse (409 ``device-in-use``) a device riding in another open shipment.

    Open means created (listed in its ``device_ids``) or in transit (an assignment without
    an end). The devices' rows are locked so two shipments cannot take one logger at once.
    The ids are canonical, as every stored one is (``device_ids``, migration 0011), so a
    logger listed as its EPC URN is found under its Digital Link.
    """
    wanted = list(dict.fromkeys(device_ids))
    if not wanted:
        return
    names = set(wanted)
    holders: dict[str, set[str]] = {}
    session.flush()  # the statements below read the tables, not the session
    raw = Raw.of(session)
    # The first statement is run for its locks: read after them, riding and listed are current.
    _, riding, listed = raw.pipelined(_holders_statements(raw, wanted, shipment_id))
    for other_id, device_id in riding:
        holders.setdefault(device_id, set()).add(other_id)
    open_ids: set[str] = set()
    for other_id, listed_ids in listed:
        open_ids.add(other_id)
        ids = json.loads(listed_ids) if isinstance(listed_ids, str) else listed_ids
        for device_id in set(ids or []) & names:
            holders.setdefault(device_id, set()).add(other_id)
    for device_id in wanted:
        others = {s for s in holders.get(device_id, set()) if s in open_ids} - {shipment_id}
        if not others:
            continue
        # Name the other shipment only to a caller who may see it anyway.
        visible = session.exec(
            select(Shipment.id).where(col(Shipment.id).in_(others), shipment_scope(actor))
        ).first()
        raise Conflict(
            f"device {device_id!r} rides in another open shipment; it can join this one only "
            "after that shipment is delivered or cancelled",
            code="device-in-use",
            extra={"device_id": device_id, **({"shipment_id": visible} if visible else {})},
        )


def _holders_statements(
    raw: Raw, wanted: list[str], shipment_id: str | None
) -> list[tuple[str, list[Any]]]:
    """Lock the devices' rows, then read the open assignments and the open shipments' lists
    (one round trip on PostgreSQL, pipelined: each read's snapshot is taken after the locks)."""
    marks = raw.marks(wanted)  # placeholders only: the ids are parameters
    lock = f"SELECT id FROM device WHERE id IN ({marks})"  # noqa: S608
    lock += " FOR NO KEY UPDATE" if raw.postgres else ""
    riding = (
        "SELECT shipment_id, device_id FROM device_assignment "  # noqa: S608
        f"WHERE device_id IN ({marks}) AND assigned_until IS NULL"
    )
    listed = "SELECT id, device_ids FROM shipment WHERE status IN (?, ?)"
    listed_params: list[Any] = list(OPEN)
    if shipment_id is not None:
        listed += " AND id <> ?"
        listed_params.append(shipment_id)
    return [(lock, wanted), (riding, wanted), (listed, listed_params)]
