"""Sensor reports to readings: units, point and interval forms, our optional fields, alarms.

- Temperature in ``CEL`` is taken as is; ``KEL`` − 273.15; ``FAH`` (F − 32)·5/9. Converted
  values are rounded to 6 decimals (no logger is finer), so 278.15 KEL is exactly 5 °C. A
  temperature report without one of these units is refused (reported, not guessed).
- A report with ``value`` is a point reading at its ``time``, else the element's
  ``sensorMetadata.time``, else its ``endTime``, else the event's ``eventTime``.
- An interval report (``minValue``/``maxValue`` over ``startTime``–``endTime``) becomes two
  readings: the minimum at ``startTime`` and the maximum at ``endTime``, so the excursion
  engine sees both extremes (a maximum above range opens an excursion at the interval's end;
  a minimum below range one at its start). When the interval has no length, the minimum is
  put 1 ms before the maximum (one reading per device and millisecond). Its ``meanValue`` is
  a third reading at the interval's midpoint when there is room for it (more than 2 ms);
  a ``meanValue`` alone is the reading, at the report's point time.
- Every field of a report that is not stored (``sDev``, percentiles, a mean beside a value,
  ``booleanValue``, ``stringValue``/``uriValue`` except as an alarm's detail, extensions …)
  is listed in ``ignored`` with its JSON pointer and the reason.
- One device has one temperature per instant: when a document gives several (two probes,
  told apart only by an extension such as ``ex:feature``), the first is stored and the others
  count as duplicates.
- Point values of other types fill our optional reading fields at the same device and
  instant: ``RelativeHumidity`` (P1) → humidity_pct, ``Illuminance`` (LUX) → light_lux,
  ``Acceleration`` (K40 = g, or MSK m/s²) → shock_g, ``Angle`` with component ``latitude``/
  ``longitude`` (DD) → lat/lon, and our ``urn:v2v:measurement:battery`` (P1) → battery_pct.
  Everything else (AbsoluteHumidity, Speed, interval forms of these…) is listed as ignored.
- A report with an ``exception`` (``ALARM_CONDITION``, ``ERROR_CONDITION``) is an alarm.
- The device is the report's ``deviceID``, else its element's ``sensorMetadata.deviceID``,
  else one of the event's EPCs (the caller picks the one that is a known device).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.times import rfc3339, to_ms
from integrations.epcis._document import Document, Event, SensorMetadata, SensorReport, pointer
from integrations.epcis._identifiers import term
from integrations.gs1 import canonical_id

BATTERY_TYPE = "urn:v2v:measurement:battery"
STANDARD_GRAVITY = 9.80665  # m/s² per g
TEMPERATURE_UNITS: dict[str, Callable[[float], float]] = {
    "CEL": lambda v: v,
    "KEL": lambda v: round(v - 273.15, 6),
    "FAH": lambda v: round((v - 32) * 5 / 9, 6),
}


@dataclass(frozen=True)
class DeviceRef:
    explicit: str | None  # canonical deviceID of the report or its element
    candidates: tuple[str, ...]  # canonical EPCs of the event, when there is no deviceID


@dataclass(frozen=True)
class Measure:
    """A temperature (``field`` ``temp_c``) or an optional field of a reading."""

    pointer: str
    device: DeviceRef
    at: datetime
    field: str
    value: float


@dataclass(frozen=True)
class Alarm:
    pointer: str
    device: DeviceRef
    at: datetime
    exception: str
    measurement: str
    detail: str | None


@dataclass
class SensorData:
    temperatures: list[Measure] = field(default_factory=list)
    extras: list[Measure] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (pointer, reason)


def to_celsius(value: float, uom: str | None) -> float | None:
    """A temperature in °C, or None for a unit that is not CEL, KEL or FAH."""
    convert = TEMPERATURE_UNITS.get(uom or "")
    return convert(value) if convert else None


def _extra(kind: str, report: SensorReport) -> tuple[str, float] | None:
    value, uom = report.value, report.uom
    if value is None:
        return None
    component = term(report.component, "Component") if report.component else None
    if kind == "RelativeHumidity" and uom in (None, "P1") and component is None:
        return "humidity_pct", value
    if kind == "Illuminance" and uom in (None, "LUX") and component is None:
        return "light_lux", value
    if kind == "Acceleration" and uom in ("K40", "MSK") and component is None:
        return "shock_g", abs(value) / (STANDARD_GRAVITY if uom == "MSK" else 1.0)
    if kind == "Angle" and uom in (None, "DD") and component in ("latitude", "longitude"):
        return ("lat" if component == "latitude" else "lon"), value
    if kind == BATTERY_TYPE and uom in (None, "P1"):
        return "battery_pct", value
    return None


def _point_time(event: Event, meta: SensorMetadata | None, report: SensorReport) -> datetime:
    return report.time or (meta.time or meta.end_time if meta else None) or event.event_time


def _temperature(
    out: SensorData,
    loc: str,
    device: DeviceRef,
    event: Event,
    meta: SensorMetadata | None,
    report: SensorReport,
) -> None:
    values = (report.value, report.min_value, report.max_value, report.mean_value)
    if all(v is None for v in values):
        if report.exception is None:
            out.ignored.append((loc, "a temperature report without a value: nothing to store"))
        return
    convert = TEMPERATURE_UNITS.get(report.uom or "")
    if convert is None:
        out.problems.append((loc + "/uom", "a temperature needs uom CEL, KEL or FAH"))
        return
    point = _point_time(event, meta, report)
    if report.value is not None:
        out.temperatures.append(Measure(loc, device, point, "temp_c", convert(report.value)))
        for name in ("minValue", "maxValue", "meanValue"):
            if getattr(report, _FIELD[name]) is not None:
                out.ignored.append((f"{loc}/{name}", "beside a value, only the value is stored"))
        return
    if report.min_value is None and report.max_value is None and report.mean_value is not None:
        out.temperatures.append(Measure(loc, device, point, "temp_c", convert(report.mean_value)))
        return
    start = (meta.start_time or meta.end_time if meta else None) or point
    end = (meta.end_time if meta else None) or start
    if report.min_value is not None:
        low_at = start
        if start == end and report.max_value is not None:
            low_at = end - timedelta(milliseconds=1)
        out.temperatures.append(Measure(loc, device, low_at, "temp_c", convert(report.min_value)))
    if report.max_value is not None:
        out.temperatures.append(Measure(loc, device, end, "temp_c", convert(report.max_value)))
    if report.mean_value is not None:
        if end - start > timedelta(milliseconds=2):
            mid = start + (end - start) / 2
            mid = mid.replace(microsecond=mid.microsecond // 1000 * 1000)
            out.temperatures.append(Measure(loc, device, mid, "temp_c", convert(report.mean_value)))
        else:
            reason = "an interval without length: its minimum and maximum are stored, not its mean"
            out.ignored.append((loc + "/meanValue", reason))


# Model attribute of each report field whose use depends on the report.
_FIELD = {
    "minValue": "min_value",
    "maxValue": "max_value",
    "meanValue": "mean_value",
    "booleanValue": "boolean_value",
    "stringValue": "string_value",
    "uriValue": "uri_value",
    "component": "component",
}
_STATISTICS = {"sDev", "percRank", "percValue"}


def _unused_fields(out: SensorData, loc: str, kind: str, report: SensorReport) -> None:
    """Fields of a stored (or alarm) report that no reading or alert keeps."""
    for key in report.model_extra or {}:
        if key in _STATISTICS:
            reason = "statistics other than minimum, maximum and mean are not stored"
        else:
            reason = f"{key} is not stored"
        out.ignored.append((f"{loc}/{pointer(key)[1:]}", reason))
    if report.boolean_value is not None:
        out.ignored.append((loc + "/booleanValue", "booleanValue is not stored"))
    for name in ("stringValue", "uriValue"):
        if getattr(report, _FIELD[name]) is not None and report.exception is None:
            out.ignored.append(
                (f"{loc}/{name}", f"{name} is not stored (only as an alarm's detail)")
            )
    if kind != "Temperature" and report.exception is None:
        for name in ("minValue", "maxValue", "meanValue"):
            if getattr(report, _FIELD[name]) is not None:
                out.ignored.append((f"{loc}/{name}", f"only a point value of {kind} is stored"))


def _event_epcs(event: Event) -> tuple[str, ...]:
    raw = [*event.epc_list, *([event.parent_id] if event.parent_id else []), *event.child_epcs]
    return tuple(dict.fromkeys(canonical_id(epc) for epc in raw))


def sensor_data(document: Document) -> SensorData:
    """Every sensor report of the document, mapped (see the module docstring)."""
    out = SensorData()
    for i, event in enumerate(document.epcis_body.event_list):
        candidates = _event_epcs(event)
        for j, element in enumerate(event.sensor_element_list):
            meta = element.sensor_metadata
            for k, report in enumerate(element.sensor_report):
                loc = pointer(
                    "epcisBody", "eventList", i, "sensorElementList", j, "sensorReport", k
                )
                device_id = report.device_id or (meta.device_id if meta else None)
                device = DeviceRef(canonical_id(device_id) if device_id else None, candidates)
                kind = term(report.type, "MT")
                if report.exception:
                    at = _point_time(event, meta, report)
                    exception = term(report.exception, "SensorAlertType")
                    detail = report.uri_value or report.string_value
                    out.alarms.append(Alarm(loc, device, at, exception, kind, detail))
                if kind == "Temperature":
                    _temperature(out, loc, device, event, meta, report)
                    _unused_fields(out, loc, kind, report)
                    continue
                extra = _extra(kind, report)
                if extra is not None:
                    at = _point_time(event, meta, report)
                    out.extras.append(Measure(loc, device, at, extra[0], extra[1]))
                    _unused_fields(out, loc, kind, report)
                elif report.exception is None:
                    out.ignored.append((loc, _not_stored(kind, report)))
                else:
                    _unused_fields(out, loc, kind, report)
    return out


def _not_stored(kind: str, report: SensorReport) -> str:
    if kind in _STORED_KINDS:
        return f"{kind} is stored only as a point value in {_STORED_KINDS[kind]}"
    return f"sensor type {kind} is not stored"


_STORED_KINDS = {
    "RelativeHumidity": "P1",
    "Illuminance": "LUX",
    "Acceleration": "K40 or MSK",
    "Angle": "DD with component latitude or longitude",
    BATTERY_TYPE: "P1",
}


@dataclass
class ReadingItems:
    """Ingest items (``device_id``, ``ts``, ``temp_c`` and optional fields), with the pointer
    of the report each came from; plus reports refused or ignored on the way."""

    items: list[dict[str, Any]] = field(default_factory=list)
    pointers: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (pointer, reason)


def reading_items(
    data: SensorData,
    resolve: Callable[[DeviceRef], str | None],
    *,
    limits: Mapping[str, tuple[float, float]],
    no_device: str,
) -> ReadingItems:
    """One item per temperature; other values join the item of the same device and instant."""
    out = ReadingItems()
    slots: dict[tuple[str, int], int] = {}
    for m in data.temperatures:
        device = resolve(m.device)
        if device is None:
            out.problems.append((m.pointer, no_device))
            continue
        slots.setdefault((device, to_ms(m.at)), len(out.items))
        out.items.append({"device_id": device, "ts": rfc3339(m.at), "temp_c": m.value})
        out.pointers.append(m.pointer)
    for m in data.extras:
        device = resolve(m.device)
        index = slots.get((device, to_ms(m.at))) if device else None
        low, high = limits[m.field]
        if index is None:
            reason = "no temperature of that device at that instant to join it to"
            out.ignored.append((m.pointer, reason))
        elif not low <= m.value <= high:
            out.problems.append((m.pointer, f"{m.field}: {m.value:g} is outside {low:g}…{high:g}"))
        else:
            out.items[index][m.field] = m.value
    return out
