"""EPCIS 2.0 capture and export: the journey's rules applied to GS1 events.

Capture runs in one transaction, in this order, so that readings find the assignments made
by the same document: AssociationEvents and custody ObjectEvents in event-time order, then
every sensor report's reading through the HTTP ingest service (same attachment, ownership,
duplicate and excursion rules), then sensor alarms as alerts. A fault in one event or report
is a ``rejected`` entry with its JSON pointer; the rest is stored. Every field read but not
stored is an ``ignored`` entry ``{pointer, reason}`` (see ``integrations.epcis``).

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

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session

from app.errors import Invalid
from app.services.coldchain import ingest as readings
from app.services.coldchain import rides
from app.services.interop import epcis_custody as custody
from app.services.interop import epcis_sensors as sensors
from integrations import epcis
from integrations.epcis import pointer, term
from models.principal import Principal


@dataclass
class CaptureResult:
    """What a capture stored, counted and refused: the body of its 202 answer."""

    events: int = 0
    readings: int = 0
    duplicates: int = 0
    custody: int = 0
    custody_duplicates: int = 0
    associations: int = 0
    alerts: int = 0
    ignored: list[dict[str, str]] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    _seen: set[tuple[str, str]] = field(default_factory=set, repr=False)

    def ignore(self, ignored: list[tuple[str, str]]) -> None:
        """Note fields that were read but not stored, by JSON pointer, with the reason."""
        self.ignored += [{"pointer": loc, "reason": reason} for loc, reason in ignored]

    def reject(self, loc: str, reason: str, code: str | None = None) -> None:
        """Report a refused event or report once (an interval report is two readings)."""
        if (loc, reason) in self._seen:
            return
        self._seen.add((loc, reason))
        self.rejected.append({"loc": loc, "reason": reason, **({"code": code} if code else {})})


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
    bounds: rides.LateBounds = rides.DEFAULT_BOUNDS,
) -> CaptureResult:
    """Apply a validated EPCIS document (flushes; the caller commits)."""
    data = epcis.sensor_data(document)
    if len(data.temperatures) > readings.MAX_BATCH:
        raise Invalid(
            f"at most {readings.MAX_BATCH} readings per document",
            errors=[{"loc": "/epcisBody/eventList", "msg": f"{len(data.temperatures)} readings"}],
        )
    events = document.epcis_body.event_list
    result = CaptureResult(events=len(events))
    result.ignore(epcis.unmapped_fields(document, custody_steps=custody.CUSTODY_STEPS))
    result.ignore(data.ignored)
    for loc, reason in data.problems:
        result.reject(loc, reason)
    for i, event in sorted(enumerate(events), key=lambda e: (e[1].event_time, e[0])):
        loc = pointer("epcisBody", "eventList", i)
        step = term(event.biz_step, "BizStep") if event.biz_step else ""
        if event.type == "AssociationEvent":
            custody.pair(session, actor=actor, event=event, loc=loc, now=now, result=result)
        elif event.type == "ObjectEvent" and step in custody.CUSTODY_STEPS:
            custody.record(
                session,
                actor=actor,
                event=event,
                step=step,
                loc=loc,
                now=now,
                future_tolerance_s=future_tolerance_s,
                result=result,
            )
    devices = sensors.Devices(session, actor, data)
    sensors.store_readings(
        session,
        actor=actor,
        devices=devices,
        data=data,
        now=now,
        future_tolerance_s=future_tolerance_s,
        bounds=bounds,
        result=result,
    )
    sensors.raise_alarms(session, devices=devices, alarms=data.alarms, now=now, result=result)
    return result
