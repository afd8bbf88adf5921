"""EPCIS 2.0 events of the caller's cases: the query subset of ``GET /events``.

Shipments (in scope, in (created_at, id) order) are read into the trails
``integrations.epcis`` writes as events; a query selects among each shipment's events, so an
event has the same id and content whatever is asked. A page ends after ``per_page`` events;
its token is the position of the next selected event (shipment and index), resumed with the
caller's scope applied again, so a token never reaches beyond it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from app.errors import Invalid, NotFound
from app.pagination import cursor_instant, decode_cursor, encode_cursor
from app.services.access.scope import case_scope
from app.services.coldchain import ingest as readings
from app.services.identity.coi import CoiFormatError, parse_scan
from app.services.shipments import lifecycle as shipments
from integrations import epcis
from models.case import Case
from models.coldchain import Reading
from models.principal import Principal
from models.shipment import CustodyAction, Shipment

EXTRA_FIELDS = tuple(readings.OPTIONAL)
MAX_PER_PAGE = 10_000
Values = Annotated[list[Annotated[str, Field(min_length=1, max_length=500)]], Field(max_length=50)]


class EventQuery(BaseModel):
    """Query parameters (EPCIS 2.0 REST names); list values repeat or are comma-separated."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    case_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    match_epc: Values = Field(
        [],
        alias="MATCH_epc",
        description="A COI in any scanned form (or `urn:v2v:coi:…`), a device or container "
        "id, EPC URN or GS1 Digital Link.",
    )
    ge_event_time: AwareDatetime | None = Field(None, alias="GE_eventTime")
    lt_event_time: AwareDatetime | None = Field(None, alias="LT_eventTime")
    eq_biz_step: Values = Field([], alias="EQ_bizStep", description="e.g. `shipping`.")
    event_type: Values = Field([], alias="eventType", description="e.g. `ObjectEvent`.")
    per_page: int = Field(1000, ge=1, le=MAX_PER_PAGE, alias="perPage")
    next_page_token: Annotated[str, Field(max_length=500)] | None = Field(
        None, alias="nextPageToken"
    )


@dataclass(frozen=True)
class EventPage:
    document: dict[str, Any]
    next_page_token: str | None


def _split(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _invalid(loc: str, msg: str) -> Invalid:
    return Invalid(f"{loc}: {msg}", errors=[{"loc": f"query/{loc}", "msg": msg}])


def _steps(session: Session, shipment: Shipment) -> list[epcis.CustodyStep]:
    sites = {
        CustodyAction.picked_up.value: shipment.origin,
        CustodyAction.delivered.value: shipment.destination,
    }
    return [
        epcis.CustodyStep(
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


def _points(session: Session, shipment: Shipment) -> list[epcis.SensorPoint]:
    rows = session.exec(
        select(Reading)
        .where(Reading.shipment_id == shipment.id)
        .order_by(col(Reading.ts_ms), col(Reading.device_id))
    )
    return [
        epcis.SensorPoint(
            device_id=r.device_id,
            ts_ms=r.ts_ms,
            temp_c=r.temp_c,
            extras={f: v for f in EXTRA_FIELDS if (v := getattr(r, f)) is not None},
        )
        for r in rows
    ]


def _filter(query: EventQuery) -> tuple[epcis.EventFilter, set[str], set[str]]:
    """The event filter, and the COIs and other ids MATCH_epc names."""
    cois: set[str] = set()
    ids: set[str] = set()
    for value in _split(query.match_epc):
        try:
            cois.add(parse_scan(epcis.coi_candidate(value)).coi)
        except CoiFormatError:
            ids.add(epcis.canonical_id(value))
    types = set(_split(query.event_type))
    if types - epcis.EVENT_TYPES:
        unknown = ", ".join(sorted(types - epcis.EVENT_TYPES))
        raise _invalid("eventType", f"unknown event type {unknown}")
    if query.ge_event_time and query.lt_event_time and query.lt_event_time <= query.ge_event_time:
        raise _invalid("LT_eventTime", "must be after GE_eventTime")
    event_filter = epcis.EventFilter(
        epcs=frozenset({epcis.coi_uri(c) for c in cois} | ids),
        ge_time=query.ge_event_time,
        lt_time=query.lt_event_time,
        biz_steps=frozenset(epcis.biz_step_term(s) for s in _split(query.eq_biz_step)),
        event_types=frozenset(types),
    )
    return event_filter, cois, ids


def _token(token: str | None) -> tuple[datetime, str, int] | None:
    if token is None:
        return None
    values = decode_cursor(token, 3)
    at, shipment_id, index = cursor_instant(values[0]), values[1], values[2]
    if at is None or not isinstance(shipment_id, str) or type(index) is not int:
        raise _invalid("nextPageToken", "malformed")
    return at, shipment_id, max(index, 0)


def _shipments(
    session: Session, *, actor: Principal, query: EventQuery, cois: set[str], ids: set[str]
) -> Iterator[tuple[Shipment, str]]:
    """The candidate shipments with their case's COI, from the token's position on."""
    stmt = select(Shipment, Case.coi).join(Case, col(Case.id) == Shipment.case_id)
    stmt = stmt.where(case_scope(actor))
    if query.case_id is not None:
        stmt = stmt.where(Shipment.case_id == query.case_id)
    if query.match_epc and not ids:  # COIs only: their cases' shipments
        stmt = stmt.where(col(Case.coi).in_(cois))
    start = _token(query.next_page_token)
    if start is not None:
        at, shipment_id, _ = start
        stmt = stmt.where(
            or_(
                col(Shipment.created_at) > at,
                and_(col(Shipment.created_at) == at, col(Shipment.id) >= shipment_id),
            )
        )
    stmt = stmt.order_by(col(Shipment.created_at), col(Shipment.id))
    for shipment, coi in session.exec(stmt.execution_options(yield_per=100)):
        if ids and coi not in cois:
            named = {shipment.container_serial, *shipment.device_ids}
            if not ids & {epcis.canonical_id(x) for x in named}:
                continue
        yield shipment, coi


def query_events(
    session: Session, *, actor: Principal, query: EventQuery, now: datetime
) -> EventPage:
    """One page of the actor's custody and sensor events that the query selects."""
    if query.case_id is not None:
        case = session.exec(select(Case).where(Case.id == query.case_id, case_scope(actor)))
        if case.first() is None:
            raise NotFound("no such case")
    event_filter, cois, ids = _filter(query)
    start = _token(query.next_page_token)
    selected: list[dict[str, Any]] = []
    for shipment, coi in _shipments(session, actor=actor, query=query, cois=cois, ids=ids):
        trail = epcis.ShipmentTrail(
            shipment_id=shipment.id,
            coi=coi,
            container_serial=shipment.container_serial,
            device_ids=list(shipment.device_ids),
            custody=_steps(session, shipment),
            readings=_points(session, shipment),
        )
        first = start[2] if start is not None and start[1] == shipment.id else 0
        for index, (at, event) in enumerate(epcis.trail_events(trail)):
            if index < first or not epcis.selects(event_filter, at, event):
                continue
            if len(selected) == query.per_page:
                token = encode_cursor(shipment.created_at.isoformat(), shipment.id, index)
                return EventPage(epcis.wrap_document(selected, created_at=now), token)
            selected.append(event)
    return EventPage(epcis.wrap_document(selected, created_at=now), None)
