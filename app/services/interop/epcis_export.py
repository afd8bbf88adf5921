"""A case as an EPCIS 2.0 document: its shipments, custody chains and readings, read into
the trails ``integrations.epcis.build_document`` writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.errors import NotFound
from app.services.access.scope import case_scope
from app.services.coldchain import ingest as readings
from app.services.shipments import lifecycle as shipments
from integrations.epcis import CustodyStep, SensorPoint, ShipmentTrail, build_document
from models.case import Case
from models.coldchain import Reading
from models.principal import Principal
from models.shipment import CustodyAction, Shipment

EXTRA_FIELDS = tuple(readings.OPTIONAL)


def _steps(session: Session, shipment: Shipment) -> list[CustodyStep]:
    sites = {
        CustodyAction.picked_up.value: shipment.origin,
        CustodyAction.delivered.value: shipment.destination,
    }
    return [
        CustodyStep(
            id=c.id or 0,
            action=c.action,
            occurred_at=c.occurred_at,
            from_party=c.from_party,
            to_party=c.to_party,
            lat=c.lat,
            lon=c.lon,
            site=sites.get(c.action),
        )
        for c in shipments.custody_chain(session, shipment_id=shipment.id)
    ]


def _points(session: Session, shipment: Shipment) -> list[SensorPoint]:
    rows = session.exec(
        select(Reading)
        .where(Reading.shipment_id == shipment.id)
        .order_by(col(Reading.ts_ms), col(Reading.device_id))
    )
    return [
        SensorPoint(
            device_id=r.device_id,
            ts_ms=r.ts_ms,
            temp_c=r.temp_c,
            extras={f: v for f in EXTRA_FIELDS if (v := getattr(r, f)) is not None},
        )
        for r in rows
    ]


def export_case(
    session: Session, *, actor: Principal, case_id: str, now: datetime
) -> dict[str, Any]:
    """The custody steps and sensor data of a case the actor may read, as EPCIS 2.0 JSON-LD."""
    case = session.exec(select(Case).where(Case.id == case_id, case_scope(actor))).first()
    if case is None:
        raise NotFound("no such case")
    trails = [
        ShipmentTrail(
            shipment_id=s.id,
            coi=case.coi,
            container_serial=s.container_serial,
            device_ids=list(s.device_ids),
            custody=_steps(session, s),
            readings=_points(session, s),
        )
        for s in session.exec(
            select(Shipment)
            .where(Shipment.case_id == case.id)
            .order_by(col(Shipment.created_at), col(Shipment.id))
        )
    ]
    return build_document(trails, created_at=now)
