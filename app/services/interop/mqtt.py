"""Readings published over MQTT: who may publish for a device, and storing one message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.errors import Forbidden, Unauthorized
from app.services.access import principals
from app.services.coldchain import ingest as readings
from models.coldchain import Device
from models.principal import Principal, Role


def authorise_publisher(
    session: Session, *, api_key: str, secret_key: str, device_id: str, now: datetime
) -> Principal:
    """The principal of this key if it may publish the device's readings (401/403 if not)."""
    principal = principals.authenticate(session, api_key=api_key, secret_key=secret_key, now=now)
    if principal is None:
        raise Unauthorized("invalid or revoked API key")
    if not _may_publish(session, principal, device_id):
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
    bounds: readings.LateBounds = readings.DEFAULT_BOUNDS,
) -> dict[str, Any]:
    """Store a message's readings for its topic's device (flushes); the outcome to publish."""
    passed: list[Any] = []
    origin: list[int] = []  # index in the message of each item passed to ingest
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("device_id") is None:
            item = {**item, "device_id": device_id}
        elif isinstance(item, dict) and item["device_id"] != device_id:
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
