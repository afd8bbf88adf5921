"""Sensor data of a capture into the cold chain: readings through the ingest service (same
attachment, ownership, duplicate and excursion rules as ``POST /readings``), alarms as alerts
on the shipment the device rides in at the report's time."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING

from sqlmodel import Session

from app.services.alerts.lifecycle import raise_alert
from app.services.coldchain import ingest as readings
from app.services.coldchain import rides
from app.times import rfc3339, to_ms
from integrations.epcis import Alarm, DeviceRef, SensorData, reading_items
from models.alert import AlertKind, Severity
from models.principal import Principal
from models.shipment import Shipment

if TYPE_CHECKING:
    from app.services.interop.epcis_capture import CaptureResult

ALARM_SEVERITY = {"ALARM_CONDITION": Severity.major, "ERROR_CONDITION": Severity.warning}
NO_DEVICE = (
    "no device: give sensorMetadata.deviceID (or the report's deviceID), or exactly one "
    "of your devices among the event's EPCs"
)


class Devices:
    """Resolves a report's device: its deviceID, or the one of the event's EPCs we know."""

    def __init__(self, session: Session, actor: Principal, data: SensorData) -> None:
        refs = [m.device for m in data.temperatures + data.extras] + [a.device for a in data.alarms]
        ids = {r.explicit for r in refs if r.explicit} | {c for r in refs for c in r.candidates}
        self.owned, self.assignments = rides.owned_rides(session, actor, ids)

    def resolve(self, ref: DeviceRef) -> str | None:
        """The device id to use, or None when the event does not say which device it is."""
        if ref.explicit:
            return ref.explicit
        known = [c for c in ref.candidates if c in self.owned]
        if len(known) == 1:
            return known[0]
        return ref.candidates[0] if not known and len(ref.candidates) == 1 else None


def store_readings(
    session: Session,
    *,
    actor: Principal,
    devices: Devices,
    data: SensorData,
    now: datetime,
    future_tolerance_s: int,
    result: CaptureResult,
    bounds: rides.LateBounds = rides.DEFAULT_BOUNDS,
) -> None:
    """Store the document's readings as ``POST /readings`` would; faults by JSON pointer."""
    batch = reading_items(data, devices.resolve, limits=readings.OPTIONAL, no_device=NO_DEVICE)
    result.ignore(batch.ignored)
    for loc, reason in batch.problems:
        result.reject(loc, reason)
    outcome = readings.ingest(
        session,
        actor=actor,
        items=batch.items,
        now=now,
        future_tolerance_s=future_tolerance_s,
        bounds=bounds,
    )
    result.readings += outcome.accepted
    result.duplicates += outcome.duplicates
    for entry in outcome.rejected:
        result.reject(batch.pointers[int(entry["index"])], str(entry["reason"]))


def raise_alarms(
    session: Session,
    *,
    devices: Devices,
    alarms: list[Alarm],
    now: datetime,
    result: CaptureResult,
) -> None:
    """Open (or refresh) an alert per sensor alarm on the shipment its device rides in."""
    for alarm in alarms:
        device = devices.resolve(alarm.device)
        if device is None or device not in devices.owned:
            unknown = "unknown device, or not one of your organisation's"
            result.reject(alarm.pointer, NO_DEVICE if device is None else unknown)
            continue
        shipment_id = devices.assignments.shipment_at(device, to_ms(alarm.at))
        shipment = session.get(Shipment, shipment_id) if shipment_id else None
        if shipment is None:
            result.reject(alarm.pointer, "device is not assigned to a shipment at that time")
            continue
        at = rfc3339(alarm.at)
        key = hashlib.sha256(f"{device}|{alarm.exception}|{alarm.measurement}|{at}".encode())
        # AlertKind has no sensor-alarm kind yet; the cold-chain kind carries it, data says which.
        raise_alert(
            session,
            kind=AlertKind.temperature_excursion,
            severity=ALARM_SEVERITY.get(alarm.exception, Severity.warning),
            code="interop.epcis_alarm",
            params={
                "exception": alarm.exception,
                "measurement": alarm.measurement,
                "device_id": device,
                "at": at,
                "detail": alarm.detail[:200] if alarm.detail else None,
            },
            now=now,
            case_id=shipment.case_id,
            shipment_id=shipment.id,
            dedupe_key=f"epcis:{shipment.id}:{key.hexdigest()[:32]}",
            data={
                "source": "epcis",
                "exception": alarm.exception,
                "device_id": device,
                "measurement": alarm.measurement,
                "at": at,
                "detail": alarm.detail,
            },
        )
        result.alerts += 1
