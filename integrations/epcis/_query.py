"""The EPCIS 2.0 query subset we answer: which exported events a query selects.

Parameters as in the EPCIS 2.0 REST query interface: ``MATCH_epc`` (any of these
identifiers among the event's EPCs or its sensors' deviceIDs, compared in canonical form),
``GE_eventTime`` / ``LT_eventTime`` (a half-open interval), ``EQ_bizStep`` (a CBV term, bare
or as a URI) and ``eventType``. Which shipments to look at, scope and paging are the service's.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from integrations.epcis._identifiers import term
from integrations.gs1 import canonical_id

EVENT_TYPES = frozenset(
    {
        "ObjectEvent",
        "AggregationEvent",
        "TransactionEvent",
        "TransformationEvent",
        "AssociationEvent",
    }
)


@dataclass(frozen=True)
class EventFilter:
    epcs: frozenset[str] = frozenset()  # canonical ids; empty: any
    ge_time: datetime | None = None
    lt_time: datetime | None = None
    biz_steps: frozenset[str] = frozenset()  # bare CBV terms; empty: any
    event_types: frozenset[str] = frozenset()  # empty: any


def biz_step_term(value: str) -> str:
    """``shipping``, ``urn:epcglobal:cbv:bizstep:shipping`` or its GS1 URI, all ``shipping``."""
    return term(value, "BizStep")


def identifiers(event: dict[str, Any]) -> set[str]:
    """The canonical ids an event names: its EPCs, parent and children, sensor devices."""
    raw: list[str] = [*event.get("epcList", []), *event.get("childEPCs", [])]
    if event.get("parentID"):
        raw.append(event["parentID"])
    for element in event.get("sensorElementList", []):
        device = (element.get("sensorMetadata") or {}).get("deviceID")
        if device:
            raw.append(device)
        raw += [r["deviceID"] for r in element.get("sensorReport", []) if r.get("deviceID")]
    return {canonical_id(x) for x in raw}


def _any(wanted: Collection[str], have: Collection[str]) -> bool:
    return not wanted or any(w in have for w in wanted)


def selects(f: EventFilter, at: datetime, event: dict[str, Any]) -> bool:
    """Whether the query selects this event (``at`` its eventTime)."""
    if f.ge_time is not None and at < f.ge_time:
        return False
    if f.lt_time is not None and at >= f.lt_time:
        return False
    if f.event_types and event.get("type") not in f.event_types:
        return False
    step = event.get("bizStep")
    if f.biz_steps and (not step or biz_step_term(step) not in f.biz_steps):
        return False
    return _any(f.epcs, identifiers(event)) if f.epcs else True
