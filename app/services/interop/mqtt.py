"""Readings published over MQTT: who may publish for a device, and storing one message.

The topic's device id is made canonical like every other entry's: a logger publishing on
``v2v/devices/urn:epc:id:giai:4512345.L1/readings`` is the device registered as
``https://id.gs1.org/8004/4512345L1`` (a Digital Link, holding slashes, cannot be one topic
level). Items naming their device may use either form."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.errors import Forbidden, Unauthorized
from app.services.access import principals
from app.services.coldchain import ingest as readings
from app.services.coldchain import rides
from app.services.shipments.device_ids import canonical
from integrations.gs1 import canonical_id
from models.coldchain import Device
from models.principal import Principal, Role


def authorise_publisher(
    session: Session, *, api_key: str, secret_key: str, device_id: str, now: datetime
) -> Principal:
    """The principal of this key if it may publish the device's readings (401/403 if not;
    422 for a malformed GS1 id in the topic)."""
    principal = principals.authenticate(session, api_key=api_key, secret_key=secret_key, now=now)
    if principal is None:
        raise Unauthorized("invalid or revoked API key")
    if not _may_publish(session, principal, canonical(device_id, loc="topic")):
        raise Forbidden(
            f"this key may not publish for device {device_id!r}",
            extra={"principal": f"{principal.id} ({principal.role})"},
        )
    return principal


def _may_publish(session: Session, principal: Principal, device_id: str) -> bool:
    if principal.role == Role.device:
        return principal.device_id == device_id
    if principal.role == Role.courier:
        device = session.get(Device, device_id)
        return device is not None and device.courier == principal.courier
    return principal.role == Role.admin


def ingest_message(
    session: Session,
    *,
    actor: Principal,
    device_id: str,
    items: list[Any],
    now: datetime,
    future_tolerance_s: int,
    bounds: rides.LateBounds = rides.DEFAULT_BOUNDS,
) -> dict[str, Any]:
    """Store a message's readings for its topic's device (flushes); the outcome to publish."""
    device_id = canonical(device_id, loc="topic")
    passed: list[Any] = []
    origin: list[int] = []  # index in the message of each item passed to ingest
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("device_id") is None:
            item = {**item, "device_id": device_id}
        elif isinstance(item, dict) and _named(item["device_id"]) != device_id:
            rejected.append({"index": index, "reason": "device_id is not the topic's device"})
            continue
        passed.append(item)
        origin.append(index)
    result = readings.ingest(
        session,
        actor=actor,
        items=passed,
        now=now,
        future_tolerance_s=future_tolerance_s,
        bounds=bounds,
    )
    rejected += [{**r, "index": origin[r["index"]]} for r in result.rejected]
    return {
        "status": "ok",
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": sorted(rejected, key=lambda r: int(r["index"])),
    }


def _named(given: Any) -> Any:
    # Lenient here: an item's malformed id is refused, with its reason, by the ingest itself.
    return canonical_id(given) if isinstance(given, str) else given
