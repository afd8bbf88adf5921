"""GS1 EPCIS 2.0 / CBV 2.0 (JSON-LD): capture of sensor data and custody, export of a case.

Formats only (no database): ``parse_document`` validates a capture body with our pydantic
models (faults as JSON pointers), ``sensor_data`` maps its sensor reports to readings and
alarms, ``canonical_id`` names devices and containers, ``build_document`` writes the export
from shipment trails. Capture and export themselves (custody, device pairing, readings,
alerts, reading a case) are the use cases of ``app.services.interop`` (``epcis_capture``,
``epcis_export``).
"""

from integrations.epcis._document import (
    Document,
    DocumentInvalid,
    Event,
    SensorReport,
    parse_document,
    pointer,
)
from integrations.epcis._export import (
    BIZ_STEPS,
    CONTEXT,
    EPCIS_JSON_LD,
    CustodyStep,
    SensorPoint,
    ShipmentTrail,
    build_document,
    trail_events,
    wrap_document,
)
from integrations.epcis._identifiers import (
    coi_candidate,
    coi_uri,
    id_uri,
    parse_geo,
    party_name,
    term,
)
from integrations.epcis._query import EVENT_TYPES, EventFilter, biz_step_term, selects
from integrations.epcis._sensors import (
    BATTERY_TYPE,
    Alarm,
    DeviceRef,
    Measure,
    ReadingItems,
    SensorData,
    reading_items,
    sensor_data,
    to_celsius,
)
from integrations.epcis._unmapped import unmapped_fields
from integrations.gs1 import GS1_RESOLVER, canonical_id, check_digit

__all__ = [
    "BATTERY_TYPE",
    "BIZ_STEPS",
    "CONTEXT",
    "EPCIS_JSON_LD",
    "EVENT_TYPES",
    "GS1_RESOLVER",
    "Alarm",
    "CustodyStep",
    "DeviceRef",
    "Document",
    "DocumentInvalid",
    "Event",
    "EventFilter",
    "Measure",
    "ReadingItems",
    "SensorData",
    "SensorPoint",
    "SensorReport",
    "ShipmentTrail",
    "biz_step_term",
    "build_document",
    "canonical_id",
    "check_digit",
    "coi_candidate",
    "coi_uri",
    "id_uri",
    "parse_document",
    "parse_geo",
    "party_name",
    "pointer",
    "reading_items",
    "selects",
    "sensor_data",
    "term",
    "to_celsius",
    "trail_events",
    "unmapped_fields",
    "wrap_document",
]
