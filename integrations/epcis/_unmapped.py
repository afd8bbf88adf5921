"""Fields of a captured document that capture does not map, above the sensor reports.

Each is a ``(JSON pointer, reason)``: the document's header fields, event fields no custody
step, pairing or reading keeps (``eventID``, ``bizTransactionList``, ``disposition``,
``ilmd``, extensions …) and sensor metadata beyond its times and deviceID. Sensor reports
are ``_sensors``' (it knows which report became what).
"""

from __future__ import annotations

from collections.abc import Collection

from integrations.epcis._document import Document, Event, pointer
from integrations.epcis._identifiers import parse_geo, term

_REASONS = {
    "id": "the document id is not kept",
    "epcisHeader": "the header (master data) is not stored",
    "eventID": "event ids are not kept: a resent event is recognised by its content",
    "recordTime": "the sender's record time is not kept",
    "bizTransactionList": "business transactions are not stored",
    "disposition": "dispositions are not stored",
    "persistentDisposition": "dispositions are not stored",
    "ilmd": "instance/lot master data is not stored",
    "quantityList": "quantities by class are not stored",
    "childQuantityList": "quantities by class are not stored",
    "certificationInfo": "certification information is not stored",
    "errorDeclaration": "error declarations are not applied",
    "deviceMetadata": "sensor device metadata is not stored",
    "rawData": "raw sensor data links are not stored",
    "dataProcessingMethod": "data processing methods are not stored",
    "bizRules": "business rules are not stored",
}


def _reason(key: str) -> str:
    return _REASONS.get(key, f"{key} is not stored")


def _extras(loc: str, extra: dict[str, object] | None) -> list[tuple[str, str]]:
    return [(loc + pointer(key), _reason(key)) for key in extra or {}]


def _event(loc: str, event: Event, custody_steps: Collection[str]) -> list[tuple[str, str]]:
    out = _extras(loc, event.model_extra)
    step = term(event.biz_step, "BizStep") if event.biz_step else ""
    custody = event.type == "ObjectEvent" and step in custody_steps
    if custody:
        if event.read_point and parse_geo(event.read_point.id) is None:
            out.append((loc + "/readPoint", "only a geo: read point (a position) is stored"))
        if event.biz_location:
            out.append(
                (loc + "/bizLocation", "custody sites are the shipment's origin/destination")
            )
        for name, entries in (
            ("sourceList", event.source_list),
            ("destinationList", event.destination_list),
        ):
            for k in range(1, len(entries)):
                out.append((f"{loc}/{name}/{k}", "one party per custody step is stored"))
        return out
    if event.type != "AssociationEvent" and not event.sensor_element_list:
        what = f"bizStep {step}" if step else "no bizStep"
        return [(loc, f"an {event.type} with {what} and no sensor data: nothing to store")]
    for name, present in (
        ("readPoint", event.read_point),
        ("bizLocation", event.biz_location),
        ("sourceList", event.source_list),
        ("destinationList", event.destination_list),
    ):
        if present:
            out.append((f"{loc}/{name}", f"{name} is stored only for custody steps"))
    for j, element in enumerate(event.sensor_element_list):
        at = f"{loc}/sensorElementList/{j}"
        out += _extras(at, element.model_extra)
        if element.sensor_metadata is not None:
            out += _extras(at + "/sensorMetadata", element.sensor_metadata.model_extra)
    return out


def unmapped_fields(document: Document, *, custody_steps: Collection[str]) -> list[tuple[str, str]]:
    """Every field above the sensor reports that capture does not map, with the reason."""
    out = _extras("", document.model_extra)
    out += _extras("/epcisBody", document.epcis_body.model_extra)
    for i, event in enumerate(document.epcis_body.event_list):
        out += _event(pointer("epcisBody", "eventList", i), event, custody_steps)
    return out
