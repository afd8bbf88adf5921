"""An EPCIS 2.0 document of a case's custody steps and sensor data.

- One ObjectEvent per custody step: bizStep ``shipping`` (picked_up), ``transporting``
  (handoff) or ``receiving`` (delivered); the EPCs are the COI (``urn:v2v:coi:<COI>``), the
  container and the shipment's devices; the read point is the scan's position as a ``geo:``
  URI, else the site (``urn:v2v:site:<code>``); the business location is the origin (pickup)
  or destination (delivery) site; the parties are ``possessing_party`` sources and
  destinations (``urn:v2v:party:<name>``).
- Sensor data as ObjectEvents with bizStep ``sensor_reporting`` and the COI and container
  as EPCs: readings between two custody steps, at most ``CHUNK`` at a time, one
  sensorElement per device (``deviceID``), one report per value with its own ``time``:
  Temperature in CEL and our optional fields (see ``_sensors``). The event time is the last
  reading's.
- Events in time order; times in UTC. Capturing the document again reproduces the readings
  and custody (``capture(export(x))``).
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.times import from_ms, rfc3339
from integrations.epcis._identifiers import coi_uri, geo_uri, id_uri, party_uri, site_uri
from integrations.epcis._sensors import BATTERY_TYPE

CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
EPCIS_JSON_LD = "application/ld+json"
CHUNK = 100
BIZ_STEPS = {"picked_up": "shipping", "handoff": "transporting", "delivered": "receiving"}
_DISPOSITIONS = {"picked_up": "in_transit", "handoff": "in_transit", "delivered": "in_progress"}
_EVENT_IDS = uuid.UUID("6f1d0c8e-5b0e-4c53-9d0c-7f9a1d2b3c4e")  # uuid5 namespace
# Optional reading fields as (sensor report type, uom, component).
_EXTRAS = {
    "humidity_pct": ("RelativeHumidity", "P1", None),
    "light_lux": ("Illuminance", "LUX", None),
    "shock_g": ("Acceleration", "K40", None),
    "battery_pct": (BATTERY_TYPE, "P1", None),
    "lat": ("Angle", "DD", "latitude"),
    "lon": ("Angle", "DD", "longitude"),
}


@dataclass(frozen=True)
class CustodyStep:
    id: int
    action: str
    occurred_at: datetime
    from_party: str
    to_party: str
    lat: float | None
    lon: float | None
    site: str | None  # origin at pickup, destination at delivery


@dataclass(frozen=True)
class SensorPoint:
    device_id: str
    ts_ms: int
    temp_c: float
    extras: dict[str, float]


@dataclass(frozen=True)
class ShipmentTrail:
    shipment_id: str
    coi: str
    container_serial: str
    device_ids: Sequence[str]
    custody: Sequence[CustodyStep]
    readings: Sequence[SensorPoint]  # in time order


def _custody_event(trail: ShipmentTrail, step: CustodyStep) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventID": f"urn:uuid:{uuid.uuid5(_EVENT_IDS, f'custody:{step.id}')}",
        "eventTime": rfc3339(step.occurred_at),
        "eventTimeZoneOffset": "+00:00",
        "epcList": list(
            dict.fromkeys(
                [coi_uri(trail.coi), id_uri(trail.container_serial)]
                + [id_uri(d) for d in trail.device_ids]
            )
        ),
        "action": "OBSERVE",
        "bizStep": BIZ_STEPS[step.action],
        "disposition": _DISPOSITIONS[step.action],
    }
    if step.lat is not None and step.lon is not None:
        event["readPoint"] = {"id": geo_uri(step.lat, step.lon)}
    elif step.site:
        event["readPoint"] = {"id": site_uri(step.site)}
    if step.site:
        event["bizLocation"] = {"id": site_uri(step.site)}
    event["sourceList"] = [{"type": "possessing_party", "source": party_uri(step.from_party)}]
    event["destinationList"] = [
        {"type": "possessing_party", "destination": party_uri(step.to_party)}
    ]
    return event


def _reports(point: SensorPoint) -> list[dict[str, Any]]:
    time = rfc3339(from_ms(point.ts_ms))
    reports: list[dict[str, Any]] = [
        {"type": "Temperature", "time": time, "value": point.temp_c, "uom": "CEL"}
    ]
    for name, (kind, uom, component) in _EXTRAS.items():
        value = point.extras.get(name)
        if value is None:
            continue
        report: dict[str, Any] = {"type": kind, "time": time, "value": value, "uom": uom}
        if component:
            report["component"] = component
        reports.append(report)
    return reports


def _sensor_event(trail: ShipmentTrail, chunk: Sequence[SensorPoint]) -> dict[str, Any]:
    by_device: dict[str, list[dict[str, Any]]] = {}
    for point in chunk:
        by_device.setdefault(point.device_id, []).extend(_reports(point))
    first, last = chunk[0].ts_ms, chunk[-1].ts_ms
    name = f"sensor:{trail.shipment_id}:{first}:{last}"
    return {
        "type": "ObjectEvent",
        "eventID": f"urn:uuid:{uuid.uuid5(_EVENT_IDS, name)}",
        "eventTime": rfc3339(from_ms(last)),
        "eventTimeZoneOffset": "+00:00",
        "epcList": [coi_uri(trail.coi), id_uri(trail.container_serial)],
        "action": "OBSERVE",
        "bizStep": "sensor_reporting",
        "sensorElementList": [
            {"sensorMetadata": {"deviceID": id_uri(device)}, "sensorReport": reports}
            for device, reports in by_device.items()
        ],
    }


def _trail_events(trail: ShipmentTrail) -> list[tuple[datetime, int, dict[str, Any]]]:
    out = [(s.occurred_at, 0, _custody_event(trail, s)) for s in trail.custody]
    bounds = [int(s.occurred_at.timestamp() * 1000) for s in trail.custody]
    chunk: list[SensorPoint] = []
    segment = None
    for point in [*trail.readings, None]:
        here = bisect.bisect_left(bounds, point.ts_ms) if point else None
        if chunk and (point is None or here != segment or len(chunk) >= CHUNK):
            out.append((from_ms(chunk[-1].ts_ms), 1, _sensor_event(trail, chunk)))
            chunk = []
        if point is not None:
            chunk.append(point)
            segment = here
    return out


def trail_events(trail: ShipmentTrail) -> list[tuple[datetime, dict[str, Any]]]:
    """The shipment's events with their times, in time order (custody before sensor data
    at the same instant); the same events, ids included, whatever is asked of them."""
    events = _trail_events(trail)
    events.sort(key=lambda e: (e[0], e[1]))
    return [(at, event) for at, _, event in events]


def wrap_document(events: Sequence[dict[str, Any]], *, created_at: datetime) -> dict[str, Any]:
    """An EPCIS 2.0 document (JSON-LD) holding these events."""
    return {
        "@context": [CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": rfc3339(created_at),
        "epcisBody": {"eventList": list(events)},
    }


def build_document(trails: Sequence[ShipmentTrail], *, created_at: datetime) -> dict[str, Any]:
    """The EPCIS 2.0 document (JSON-LD) of these shipments, events in time order."""
    events = [e for trail in trails for e in _trail_events(trail)]
    events.sort(key=lambda e: (e[0], e[1]))
    return wrap_document([event for _, _, event in events], created_at=created_at)
