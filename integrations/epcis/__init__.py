"""GS1 EPCIS 2.0 / CBV 2.0 (JSON-LD): capture of sensor data and custody, export of a case.

Formats only (no database): ``parse_document`` validates a capture body with our pydantic
models (faults as JSON pointers), ``sensor_data`` maps its sensor reports to readings and
alarms, ``canonical_id`` names devices and containers, ``build_document`` writes the export
(``export_case`` reads a case into it).
The rules that touch the journey (custody, device pairing, alerts) live in
``app.services.epcis``.
"""

from integrations.epcis._case import export_case
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
)
from integrations.epcis._identifiers import (
    GS1_RESOLVER,
    canonical_id,
    check_digit,
    coi_candidate,
    coi_uri,
    id_uri,
    parse_geo,
    party_name,
    rfc3339,
    term,
)
from integrations.epcis._ingest import (
    ALARM_SEVERITY,
    CaptureResult,
    Devices,
    raise_alarms,
    store_readings,
)
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

__all__ = [
    "ALARM_SEVERITY",
    "CaptureResult",
    "Devices",
    "raise_alarms",
    "store_readings",
    "BATTERY_TYPE",
    "BIZ_STEPS",
    "CONTEXT",
    "EPCIS_JSON_LD",
    "GS1_RESOLVER",
    "Alarm",
    "CustodyStep",
    "DeviceRef",
    "Document",
    "DocumentInvalid",
    "Event",
    "Measure",
    "ReadingItems",
    "SensorData",
    "SensorPoint",
    "SensorReport",
    "ShipmentTrail",
    "build_document",
    "canonical_id",
    "check_digit",
    "coi_candidate",
    "coi_uri",
    "export_case",
    "id_uri",
    "parse_document",
    "parse_geo",
    "party_name",
    "pointer",
    "reading_items",
    "rfc3339",
    "sensor_data",
    "term",
    "to_celsius",
]
